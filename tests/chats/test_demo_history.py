"""The demo's week of history (issue 13): `seed_demo` fills every report once, none of it today,
and a second run adds nothing."""
import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from chats.demo_history import HISTORY_PREFIX
from chats.models import Chat, ChatStatus, Participant, Transfer
from portal.models import AgentStatusChange
from portal.reports.definitions import REPORTS
from portal.reports.filters import parse_filters

pytestmark = pytest.mark.django_db


def test_the_demo_s_week_fills_every_report_and_leaves_today_empty():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "a week of history for the reports" in out.getvalue()
    history = Chat.objects.filter(consumer_number__startswith=HISTORY_PREFIX)
    assert history.count() > 100 and not history.exclude(status=ChatStatus.FINISHED).exists()
    today = timezone.localdate()
    assert not history.filter(created_at__gte=timezone.make_aware(dt.datetime.combine(today, dt.time.min))).exists()
    assert Transfer.objects.exists() and AgentStatusChange.objects.exists()
    assert Participant.objects.filter(agent__isnull=False).count() >= history.filter(assigned_at__isnull=False).count()

    week = parse_filters({"start": (today - dt.timedelta(days=7)).isoformat(), "end": today.isoformat()})
    for name, report in REPORTS.items():
        rows = list(report.rows(week)) if name != "chat-history" else report.rows(week, page=1)
        assert any(row.get(report.chart.value) for row in (report.chart_rows(week) if report.chart_rows else rows)), name
    queues = {row["queue"]: row for row in REPORTS["queues"].rows(week)}
    assert 0 < queues["Support › Billing"]["service_level"] < 100 and queues["Support › Billing"]["short_abandoned"] > 0

    count = Chat.objects.count()
    call_command("seed_demo", stdout=StringIO())
    assert Chat.objects.count() == count
