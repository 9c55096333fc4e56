#!/usr/bin/env python
"""The supervisors' reports and monitor on a busy portal (issue 13), PostgreSQL only.

Seeds 100,000 chats and 1,000,000 transcript entries over 90 days (400,000 of them texts the
portal sent, with their statuses), 50 agents in 5 teams, 10 queues, each agent's status history,
with INSERT … SELECT generate_series on the server (seconds, not minutes); then times, in this
process, each report for the last 30 days (median of 3, its query count), the monitor's first
paint (`monitor_state`, with 300 chats live), and the Individual Chat History CSV of all 90 days
streamed through the real view (rows/s, and the peak of Python memory for the first 10,000 rows
and for all: flat means the same).

    createdb -h 127.0.0.1 -U postgres tern_bench_reports
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tern_bench_reports python bench/reports.py

The seed is kept: a second run times again without seeding (`--reseed` starts over). Targets:
each report ≤ 500 ms, the monitor's state ≤ 200 ms, the CSV ≥ 20,000 rows/s with flat memory.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHATS = 100_000
ENTRIES_PER_CHAT = 10  # 4 of them texts the portal sent
DAYS = 90
AGENTS = 50
QUEUES = 10
TEAMS = 5
PREFIX = "+1555"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reseed", action="store_true", help="delete the seeded rows and seed again")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("bench/reports.py needs DATABASE_URL=postgres://… (the targets are PostgreSQL's)")
    call_command("migrate", verbosity=0)


def insert_select(model, count: int, columns: dict[str, str], params: dict | None = None, *, source: str = "") -> None:
    """INSERT INTO model's table one row per generate_series(1, count) value `g`: `columns` are SQL
    expressions; every other column gets the field's default ("" or None when it has none)."""
    from django.db import connection

    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    names, values, args = [], [], dict(params or {})
    for field in fields:
        names.append(connection.ops.quote_name(field.column))
        if field.column in columns:
            values.append(columns[field.column])
        else:
            key = f"default_{field.column}"
            args[key] = field.get_db_prep_save(field.get_default(), connection)
            values.append(f"%({key})s")
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(names)}) SELECT {', '.join(values)} "
        f"FROM generate_series(1, {int(count)}) AS g {source}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql.replace(" % ", " %% "), args)  # SQL's modulo, not a placeholder


def seed() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from chats.models import Chat, Message, Participant
    from portal.models import AgentProfile, AgentStatusChange, Team
    from queues.models import Queue
    from sms.models import MessageStatusEvent, OutboundMessage, PhoneNumber

    started = time.perf_counter()
    with transaction.atomic():
        number, _ = PhoneNumber.objects.get_or_create(number="+15550100001", defaults={"label": "Bench"})
        queues = [Queue.objects.create(name=f"Bench queue {n}", position=n) for n in range(QUEUES)]
        users = get_user_model().objects.bulk_create(
            get_user_model()(username=f"bench{n}", email=f"bench{n}@example.com") for n in range(AGENTS)
        )
        agents = AgentProfile.objects.bulk_create(AgentProfile(user=u, display_name=f"Agent {n:02d}") for n, u in enumerate(users))
        for t in range(TEAMS):
            team = Team.objects.create(name=f"Bench team {t}")
            team.agents.add(*agents[t::TEAMS])
            queues[t].teams.add(team)
            queues[t + TEAMS].teams.add(team)
        now = timezone.now()
        base = {"number": number.pk, "start": now - timezone.timedelta(days=DAYS), "span": DAYS * 86400.0 / CHATS,
                "queues": [q.pk for q in queues], "agents": [a.pk for a in agents]}
        t = "(%(start)s + (g * %(span)s) * interval '1 second')"
        outbound = "g % 7 = 0"
        abandoned = "g % 9 = 0"
        wait = "((g * 37) % 150)"
        insert_select(Chat, CHATS, {
            "consumer_number": f"'{PREFIX}' || lpad(g::text, 7, '0')",
            "portal_number_id": "%(number)s",
            "queue_id": f"(%(queues)s::int[])[1 + g % {QUEUES}]",
            "status": "'finished'",
            "chat_type": f"CASE WHEN {outbound} THEN 'outbound_sms' ELSE 'sms' END",
            "start_type": f"CASE WHEN {outbound} THEN 'outbound' WHEN {abandoned} THEN '' ELSE 'auto_answer' END",
            "agent_id": f"CASE WHEN {abandoned} AND NOT {outbound} THEN NULL ELSE (%(agents)s::int[])[1 + g % {AGENTS}] END",
            "created_at": t,
            "queued_at": f"CASE WHEN {outbound} THEN NULL ELSE {t} + interval '30 seconds' END",
            "assigned_at": f"CASE WHEN {abandoned} AND NOT {outbound} THEN NULL WHEN {outbound} THEN {t} "
                           f"ELSE {t} + interval '30 seconds' + {wait} * interval '1 second' END",
            "ends_at": f"{t} + interval '30 seconds' + ({wait} + 300 + (g % 600)) * interval '1 second'",
            "finish_reason": f"CASE WHEN {abandoned} AND NOT {outbound} THEN 'expired_unanswered' ELSE 'agent_ended' END",
            "language_chosen": "true",
        }, base)
        first = Chat.objects.filter(consumer_number__startswith=PREFIX).order_by("pk").values_list("pk", flat=True).first()
        chats = f"(SELECT * FROM chats_chat WHERE id = %(first)s + g - 1) c"
        insert_select(Participant, CHATS, {
            "chat_id": "c.id", "type": "'agent'", "agent_id": "c.agent_id", "status": "'ended'",
            "connected_at": "c.assigned_at", "ended_at": "c.ends_at",
        }, {"first": first}, source=f"CROSS JOIN LATERAL {chats} WHERE c.agent_id IS NOT NULL")
        # The portal's texts: 4 per chat, then the transcript's 10 entries point at them.
        insert_select(OutboundMessage, CHATS * 4, {
            "to_number": f"'{PREFIX}' || lpad((1 + (g - 1) / 4)::text, 7, '0')",
            "from_number": "'+15550100001'", "portal_number_id": "%(number)s", "body": "'Thanks, we are on it.'",
            "status": "CASE WHEN g % 97 = 0 THEN 'undelivered' WHEN g % 89 = 0 THEN 'failed' ELSE 'delivered' END",
            "error_code": "CASE WHEN g % 97 = 0 THEN '30003' WHEN g % 89 = 0 THEN '30008' ELSE '' END",
            "segments": "1 + g % 2", "created_at": f"(%(start)s + ((1 + (g - 1) / 4) * %(span)s + g % 4 * 60) * interval '1 second')",
            "updated_at": "now()", "provider_sid": "'SMbench' || g",
        }, base)
        first_out = OutboundMessage.objects.filter(provider_sid="SMbench1").values_list("pk", flat=True).get()
        insert_select(MessageStatusEvent, CHATS * 4, {
            "message_id": f"%(first_out)s + g - 1", "status": "'delivered'", "source": "'provider'", "at": "now()",
        }, {"first_out": first_out})
        # Entry k (1..10) of chat i: even k from the consumer, odd k the portal's text number (k+1)/2 (k ≤ 7).
        insert_select(Message, CHATS * ENTRIES_PER_CHAT, {
            "chat_id": f"%(first)s + (g - 1) / {ENTRIES_PER_CHAT}",
            "author": f"CASE WHEN (g - 1) % {ENTRIES_PER_CHAT} IN (1, 5) THEN 'agent' WHEN (g - 1) % 2 = 1 THEN 'system' ELSE 'consumer' END",
            "body": "'a text of the conversation'",
            "created_at": f"(%(start)s + ((1 + (g - 1) / {ENTRIES_PER_CHAT}) * %(span)s + 40 + (g - 1) % {ENTRIES_PER_CHAT} * 45) * interval '1 second')",
            "outbound_id": f"CASE WHEN (g - 1) % 2 = 1 AND (g - 1) % {ENTRIES_PER_CHAT} < 8 "
                           f"THEN %(first_out)s + ((g - 1) / {ENTRIES_PER_CHAT}) * 4 + ((g - 1) % {ENTRIES_PER_CHAT}) / 2 END",
        }, {**base, "first": first, "first_out": first_out})
        with connection.cursor() as cursor:  # the agents' entries are their agent's
            cursor.execute("UPDATE chats_message m SET agent_id = c.agent_id FROM chats_chat c WHERE m.chat_id = c.id AND m.author = 'agent'")
        insert_select(AgentStatusChange, AGENTS * DAYS * 2, {
            "agent_id": f"(%(agents)s::int[])[1 + (g - 1) % {AGENTS}]",
            "status": "CASE WHEN ((g - 1) / %(agents_n)s) % 2 = 0 THEN 'available' ELSE 'offline' END",
            "at": "(%(start)s + ((g - 1) / (2 * %(agents_n)s)) * interval '1 day' + (((g - 1) / %(agents_n)s) % 2) * interval '9 hours' + interval '8 hours')",
        }, {**base, "agents_n": AGENTS})
        live = Chat.objects.filter(consumer_number__startswith=PREFIX).order_by("-pk")[:300]
        Chat.objects.filter(pk__in=[c.pk for c in live[:200]]).update(status="queued", assigned_at=None, ends_at=None, agent=None, queued_at=now)
        Chat.objects.filter(pk__in=[c.pk for c in live[200:]]).update(status="assigned", ends_at=None, assigned_at=now)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"seeded {CHATS:,} chats, {CHATS * ENTRIES_PER_CHAT:,} entries, {CHATS * 4:,} texts sent in {time.perf_counter() - started:.1f} s")


def unseed() -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from chats.models import Chat
    from portal.models import Team
    from queues.models import Queue
    from sms.models import OutboundMessage

    with transaction.atomic():
        Chat.objects.filter(consumer_number__startswith=PREFIX).delete()
        OutboundMessage.objects.filter(provider_sid__startswith="SMbench").delete()
        get_user_model().objects.filter(username__startswith="bench").delete()
        Team.objects.filter(name__startswith="Bench team").delete()
        Queue.objects.filter(name__startswith="Bench queue").delete()


def timed(fn, rounds: int):
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(rounds):
        reset_queries()
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, len(queries)


def stream_csv(query: dict, limit: int | None = None, *, trace: bool = False) -> tuple[int, float, int]:
    """Rows streamed through the real view, seconds, peak Python memory in bytes (with `trace`:
    tracemalloc slows Python several times, so speed is measured without it)."""
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from portal.reports.views import report_csv

    user = get_user_model().objects.filter(is_superuser=True).first() or get_user_model().objects.create_superuser("bench-admin", "", "x")
    request = RequestFactory(HTTP_HOST="127.0.0.1").get("/reports/chat-history.csv", query)
    request.user = user
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    response = report_csv(request, name="chat-history")
    rows = -1  # the header
    for chunk in response.streaming_content:
        rows += chunk.count(b"\n")
        if limit and rows >= limit:
            break
    elapsed = time.perf_counter() - started
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return rows, elapsed, peak


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_django()
    from django.utils import timezone

    from chats.models import Chat
    from portal.monitoring.live import monitor_state
    from portal.reports.definitions import REPORTS
    from portal.reports.filters import parse_filters

    if args.reseed:
        unseed()
    if not Chat.objects.filter(consumer_number__startswith=PREFIX).exists():
        seed()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    today = timezone.localdate()
    month = parse_filters({"start": (today - timezone.timedelta(days=29)).isoformat(), "end": today.isoformat()})
    print(f"\n30 days ({month.start} to {month.end}), median of {args.rounds}:")
    print(f"{'report':<26}{'ms':>10}{'queries':>10}{'rows':>10}")
    for name, report in REPORTS.items():
        if name == "chat-history":
            def run():
                return report.rows(month, page=1), report.chart_rows(month)
        else:
            def run():
                return list(report.rows(month))
        ms, queries = timed(run, args.rounds)
        rows = len(run()[0] if name == "chat-history" else run())
        print(f"{report.title:<26}{ms:>10.1f}{queries:>10}{rows:>10}")
    ms, queries = timed(monitor_state, args.rounds)
    print(f"{'monitor first paint':<26}{ms:>10.1f}{queries:>10}")

    everything = {"start": (today - timezone.timedelta(days=DAYS)).isoformat(), "end": today.isoformat()}
    rows_10k, _, peak_10k = stream_csv(everything, limit=10_000, trace=True)
    _, _, peak = stream_csv(everything, trace=True)
    rows, seconds, _ = stream_csv(everything)
    print(f"\nchat history CSV, {DAYS + 1} days: {rows:,} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s; "
          f"peak Python memory {peak_10k / 1e6:.1f} MB at {rows_10k:,} rows, {peak / 1e6:.1f} MB at {rows:,}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
