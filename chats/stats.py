"""Your Stats and Team Average in the adapter (SPEC M5): chats answered today, average duration."""
from __future__ import annotations

import datetime as dt

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F
from django.utils import timezone

from chats.models import Chat, ChatStatus
from portal.models import AgentProfile


def today_start(now: dt.datetime | None = None) -> dt.datetime:
    """Midnight today in the portal's time zone (settings.TIME_ZONE): where "today" starts for
    the adapter's stats and the supervisors' monitor alike."""
    local = timezone.localtime(now or timezone.now())
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _figures(chats) -> tuple[int, float]:
    answered = chats.filter(assigned_at__isnull=False).count()
    duration = (
        chats.filter(status=ChatStatus.FINISHED, assigned_at__isnull=False, ends_at__isnull=False)
        .annotate(d=ExpressionWrapper(F("ends_at") - F("assigned_at"), output_field=DurationField()))
        .aggregate(avg=Avg("d"))["avg"]
    )
    return answered, (duration.total_seconds() if duration else 0.0)


def agent_stats(agent: AgentProfile) -> dict:
    since = today_start()
    today = Chat.objects.filter(assigned_at__gte=since)
    mine_answered, mine_duration = _figures(today.filter(agent=agent))
    team_agent_ids = set(AgentProfile.objects.filter(teams__agents=agent).values_list("pk", flat=True)) or {agent.pk}
    team_chats = today.filter(agent_id__in=team_agent_ids)
    team_answered, team_duration = _figures(team_chats)
    per_agent = team_chats.values("agent_id").annotate(n=Count("pk")).count() or 1
    return {
        "you": {"answered": mine_answered, "average_duration_seconds": round(mine_duration)},
        "team": {
            "answered": round(team_answered / max(per_agent, 1), 1),
            "average_duration_seconds": round(team_duration),
        },
    }
