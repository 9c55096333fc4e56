#!/usr/bin/env python
"""Chat timer benchmark: how fast the one sweeper expires due chats.

Creates N chats waiting in a queue of their own whose unanswered expiration has passed (each
from its own consumer number, the queue's "expired" text set, as in real use), then runs
`chats.timers.sweep()` — in this process, or in several worker processes at once, as several
sweepers would on PostgreSQL — and prints chats expired per second and the sweepers' CPU time
per chat. Then it checks that every chat was expired exactly once (one `status.finished` event
and one expired text each), counts the SQL queries of expiring one more chat, and removes what
it created.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tern_bench_sweep python bench/sweep.py
    DATABASE_URL=… python bench/sweep.py --count 10000 --workers 2

Use a database of its own (`createdb tern_bench_sweep`, then `manage.py migrate` with that
DATABASE_URL): the expired texts are enqueued as send tasks on the django-q2 broker, like any
other. With the ORM broker (no REDIS_URL) the bench deletes its tasks afterwards; with the Redis
broker they stay queued, so point REDIS_URL at a Redis database of its own too.

Target (issue 5): at least 1,000 chats expired per second on PostgreSQL. See docs/performance.md.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_COUNT = 200_000
MAX_WORKERS = 16
EXPIRED_TEXT = "This conversation has expired. Text us again any time."


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="due chats to expire (default 10,000)")
    parser.add_argument("--workers", type=int, default=1, help="sweeper processes running at once (default 1)")
    parser.add_argument("--keep", action="store_true", help="leave the bench's rows in the database")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be between 1 and {MAX_COUNT}")
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be between 1 and {MAX_WORKERS}")
    return args


def setup_django():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def create_due_chats(count: int, tag: str):
    """A number, a leaf queue with its expired text, and `count` queued chats whose unanswered
    expiration passed a minute ago, in bulk inserts."""
    import datetime as dt

    from django.utils import timezone

    from chats.models import Chat, ChatStatus, Participant, ParticipantType
    from chats.deadlines import DeadlineKind
    from queues.models import Queue, QueueMessages
    from sms.models import PhoneNumber, Verification

    number = PhoneNumber.objects.create(
        number=f"+1555{secrets.randbelow(10**7):07d}", label=f"sweep bench {tag}",
        verification=Verification.VERIFIED, messages_per_second=1000,
    )
    queue = Queue.objects.create(name=f"Sweep bench {tag}", unanswered_expiration_minutes=1)
    QueueMessages.objects.create(queue=queue, language="en", expired=EXPIRED_TEXT)
    now = timezone.now()
    queued_at = now - dt.timedelta(minutes=2)
    chats = [
        Chat(
            consumer_number=f"+1777{index:07d}",
            portal_number=number,
            queue=queue,
            status=ChatStatus.QUEUED,
            language_chosen=True,
            queued_at=queued_at,
            deadline_at=queued_at + dt.timedelta(minutes=1, seconds=index % 60),
            deadline_kind=DeadlineKind.UNANSWERED,
        )
        for index in range(count)
    ]
    Chat.objects.bulk_create(chats, batch_size=2000)
    ids = list(Chat.objects.filter(queue=queue).values_list("pk", flat=True))
    Participant.objects.bulk_create(
        [Participant(chat_id=pk, type=ParticipantType.END_USER) for pk in ids], batch_size=2000
    )
    return number, queue


def _worker(start_at: float, results):
    from django.db import connections

    from chats import timers

    connections.close_all()  # a connection of its own: the parent forgot its own before the fork
    while time.time() < start_at:
        time.sleep(0.001)
    began, cpu = time.perf_counter(), time.process_time()
    acted = timers.sweep()
    results.put((acted, time.perf_counter() - began, time.process_time() - cpu))
    connections.close_all()


def _forget_connections() -> None:
    """Close this process's connections and its psycopg pool (DB_POOL), so that a forked child
    never uses a socket of its parent's."""
    from django.db import connections

    connections.close_all()
    for connection in connections.all():
        if connection.settings_dict.get("OPTIONS", {}).get("pool"):
            connection.close_pool()


def run_sweepers(workers: int) -> tuple[int, float, list[int], float]:
    _forget_connections()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 0.5
    processes = [context.Process(target=_worker, args=(start_at, results)) for _ in range(workers)]
    began = time.time()
    for process in processes:
        process.start()
    counts, cpu_seconds = [], 0.0
    for _ in processes:
        acted, _seconds, cpu = results.get()
        cpu_seconds += cpu
        counts.append(acted)
    for process in processes:
        process.join()
    elapsed = time.time() - max(began, start_at)
    return sum(counts), elapsed, counts, cpu_seconds


def check(queue, count: int) -> tuple[int, int, int]:
    from django.db.models import Count

    from chats.models import Chat, ChatEvent, ChatStatus, Message

    finished = Chat.objects.filter(queue=queue, status=ChatStatus.FINISHED).count()
    events = ChatEvent.objects.filter(chat__queue=queue, kind="status.finished").values("chat").annotate(n=Count("pk"))
    twice = sum(1 for row in events if row["n"] != 1)
    texts = Message.objects.filter(chat__queue=queue, body=EXPIRED_TEXT).values("chat").annotate(n=Count("pk"))
    text_twice = sum(1 for row in texts if row["n"] != 1) + (count - len(texts))
    return finished, twice, text_twice


def queries_for_one(number, queue) -> int:
    import datetime as dt

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from chats import timers
    from chats.models import Chat, ChatStatus
    from chats.deadlines import DeadlineKind

    past = timezone.now() - dt.timedelta(minutes=5)
    Chat.objects.create(
        consumer_number="+17779999999", portal_number=number, queue=queue, status=ChatStatus.QUEUED,
        language_chosen=True, queued_at=past, deadline_at=past, deadline_kind=DeadlineKind.UNANSWERED,
    )
    with CaptureQueriesContext(connection) as captured:
        assert timers.sweep() == 1
    return len(captured.captured_queries)


def cleanup(number, queue) -> None:
    from django.conf import settings

    from chats.models import Chat, Message
    from sms.models import MessageStatusEvent, OutboundMessage

    outbound_ids = list(OutboundMessage.objects.filter(portal_number=number).values_list("pk", flat=True))
    if not settings.REDIS_URL:
        from django_q.models import OrmQ

        names = {f"send-sms-{pk}" for pk in outbound_ids}
        stale = [task.pk for task in OrmQ.objects.all().iterator() if task.name() in names]
        OrmQ.objects.filter(pk__in=stale).delete()
    Message.objects.filter(chat__queue=queue).delete()
    MessageStatusEvent.objects.filter(message_id__in=outbound_ids).delete()
    OutboundMessage.objects.filter(pk__in=outbound_ids).delete()
    Chat.objects.filter(queue=queue).delete()
    queue.messages.all().delete()
    queue.delete()
    number.delete()


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_django()
    from django.db import connection

    tag = secrets.token_hex(3)
    print(f"database: {connection.vendor} ({connection.settings_dict['NAME']}), "
          f"{args.count} due chats, {args.workers} sweeper process(es)")
    began = time.perf_counter()
    number, queue = create_due_chats(args.count, tag)
    print(f"created in {time.perf_counter() - began:.1f} s")

    acted, elapsed, per_worker, cpu_seconds = run_sweepers(args.workers)
    finished, events_twice, texts_twice = check(queue, args.count)
    rate = acted / elapsed if elapsed else float("inf")
    print(f"expired: {acted} in {elapsed:.2f} s → {rate:,.0f} chats expired/s")
    if args.workers > 1:
        print(f"per sweeper process: {per_worker}")
    if acted:
        print(f"sweeper CPU per chat expired: {cpu_seconds * 1000 / acted:.2f} ms (the sweeper processes only)")
    print(f"finished: {finished}/{args.count}; expired twice: {events_twice}; expired text missing or twice: {texts_twice}")
    print(f"SQL queries to expire one chat (a sweep with one chat due): {queries_for_one(number, queue)}")
    if not args.keep:
        cleanup(number, queue)
    ok = acted == finished == args.count and events_twice == 0 and texts_twice == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
