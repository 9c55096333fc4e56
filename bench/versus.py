"""Tern beside the machine's own limit (bench/baseline/), in one invocation: `inbound.py --vs-baseline`.

Each round starts, on a fresh database of the same kind, Tern (`manage.py serve`: web, task
cluster, sweeper) and then the baseline (daphne with the minimal webhook), sends each the same
kind of burst with inbound.py's client, and stops it. Rounds alternate A/B so a change in the
shared machine's load hits both. For Tern it also waits until every text was handled and every
reply handed to the (local) provider: the end-to-end rate. The summary is the median of the
rounds and the ratio Tern ÷ baseline."""
from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
TOKEN = "bench-token"
TERN_PORT = 8791
BASELINE_PORT = 8793
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
START_TIMEOUT = 90
E2E_TIMEOUT = 600
SETTLE_SECONDS = 0.5


@dataclass
class Server:
    processes: list[subprocess.Popen]
    urls: list[str]
    env: dict
    database: str  # PostgreSQL database name, or the SQLite file
    table: str
    log: Path

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@dataclass
class Round:
    name: str
    rate: float
    p50: float
    p99: float
    statuses: dict
    lost: int
    duplicated: int
    cpu_web_ms: float
    cpu_all_ms: float
    e2e_rate: float | None = None
    e2e_seconds: float | None = None
    replies: int | None = None
    cpu_e2e_ms: dict[str, float] = field(default_factory=dict)  # role: CPU ms per text until end to end
    notes: list[str] = field(default_factory=list)


def _run(command: list[str], env: dict, log: Path) -> None:
    with open(log, "a") as out:
        subprocess.run(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=True)


def _wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server for {url} exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer /healthz within {START_TIMEOUT} s")


def _wait_settled(server: Server, inbound) -> None:
    """Until the server's processes have finished starting: /healthz answers as soon as the web
    is up, while the task cluster and the sweeper may still be importing Django. Their start-up
    would be counted as the burst's CPU and compete with it. Settled: under a tenth of a core
    over half a second."""
    deadline = time.monotonic() + START_TIMEOUT
    before = sum(seconds for _, seconds in inbound.cpu_snapshot(server.pids, "").values())
    while time.monotonic() < deadline:
        time.sleep(SETTLE_SECONDS)
        now = sum(seconds for _, seconds in inbound.cpu_snapshot(server.pids, "").values())
        if now - before < SETTLE_SECONDS / 10:
            return
        before = now


def _fresh_postgres(name: str) -> str:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_SERVER}/{name}"


def _flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def _base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "TERN_VAR_DIR"}}
    env.update(TWILIO_AUTH_TOKEN=TOKEN, LOG_LEVEL="WARNING", PUBLIC_BASE_URL="", PYTHONUNBUFFERED="1")
    return env


def start_tern(kind: str, work: Path, web_workers: int) -> Server:
    env = _base_env()
    log = work / "tern.log"
    if kind == "postgres":
        env["DATABASE_URL"] = _fresh_postgres("tern_vs")
        env["REDIS_URL"] = "redis://127.0.0.1:6379/3"
        _flush_redis(env["REDIS_URL"])
        database = "tern_vs"
    else:
        var = Path(tempfile.mkdtemp(prefix="tern-vs-", dir=work))
        env["TERN_VAR_DIR"] = str(var)
        database = str(var / "tern.sqlite3")
    _run([PYTHON, "manage.py", "migrate", "--noinput"], env, log)
    _run([PYTHON, "manage.py", "seed_demo"], env, log)
    # The demo number's sending limit (1/s) would make the end-to-end rate the limit's: lift it,
    # as a short code or a Messaging Service pool would.
    _run([PYTHON, "manage.py", "shell", "-c",
          "from sms.models import PhoneNumber; PhoneNumber.objects.update(messages_per_second=10000)"], env, log)
    command = [PYTHON, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(TERN_PORT)]
    if web_workers > 1:
        command += ["--web-workers", str(web_workers)]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=open(log, "a"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{TERN_PORT}"
    _wait_healthy(url, process)
    return Server([process], [url], env, database, "sms_inboundmessage", log)


def start_baseline(kind: str, work: Path, web_workers: int) -> Server:
    env = _base_env()
    env.update(PYTHONPATH=os.pathsep.join([str(BENCH), str(ROOT)]), DJANGO_SETTINGS_MODULE="baseline.settings")  # ROOT: portal.http_threads
    log = work / "baseline.log"
    if kind == "postgres":
        env["BASELINE_DATABASE_URL"] = _fresh_postgres("baseline_vs")
        database = "baseline_vs"
    else:
        database = str(Path(tempfile.mkdtemp(prefix="baseline-vs-", dir=work)) / "baseline.sqlite3")
        env["BASELINE_SQLITE"] = database
    _run([PYTHON, "-m", "django", "migrate", "--run-syncdb", "--noinput"], env, log)
    processes, urls = [], []
    for index in range(web_workers):
        port = BASELINE_PORT + index
        processes.append(subprocess.Popen(
            [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "baseline.asgi:application"],
            env=env, cwd=ROOT, stdout=open(log, "a"), stderr=subprocess.STDOUT,
        ))
        urls.append(f"http://127.0.0.1:{port}")
    for url, process in zip(urls, processes):
        _wait_healthy(url, process)
    return Server(processes, urls, env, database, "baseline_text", log)


def _connect(kind: str, server: Server):
    if kind == "postgres":
        import psycopg

        return psycopg.connect(f"{PG_SERVER}/{server.database}", autocommit=True)
    import sqlite3

    return sqlite3.connect(server.database, timeout=30, isolation_level=None)


def _one(conn, sql: str, params=()):
    cursor = conn.execute(sql.replace("?", "%s") if conn.__class__.__module__.startswith("psycopg") else sql, params)
    return cursor.fetchone()


def stored(kind: str, server: Server, sids: list[str]) -> tuple[int, int]:
    conn = _connect(kind, server)
    distinct = rows = 0
    try:
        for start in range(0, len(sids), 400):
            chunk = sids[start:start + 400]
            marks = ",".join("?" * len(chunk))
            d, r = _one(conn, f"SELECT COUNT(DISTINCT message_sid), COUNT(*) FROM {server.table} WHERE message_sid IN ({marks})", chunk)
            distinct, rows = distinct + d, rows + r
    finally:
        conn.close()
    return distinct, rows


def wait_end_to_end(kind: str, server: Server, consumers: list[str], started: float) -> tuple[float, int, list[str]]:
    """Until every text is handled and no reply waits to be handed to the provider: the seconds
    since the burst started, the replies, and what was still not done at the time-out."""
    conn = _connect(kind, server)
    marks = ",".join("?" * len(consumers))
    try:
        deadline = time.monotonic() + E2E_TIMEOUT
        while True:
            (pending,) = _one(conn, "SELECT COUNT(*) FROM sms_inboundmessage WHERE state = 'pending'")
            (waiting,) = _one(
                conn, f"SELECT COUNT(*) FROM sms_outboundmessage WHERE status IN ('pending', 'queued') AND to_number IN ({marks})",
                consumers,
            )
            if not pending and not waiting:
                (replies,) = _one(conn, f"SELECT COUNT(*) FROM sms_outboundmessage WHERE to_number IN ({marks})", consumers)
                (failed,) = _one(conn, "SELECT COUNT(*) FROM sms_inboundmessage WHERE state = 'failed'")
                notes = [f"{failed} texts failed"] if failed else []
                return time.perf_counter() - started, replies, notes
            if time.monotonic() > deadline:
                return time.perf_counter() - started, 0, [f"timed out: {pending} texts pending, {waiting} replies waiting"]
            time.sleep(0.05)
    finally:
        conn.close()


def one_round(name: str, kind: str, server: Server, args, inbound) -> Round:
    rng = random.Random()
    scripts = inbound.plan(args.count, args.consumers, rng)
    texts = [text for script in scripts for text in script]
    client_args = argparse.Namespace(url=server.urls, public_base_url="", auth_token=TOKEN, to=inbound.DEMO_NUMBER,
                                     concurrency=args.concurrency)
    pg_database = server.database if kind == "postgres" else ""
    _wait_settled(server, inbound)
    before = inbound.cpu_snapshot(server.pids, pg_database)
    client_before = time.process_time()
    started = time.perf_counter()
    results, elapsed = inbound.send_all(client_args, scripts)
    after = inbound.cpu_snapshot(server.pids, pg_database)
    client_cpu = time.process_time() - client_before
    cpu = inbound.cpu_used(before, after)
    distinct, rows = stored(kind, server, [text.sid for text in texts])
    latencies = [value * 1000 for value in results.latencies] or [0.0]
    result = Round(
        name=name,
        rate=args.count / elapsed,
        p50=statistics.median(latencies),
        p99=inbound.percentile(latencies, 0.99),
        statuses=dict(sorted(results.statuses.items())),
        lost=args.count - distinct,
        duplicated=rows - distinct,
        cpu_web_ms=cpu.get("web", 0.0) * 1000 / args.count,
        cpu_all_ms=sum(cpu.values()) * 1000 / args.count,
    )
    if results.failures:
        result.notes.append(f"{len(results.failures)} failures, e.g. {results.failures[0]}")
    if name == "tern":
        consumers = sorted({text.consumer for text in texts})
        seconds, replies, notes = wait_end_to_end(kind, server, consumers, started)
        result.e2e_seconds, result.replies = seconds, replies
        result.e2e_rate = args.count / seconds
        result.notes += notes
        until_end = inbound.cpu_used(before, inbound.cpu_snapshot(server.pids, pg_database))
        until_end["client"] = client_cpu  # the sending only, not the wait for the end
        result.cpu_e2e_ms = {role: seconds * 1000 / args.count for role, seconds in sorted(until_end.items())}
    return result


def _line(r: Round) -> str:
    line = (f"  {r.name:8s} {r.rate:7.1f} texts/s  p50 {r.p50:6.1f} ms  p99 {r.p99:7.1f} ms  "
            f"web CPU {r.cpu_web_ms:5.2f} ms/text  statuses {r.statuses}  lost {r.lost}  duplicated {r.duplicated}")
    if r.e2e_rate is not None:
        line += f"\n  {'':8s} end to end {r.e2e_rate:7.1f} texts/s ({r.replies} replies handed to the provider in {r.e2e_seconds:.1f} s)"
        parts = " · ".join(f"{role} {ms:.2f}" for role, ms in r.cpu_e2e_ms.items())
        line += f"\n  {'':8s} CPU until then, ms per text: {parts} · all {sum(r.cpu_e2e_ms.values()):.2f}"
    for note in r.notes:
        line += f"\n  {'':8s} {note}"
    return line


def main(args, inbound) -> int:
    kind = "postgres" if args.database == "postgres" else "sqlite"
    web_workers = args.web_workers or (2 if kind == "postgres" else 1)
    work = Path(tempfile.mkdtemp(prefix="tern-vs-baseline-"))
    print(f"Tern vs the baseline webhook: {args.rounds} rounds A/B, {kind}, {web_workers} web process(es) each, "
          f"{args.count} texts from {args.consumers} consumers, {args.concurrency} connections; {os.cpu_count()} CPUs")
    print(f"  load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}  (logs in {work})")
    rounds: dict[str, list[Round]] = {"tern": [], "baseline": []}
    for number in range(1, args.rounds + 1):
        for name, start in (("tern", start_tern), ("baseline", start_baseline)):
            server = start(kind, work, web_workers)
            try:
                result = one_round(name, kind, server, args, inbound)
            finally:
                server.stop()
            rounds[name].append(result)
            print(f"round {number}:" if name == "tern" else "", end="\n" if name == "tern" else "")
            print(_line(result))
    print(f"  load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    def median(name, attr):
        values = [getattr(r, attr) for r in rounds[name] if getattr(r, attr) is not None]
        return statistics.median(values) if values else float("nan")

    tern_rate, base_rate = median("tern", "rate"), median("baseline", "rate")
    e2e = median("tern", "e2e_rate")
    print()
    print(f"{'median of ' + str(args.rounds):22s} {'Tern':>10s} {'baseline':>10s} {'ratio':>8s}")
    print(f"{'webhook texts/s':22s} {tern_rate:10.1f} {base_rate:10.1f} {tern_rate / base_rate:8.2f}")
    print(f"{'end to end texts/s':22s} {e2e:10.1f} {base_rate:10.1f} {e2e / base_rate:8.2f}")
    print(f"{'p99 ms':22s} {median('tern', 'p99'):10.1f} {median('baseline', 'p99'):10.1f}")
    print(f"{'web CPU ms per text':22s} {median('tern', 'cpu_web_ms'):10.2f} {median('baseline', 'cpu_web_ms'):10.2f}"
          f" {median('tern', 'cpu_web_ms') / max(median('baseline', 'cpu_web_ms'), 1e-9):8.2f}")
    print(f"{'all CPU ms per text':22s} {median('tern', 'cpu_all_ms'):10.2f} {median('baseline', 'cpu_all_ms'):10.2f}")
    return exit_status(rounds)


def exit_status(rounds: dict[str, list[Round]]) -> int:
    """1 when any round lost or doubled something, had a request not answered 200, or a note."""
    bad = [r for rs in rounds.values() for r in rs if r.lost or r.duplicated or set(r.statuses) != {200} or r.notes]
    return 1 if bad else 0
