#!/usr/bin/env python
"""Task-side cost of the inbound path, in this process: the batch worker and the send tasks.

Stores the texts of N consumers as the webhook does (`chats.intake.store_text`: a first text, the
menu choice "1", then two free texts into the queued chat), then runs the batch worker until
nothing is pending (`chats.intake.process_pending`), then runs the send tasks the worker enqueued
(read from django-q2's ORM broker, called as the cluster would call them, repeated until no reply
is left queued). It prints, for each phase, the CPU seconds of this process and of its PostgreSQL
backend, the SQL queries, and the cost per text and per reply sent. CPU time, not wall time: it
moves little with the shared machine's load.

    createdb -h 127.0.0.1 -U postgres tern_bench_tasks
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tern_bench_tasks python bench/tasks_cpu.py --consumers 250
    … --profile /tmp/tasks   (CPU-time cProfiles /tmp/tasks.worker and /tmp/tasks.sends; python -m pstats)

It migrates and seeds the demo on an empty database, and deletes what it created afterwards. No
REDIS_URL: the sends are taken from the ORM broker. The local SMS provider stands in for Twilio
(each send also records its immediate `sent` and `delivered`, as Twilio's callbacks would).
Target (issue 10): at most 3 ms of task-side CPU per reply sent. See docs/performance.md.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_NUMBER = "+15550100001"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consumers", type=int, default=250, help="consumers, 4 texts each (default 250)")
    parser.add_argument(
        "--together", action="store_true",
        help="store each consumer's 4 texts one after another (a batch then holds several texts of a consumer, as "
        "when consumers answer at once), not each consumer's first text, then each one's second, and so on",
    )
    parser.add_argument("--profile", help="write a cProfile of the worker and the sends to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.consumers <= 5000:
        parser.error("--consumers: 1 to 5000")
    return args


def setup_django():
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("SMS_PROVIDER", "local")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from sms.models import PhoneNumber

    call_command("migrate", verbosity=0)
    if not PhoneNumber.objects.filter(number=DEMO_NUMBER).exists():
        call_command("seed_demo", verbosity=0)
    # As bench/versus.py does: the numbers' sending limit is not what is measured here.
    PhoneNumber.objects.update(messages_per_second=10000)


class Meter:
    """CPU of this process and of its database backend, and the queries, over a block."""

    def __init__(self):
        from django.db import connection

        self.connection = connection
        self.backend = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.backend = cursor.fetchone()[0]

    def backend_cpu(self) -> float:
        if self.backend is None:
            return 0.0
        fields = Path(f"/proc/{self.backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _count(self, execute, sql, params, many, context):
        self.queries += 1
        return execute(sql, params, many, context)

    def __enter__(self):
        self.queries = 0  # counted by a wrapper: Django's own query log keeps only the last 9,000
        self.wrapper = self.connection.execute_wrapper(self._count)
        self.wrapper.__enter__()
        self.start = (time.process_time(), self.backend_cpu(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        end = (time.process_time(), self.backend_cpu(), time.perf_counter())
        self.python, self.database, self.wall = (b - a for a, b in zip(self.start, end))
        self.wrapper.__exit__(*exc)


@contextlib.contextmanager
def profiled(profile):
    if profile is None:
        yield
        return
    profile.enable()
    try:
        yield
    finally:
        profile.disable()


def store_texts(consumers: list[str], together: bool = False) -> int:
    from chats.intake import store_text

    stored = 0
    if together:
        order = [(step, number) for number in consumers for step in range(4)]
    else:
        order = [(step, number) for step in range(4) for number in consumers]
    for step, number in order:
        body = "Hi, I have a question" if step == 0 else "1" if step == 1 else f"Free text {step - 1}"
        store_text(message_sid="SM" + secrets.token_hex(16), from_number=number, to_number=DEMO_NUMBER, body=body, media=[])
        stored += 1
    return stored


def run_send_tasks() -> int:
    """Run the send tasks queued on the ORM broker, as the cluster would; returns how many."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    ran = 0
    while True:
        tasks = list(OrmQ.objects.order_by("pk"))
        if not tasks:
            return ran
        OrmQ.objects.filter(pk__in=[t.pk for t in tasks]).delete()
        for row in tasks:
            task = SignedPackage.loads(row.payload)
            func = task["func"]
            if isinstance(func, str):
                module, name = func.rsplit(".", 1)
                func = getattr(importlib.import_module(module), name)
            func(*task.get("args", ()), **task.get("kwargs", {}))
            ran += 1


def release_waiting() -> None:
    """Replies that wait for an earlier one to their recipient, or for the sending limit, are due
    again at once (the sweeper's job, without its wait)."""
    from django.utils import timezone
    from sms.models import MessageStatus, OutboundMessage
    from sms.send_queue import enqueue_sends

    waiting = list(OutboundMessage.objects.filter(status=MessageStatus.QUEUED, provider_sid__isnull=True).order_by("pk"))
    now = timezone.now()
    OutboundMessage.objects.filter(pk__in=[m.pk for m in waiting]).update(next_attempt_at=None, lease_until=now)
    for message in waiting:
        message.lease_until = now
    from sms.send_queue import batched_sends

    with batched_sends():
        enqueue_sends(waiting)


def clean_up(consumers: list[str]) -> None:
    from chats.models import Chat
    from sms.models import InboundMessage, OutboundMessage

    Chat.objects.filter(consumer_number__in=consumers).delete()
    InboundMessage.objects.filter(from_number__in=consumers).delete()
    OutboundMessage.objects.filter(to_number__in=consumers).delete()


def report(label: str, meter: Meter, per: int, unit: str) -> None:
    total = meter.python + meter.database
    print(
        f"{label:<8} {meter.wall:6.2f} s wall · Python {meter.python:6.2f} s · database {meter.database:5.2f} s · "
        f"{meter.queries:6d} queries · per {unit}: {1000 * total / per:5.2f} ms CPU "
        f"({1000 * meter.python / per:.2f} + {1000 * meter.database / per:.2f}), {meter.queries / per:.1f} queries"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_django()
    from chats.intake import process_pending
    from sms.models import MessageStatus, OutboundMessage

    run = secrets.token_hex(2)
    consumers = [f"+1555{int(run, 16) % 1000:03d}{i:04d}" for i in range(args.consumers)]
    # Not measured: two consumers' texts handled and sent first. A process's first batch pays its
    # lazy imports (django-q2's brokers, 0.16 s of CPU) and first statements once; a task
    # cluster's worker paid them long before a burst.
    warm_up = [f"+1555{int(run, 16) % 1000:03d}{i:04d}" for i in range(args.consumers, args.consumers + 2)]
    profiles = {"worker": cProfile.Profile(time.process_time), "sends": cProfile.Profile(time.process_time)} if args.profile else {}
    try:
        store_texts(warm_up, args.together)
        process_pending()
        run_send_tasks()
        texts = store_texts(consumers, args.together)
        with Meter() as worker, profiled(profiles.get("worker")):
            handled = process_pending()
        replies = OutboundMessage.objects.filter(to_number__in=consumers).count()
        with Meter() as sends, profiled(profiles.get("sends")):
            tasks = run_send_tasks()
            for _ in range(10):
                if not OutboundMessage.objects.filter(to_number__in=consumers, status=MessageStatus.QUEUED).exists():
                    break
                release_waiting()
                tasks += run_send_tasks()
        left = OutboundMessage.objects.filter(to_number__in=consumers, status=MessageStatus.QUEUED).count()
        print(f"{args.consumers} consumers, {texts} texts stored, {handled} handled, {replies} replies, {tasks} send tasks, {left} left queued")
        report("worker", worker, texts, "text")
        report("sends", sends, replies, "reply")
        both = (worker.python + worker.database + sends.python + sends.database) * 1000
        print(f"task side per reply sent: {both / replies:.2f} ms CPU (worker and sends; target ≤ 3 ms)")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for phase, profile in profiles.items():
            profile.dump_stats(f"{args.profile}.{phase}")
        return 1 if left or handled != texts else 0
    finally:
        clean_up(consumers + warm_up)


if __name__ == "__main__":
    sys.exit(main())
