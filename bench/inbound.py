#!/usr/bin/env python
"""Inbound SMS benchmark: signed Twilio webhooks over HTTP to a running Tern server.

Many simulated consumers text the demo number at once (first a greeting, then the menu choice
"1", then free text), each consumer's texts in order, from a pool of threads. 5% of the texts are
posted a second time with the same MessageSid, as Twilio retries. Then the database is read
through the ORM (the same DATABASE_URL / TERN_VAR_DIR as the server) to count what was stored,
and one more text is run in-process through django.test.Client to count its SQL queries.

    TWILIO_AUTH_TOKEN=bench-token python manage.py serve --port 8799 &
    TWILIO_AUTH_TOKEN=bench-token python bench/inbound.py --url http://127.0.0.1:8799

Prints messages/s, p50/p99 webhook latency, lost and duplicated texts and queries per message.
Loopback only; see bench/README.md.
"""
from __future__ import annotations

import argparse
import http.client
import ipaddress
import os
import random
import secrets
import statistics
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INBOUND_PATH = "/sms/twilio/inbound/"
DEMO_NUMBER = "+15550100001"
RETRY_SHARE = 0.05
MAX_COUNT = 100_000
MAX_CONCURRENCY = 256
REQUEST_TIMEOUT = 60


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        action="append",
        help="the running Tern server, on loopback (default http://127.0.0.1:8000); give it several "
        "times for several web processes sharing one database: consumers are spread over them",
    )
    parser.add_argument("--count", type=int, default=500, help="texts to send (default 500)")
    parser.add_argument("--consumers", type=int, default=50, help="simulated consumers (default 50)")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel HTTP connections (default 16)")
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN") or "bench-token",
        help="the server's TWILIO_AUTH_TOKEN (default: $TWILIO_AUTH_TOKEN or bench-token)",
    )
    parser.add_argument("--to", default=DEMO_NUMBER, help=f"the portal number texted (default {DEMO_NUMBER})")
    parser.add_argument(
        "--public-base-url",
        default=os.environ.get("PUBLIC_BASE_URL", ""),
        help="the server's PUBLIC_BASE_URL, when it has one (the URL signatures are computed over)",
    )
    parser.add_argument("--no-queries", action="store_true", help="skip the in-process query count")
    parser.add_argument(
        "--server-pid",
        type=int,
        help="the pid of `manage.py serve`: its processes' CPU seconds (and the database's server "
        "processes', for PostgreSQL) are read from /proc before and after the run, per text",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=0,
        metavar="SECONDS",
        help="after the run, wait up to SECONDS for the replies to leave the queue (the number's "
        "sending limit spreads them out) and report the CPU again, replies included",
    )
    parser.add_argument(
        "--vs-baseline",
        action="store_true",
        help="start Tern and the baseline webhook (bench/baseline/) on fresh databases of one kind, "
        "alternately, and print each one's figures and the ratio (bench/versus.py); --url is not used",
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --vs-baseline: A/B rounds (default 3)")
    parser.add_argument(
        "--database", choices=["sqlite", "postgres"], default="sqlite",
        help="with --vs-baseline: SQLite, or PostgreSQL + Redis on this machine's servers (default sqlite)",
    )
    parser.add_argument(
        "--web-workers", type=int, default=0,
        help="with --vs-baseline: web processes of each (default 1 on SQLite, 2 on PostgreSQL)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be between 1 and {MAX_COUNT}")
    if not 1 <= args.consumers <= args.count:
        parser.error("--consumers must be between 1 and --count")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    args.url = [url.rstrip("/") for url in (args.url or ["http://127.0.0.1:8000"])]
    for url in args.url:
        target = urllib.parse.urlsplit(url)
        if target.scheme != "http" or not target.hostname or not _is_loopback(target.hostname):
            parser.error("--url must be http:// on a loopback address (127.0.0.1, localhost, [::1])")
    return args


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the texts ----------------------------------------------------------------------------------


@dataclass
class Text:
    consumer: str
    body: str
    sid: str
    retry: bool = False  # posted a second time, as a Twilio retry


def plan(count: int, consumers: int, rng: random.Random) -> list[list[Text]]:
    """Each consumer's texts, in the order they send them: a greeting, "1", then free text."""
    run = rng.randrange(1000)
    numbers = [f"+1555{run:03d}{index:04d}" for index in range(consumers)]
    scripts: list[list[Text]] = [[] for _ in numbers]
    for n in range(count):
        index = n % consumers
        step = len(scripts[index])
        body = "Hi, I have a question" if step == 0 else "1" if step == 1 else f"Free text {step - 1} from {numbers[index]}"
        scripts[index].append(Text(numbers[index], body, "SM" + secrets.token_hex(16)))
    everything = [text for script in scripts for text in script]
    for text in rng.sample(everything, max(1, round(len(everything) * RETRY_SHARE))):
        text.retry = True
    return scripts


def params_for(text: Text, to: str) -> dict[str, str]:
    return {
        "MessageSid": text.sid,
        "SmsSid": text.sid,
        "SmsMessageSid": text.sid,
        "AccountSid": "AC" + "0" * 32,
        "From": text.consumer,
        "To": to,
        "Body": text.body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)  # seconds, every request
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, latency: float, status: int):
        with self.lock:
            self.latencies.append(latency)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def fail(self, what: str):
        with self.lock:
            self.failures.append(what)


class Poster:
    """Signed form POSTs over one keep-alive connection per thread."""

    def __init__(self, url: str, signing_base: str, token: str, to: str, results: Results):
        from twilio.request_validator import RequestValidator

        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = (parts.path.rstrip("/") or "") + INBOUND_PATH
        self.signed_url = (signing_base.rstrip("/") or url.rstrip("/")) + INBOUND_PATH
        self.validator = RequestValidator(token)
        self.to = to
        self.results = results
        self.local = threading.local()

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
            self.local.conn = conn
        return conn

    def post(self, text: Text) -> int:
        params = params_for(text, self.to)
        body = urllib.parse.urlencode(params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self.validator.compute_signature(self.signed_url, params),
            "User-Agent": "TwilioProxy/1.1 (tern bench)",
        }
        for attempt in (1, 2):  # a dropped keep-alive connection is reopened once
            conn = self._connection(fresh=attempt == 2)
            started = time.perf_counter()
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                if attempt == 2:
                    self.results.fail(f"{text.sid}: {exc!r}")
                    return 0
                continue
            self.results.add(time.perf_counter() - started, response.status)
            if response.status != 200:
                self.results.fail(f"{text.sid}: HTTP {response.status}")
            return response.status
        return 0


def send_all(args, scripts: list[list[Text]]) -> tuple[Results, float]:
    results = Results()
    posters = [Poster(url, args.public_base_url, args.auth_token, args.to, results) for url in args.url]
    retry_pool = ThreadPoolExecutor(max_workers=max(1, args.concurrency // 4), thread_name_prefix="retry")
    retries = []
    retries_lock = threading.Lock()

    def run_consumer(poster: Poster, script: list[Text]):
        for text in script:  # one consumer's texts in order, as a phone sends them
            if text.retry:
                # Twilio retries a webhook it thinks failed: the same MessageSid again, here
                # racing the first delivery.
                with retries_lock:
                    retries.append(retry_pool.submit(poster.post, text))
            poster.post(text)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="consumer") as pool:
        futures = [pool.submit(run_consumer, posters[i % len(posters)], script) for i, script in enumerate(scripts)]
        for future in futures:
            future.result()
    for future in list(retries):
        future.result()
    elapsed = time.perf_counter() - started
    retry_pool.shutdown(wait=True)
    return results, elapsed


# --- the database -------------------------------------------------------------------------------


def setup_django(token: str):
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("TWILIO_AUTH_TOKEN", token)
    import django

    django.setup()


def stored_counts(sids: list[str]) -> tuple[int, int]:
    """(distinct sids stored, rows stored) among the run's sids."""
    from sms.models import InboundMessage

    distinct = rows = 0
    for start in range(0, len(sids), 500):
        chunk = sids[start : start + 500]
        found = list(InboundMessage.objects.filter(message_sid__in=chunk).values_list("message_sid", flat=True))
        rows += len(found)
        distinct += len(set(found))
    return distinct, rows


def queries_per_text(token: str, to: str, rng: random.Random) -> list[tuple[str, int, int]]:
    """Run one new consumer's first text, menu choice and a chat text in-process through the real
    webhook view, counting the SQL queries of each (after-commit work included) and the Python
    function calls it made: unlike seconds, that count does not depend on what else the machine
    is doing. A first consumer's texts warm the process up uncounted."""
    import cProfile
    import pstats

    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from twilio.request_validator import RequestValidator

    settings.TWILIO_AUTH_TOKEN = token
    host = "127.0.0.1"
    signed_url = (settings.PUBLIC_BASE_URL or f"http://{host}") + INBOUND_PATH
    validator = RequestValidator(token)
    client = Client()
    texts = [("first text", "Hi, I have a question"), ("menu choice", "1"), ("text in a queued chat", "Hello?")]
    counts = []
    for counted in (False, True):
        consumer = f"+1555999{rng.randrange(10_000):04d}"
        for label, body in texts:
            params = params_for(Text(consumer, body, "SM" + secrets.token_hex(16)), to)
            signature = validator.compute_signature(signed_url, params)
            profile = cProfile.Profile()
            with CaptureQueriesContext(connection) as queries:
                profile.enable()
                response = client.post(INBOUND_PATH, params, HTTP_X_TWILIO_SIGNATURE=signature, HTTP_HOST=host)
                profile.disable()
            if response.status_code != 200:
                raise SystemExit(f"in-process webhook answered {response.status_code}: {response.content[:200]!r}")
            if counted:
                counts.append((label, len(queries), pstats.Stats(profile).total_calls))
    return counts


# --- CPU ---------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, command line, CPU seconds used) of every process we can read."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        found[int(entry)] = (ppid, cmdline, (utime + stime) / CLOCK_TICKS)
    return found


def _role(cmdline: str, database: str) -> str | None:
    if "daphne" in cmdline or "portal.web" in cmdline:
        return "web"
    if "qcluster" in cmdline:
        return "tasks"
    if " sweep" in cmdline:
        return "sweeper"
    if database and cmdline.startswith("postgres:") and f" {database} " in f"{cmdline} ":
        return "database"
    return None


def cpu_snapshot(server_pid: int | list[int], database: str) -> dict[int, tuple[str, float]]:
    """pid → (role, CPU seconds) of the server's processes (web, tasks, sweeper) and the
    PostgreSQL backends serving `database`. A process that ends during the run takes its CPU
    with it (the PostgreSQL backends of a connection pool stay for the run)."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    ours, todo = set(), list(server_pid) if isinstance(server_pid, list) else [server_pid]
    while todo:
        pid = todo.pop()
        ours.add(pid)
        todo.extend(children.get(pid, []))
    snapshot = {}
    for pid, (_, cmdline, seconds) in processes.items():
        role = _role(cmdline, database) if pid in ours or cmdline.startswith("postgres:") else None
        if role:
            snapshot[pid] = (role, seconds)
    return snapshot


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per role between two snapshots."""
    used: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        used[role] = used.get(role, 0.0) + seconds - before.get(pid, (role, 0.0))[1]
    return used


def wait_for_replies(consumers: list[str], seconds: float) -> tuple[int, int]:
    """Wait until no reply to the run's consumers is still waiting to be sent; returns (replies,
    still waiting)."""
    from sms.models import MessageStatus, OutboundMessage

    waiting_statuses = [MessageStatus.PENDING, MessageStatus.QUEUED]
    replies = OutboundMessage.objects.filter(to_number__in=consumers)
    deadline = time.monotonic() + seconds
    while True:
        waiting = replies.filter(status__in=waiting_statuses).count()
        if not waiting or time.monotonic() >= deadline:
            return replies.count(), waiting
        time.sleep(0.5)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.vs_baseline:
        sys.path.insert(0, str(ROOT / "bench"))
        import versus

        return versus.main(args, sys.modules[__name__])
    rng = random.Random()
    scripts = plan(args.count, args.consumers, rng)
    texts = [text for script in scripts for text in script]
    retried = sum(text.retry for text in texts)

    setup_django(args.auth_token)  # before sending: fail early on a wrong DATABASE_URL
    from django.conf import settings

    database = settings.DATABASES["default"]
    print(f"Tern inbound benchmark → {', '.join(args.url)} ({INBOUND_PATH})")
    print(
        f"  {args.count} texts from {args.consumers} consumers to {args.to}, {args.concurrency} connections, "
        f"{retried} resent as Twilio retries"
    )
    print(f"  database: {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}")

    pg_database = database["NAME"] if database["ENGINE"].endswith("postgresql") else ""
    cpu_before = cpu_snapshot(args.server_pid, pg_database) if args.server_pid else None
    load_before = os.getloadavg()
    results, elapsed = send_all(args, scripts)
    load_after = os.getloadavg()
    cpu = cpu_used(cpu_before, cpu_snapshot(args.server_pid, pg_database)) if args.server_pid else None
    requests = len(results.latencies)
    if not requests:
        print("No request got an answer: is the server running, with the same TWILIO_AUTH_TOKEN?")
        for line in results.failures[:5]:
            print("  ", line)
        return 2

    sids = [text.sid for text in texts]
    distinct, rows = stored_counts(sids)
    lost = args.count - distinct
    duplicated = rows - distinct
    latencies_ms = [value * 1000 for value in results.latencies]

    print()
    print(f"messages/s          {args.count / elapsed:8.1f}   ({args.count} texts + {retried} retries in {elapsed:.2f} s)")
    print(f"requests/s          {requests / elapsed:8.1f}")
    print(f"latency p50         {statistics.median(latencies_ms):8.1f} ms")
    print(f"latency p99         {percentile(latencies_ms, 0.99):8.1f} ms")
    print(f"latency max         {max(latencies_ms):8.1f} ms")
    print(f"HTTP statuses       {dict(sorted(results.statuses.items()))}")
    print(f"lost                {lost:8d}")
    print(f"duplicated          {duplicated:8d}")
    print(f"load average        {load_before[0]:8.2f} before, {load_after[0]:.2f} after (1 min; {os.cpu_count()} CPUs)")
    if cpu is not None:
        for role in ("web", "tasks", "sweeper", "database"):
            if role in cpu:
                print(f"CPU per text        {cpu[role] * 1000 / args.count:8.1f} ms  {role} ({cpu[role]:.1f} s in all)")
        total = sum(cpu.values())
        print(f"CPU per text        {total * 1000 / args.count:8.1f} ms  all of the above (replies still queued then not included)")
    if args.drain:
        drain_started = time.perf_counter()
        replies, waiting = wait_for_replies(sorted({text.consumer for text in texts}), args.drain)
        drained = time.perf_counter() - drain_started
        print(f"replies             {replies:8d}   ({waiting} still waiting after {drained:.1f} s more)")
        if cpu is not None:
            cpu = cpu_used(cpu_before, cpu_snapshot(args.server_pid, pg_database))
            for role in ("web", "tasks", "sweeper", "database"):
                if role in cpu:
                    print(f"CPU, replies sent   {cpu[role] * 1000 / args.count:8.1f} ms per text  {role} ({cpu[role]:.1f} s)")
            total = sum(cpu.values())
            print(f"CPU, replies sent   {total * 1000 / args.count:8.1f} ms per text  all")
            if "tasks" in cpu:
                print(f"tasks CPU per reply {cpu['tasks'] * 1000 / max(replies, 1):8.1f} ms")
    if results.failures:
        print(f"failures            {len(results.failures):8d}  e.g. {results.failures[0]}")
    if not args.no_queries:
        for label, count, calls in queries_per_text(args.auth_token, args.to, rng):
            print(
                f"queries per webhook {count:8d}   ({label}, in-process, after-commit work included; "
                f"{calls:,} Python function calls; the batch worker's are in tests/chats/test_queries.py)"
            )
    return 0 if not lost and not duplicated and not results.failures else 1


if __name__ == "__main__":
    sys.exit(main())
