"""The Outbound SMS API under load, beside the machine's own limit, in one invocation.

Each round starts, on a fresh database of the kind asked, Tern (`manage.py serve`, the demo data,
an API credential) and sends `--count` `POST /apps/api/v1/sms` requests, each to a new consumer
(so each opens a chat), over `--concurrency` keep-alive connections; then the baseline webhook
(bench/baseline/) gets as many texts with inbound.py's client. Rounds alternate A/B, so the shared
machine's load hits both. Printed per round and as the median: requests/s, p50/p99, the HTTP
statuses, the web processes' CPU per request, and for Tern the chats stored (one per 200 answer,
none doubled); last, the SQL queries of one request counted in-process.

    .venv/bin/python bench/api_sms.py --database postgres --rounds 3 --count 600

Exits non-zero when a request was not answered 200 or the chats stored do not match."""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inbound  # noqa: E402
import versus  # noqa: E402

API_PATH = "/apps/api/v1/sms"
SENDER = "+15550100002"  # the demo's outbound number (Billing)
MAX_COUNT = 5000
CREDENTIAL_ONLY = (
    "from portal.credentials import create_api_credential; credential, secret = create_api_credential(name='bench')"
)
CREDENTIAL = CREDENTIAL_ONLY + "; print(credential.key, secret)"
QUERIES_SCRIPT = """
import base64, json
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
{credential}
auth = "Basic " + base64.b64encode(f"{{credential.key}}:{{secret}}".encode()).decode()
client = Client()
counts = []
for number in ("+15559990001", "+15559990002"):  # the first warms the process up
    body = json.dumps({{"chat_type": "sms", "chat_subtype": "api_initiated", "end_user_number": number,
                       "outbound_number": "{sender}", "message": "Your order is ready for pickup " + number}})
    with CaptureQueriesContext(connection) as queries:
        response = client.post("{path}", body, content_type="application/json", HTTP_AUTHORIZATION=auth,
                               HTTP_HOST="127.0.0.1")
    assert response.status_code == 200, response.content
    counts.append(len(queries))
print(counts[-1])
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--count", type=int, default=600, help="API requests per round (default 600)")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel HTTP connections (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (default 3)")
    parser.add_argument("--web-workers", type=int, default=0, help="web processes each (default: 2 on PostgreSQL, 1 on SQLite)")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be between 1 and {MAX_COUNT}")
    if not 1 <= args.concurrency <= inbound.MAX_CONCURRENCY:
        parser.error(f"--concurrency must be between 1 and {inbound.MAX_CONCURRENCY}")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    return args


def consumers(count: int) -> list[str]:
    run = random.randrange(1000)
    return [f"+1555{run:03d}{index:04d}" for index in range(count)]


def credential(server: versus.Server) -> str:
    """A new API credential on the running server's database: the Basic authorization header."""
    output = subprocess.run(
        [versus.PYTHON, "manage.py", "shell", "-c", CREDENTIAL],
        env={**server.env, "API_RATE_LIMIT": "1000000/minute"}, cwd=versus.ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.split()
    key, secret = output[-2:]
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def post_all(urls: list[str], authorization: str, numbers: list[str], concurrency: int):
    """Each number gets one request, over one keep-alive connection per thread; the servers' URLs
    taken in turn. Returns the results (latencies, statuses, failures), the chat ids answered and
    the seconds it took."""
    results = inbound.Results()
    chat_ids: list[int] = []
    local = threading.local()
    targets = [urllib.parse.urlsplit(url) for url in urls]

    def connection(index: int, fresh: bool = False) -> http.client.HTTPConnection:
        conns = getattr(local, "conns", None)
        if conns is None:
            conns = local.conns = {}
        if fresh or index not in conns:
            if index in conns:
                conns[index].close()
            target = targets[index]
            conns[index] = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=inbound.REQUEST_TIMEOUT)
        return conns[index]

    def post(position: int, number: str) -> None:
        body = json.dumps({
            "chat_type": "sms", "chat_subtype": "api_initiated", "end_user_number": number,
            "outbound_number": SENDER, "message": f"Your order #{position} is ready for pickup.",
        })
        headers = {"Content-Type": "application/json", "Authorization": authorization}
        index = position % len(targets)
        for attempt in (1, 2):  # a dropped keep-alive connection is reopened once
            conn = connection(index, fresh=attempt == 2)
            started = time.perf_counter()
            try:
                conn.request("POST", API_PATH, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                if attempt == 2:
                    results.fail(f"{number}: {exc!r}")
                    return
                continue
            results.add(time.perf_counter() - started, response.status)
            if response.status == 200:
                with results.lock:
                    chat_ids.append(json.loads(payload)["id"])
            else:
                results.fail(f"{number}: HTTP {response.status} {payload[:200]!r}")
            return

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="api") as pool:
        for future in [pool.submit(post, position, number) for position, number in enumerate(numbers)]:
            future.result()
    return results, chat_ids, time.perf_counter() - started


def chats_stored(kind: str, server: versus.Server, numbers: list[str]) -> tuple[int, int]:
    """(consumers with a chat, chats) among the run's consumers."""
    conn = versus._connect(kind, server)
    marks = ",".join("?" * len(numbers))
    try:
        return versus._one(
            conn, f"SELECT COUNT(DISTINCT consumer_number), COUNT(*) FROM chats_chat WHERE consumer_number IN ({marks})",
            numbers,
        )
    finally:
        conn.close()


def tern_round(kind: str, work: Path, web_workers: int, args) -> versus.Round:
    os.environ["API_RATE_LIMIT"] = "1000000/minute"  # start_tern's environment is this process's
    server = versus.start_tern(kind, work, web_workers)
    try:
        authorization = credential(server)
        numbers = consumers(args.count)
        pg_database = server.database if kind == "postgres" else ""
        before = inbound.cpu_snapshot(server.pids, pg_database)
        results, chat_ids, elapsed = post_all(server.urls, authorization, numbers, args.concurrency)
        cpu = inbound.cpu_used(before, inbound.cpu_snapshot(server.pids, pg_database))
        with_chat, chats = chats_stored(kind, server, numbers)
    finally:
        server.stop()
    latencies = [value * 1000 for value in results.latencies] or [0.0]
    answered = results.statuses.get(200, 0)
    result = versus.Round(
        name="tern",
        rate=args.count / elapsed,
        p50=statistics.median(latencies),
        p99=inbound.percentile(latencies, 0.99),
        statuses=dict(sorted(results.statuses.items())),
        lost=answered - with_chat,  # a 200 whose chat is not stored
        duplicated=chats - with_chat + (len(chat_ids) - len(set(chat_ids))),
        cpu_web_ms=cpu.get("web", 0.0) * 1000 / args.count,
        cpu_all_ms=sum(cpu.values()) * 1000 / args.count,
    )
    if results.failures:
        result.notes.append(f"{len(results.failures)} failures, e.g. {results.failures[0]}")
    return result


def baseline_round(kind: str, work: Path, web_workers: int, args) -> versus.Round:
    server = versus.start_baseline(kind, work, web_workers)
    try:
        texts = argparse.Namespace(count=args.count, consumers=args.count, concurrency=args.concurrency)
        return versus.one_round("baseline", kind, server, texts, inbound)
    finally:
        server.stop()


def queries_per_request() -> int:
    """One API request's SQL queries, in-process on a fresh SQLite database with the demo data
    (after-commit work, the send, not included: it runs in the task cluster)."""
    work = Path(tempfile.mkdtemp(prefix="tern-api-queries-"))
    env = {**versus._base_env(), "TERN_VAR_DIR": str(work), "API_RATE_LIMIT": "1000000/minute"}
    script = QUERIES_SCRIPT.format(credential=CREDENTIAL_ONLY, path=API_PATH, sender=SENDER)
    for command in (["migrate", "--noinput"], ["seed_demo"]):
        versus._run([versus.PYTHON, "manage.py", *command], env, work / "queries.log")
    output = subprocess.run([versus.PYTHON, "manage.py", "shell", "-c", script], env=env, cwd=versus.ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return int(output[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    kind = args.database
    web_workers = args.web_workers or (2 if kind == "postgres" else 1)
    work = Path(tempfile.mkdtemp(prefix="tern-api-vs-baseline-"))
    print(f"Outbound SMS API vs the baseline webhook: {args.rounds} rounds A/B, {kind}, {web_workers} web process(es) "
          f"each, {args.count} requests, {args.concurrency} connections; {os.cpu_count()} CPUs")
    print(f"  load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}  (logs in {work})")
    rounds: dict[str, list[versus.Round]] = {"tern": [], "baseline": []}
    for number in range(1, args.rounds + 1):
        print(f"round {number}:")
        for name, run in (("tern", tern_round), ("baseline", baseline_round)):
            result = run(kind, work, web_workers, args)
            rounds[name].append(result)
            print(versus._line(result).replace("texts/s", "req/s", 1).replace("ms/text", "ms/req", 1) if name == "tern" else versus._line(result))
    print(f"  load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    def median(name, attr):
        return statistics.median(getattr(r, attr) for r in rounds[name])

    tern_rate, base_rate = median("tern", "rate"), median("baseline", "rate")
    print()
    print(f"{'median of ' + str(args.rounds):24s} {'API':>10s} {'baseline':>10s} {'ratio':>8s}")
    print(f"{'requests (texts)/s':24s} {tern_rate:10.1f} {base_rate:10.1f} {tern_rate / base_rate:8.2f}")
    print(f"{'p99 ms':24s} {median('tern', 'p99'):10.1f} {median('baseline', 'p99'):10.1f}")
    print(f"{'web CPU ms per request':24s} {median('tern', 'cpu_web_ms'):10.2f} {median('baseline', 'cpu_web_ms'):10.2f}"
          f" {median('tern', 'cpu_web_ms') / max(median('baseline', 'cpu_web_ms'), 1e-9):8.2f}")
    print(f"{'queries per API request':24s} {queries_per_request():10d}")
    return versus.exit_status(rounds)


if __name__ == "__main__":
    sys.exit(main())
