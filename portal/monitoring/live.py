"""What the live monitor shows (SPEC M1–M3), read in a fixed number of queries whatever the
number of queues, agents or chats: queues now, agents now, and the chat lists."""
from __future__ import annotations

import datetime as dt

from django.db.models import Avg, Count, Exists, IntegerField, Min, OuterRef, Q, Subquery
from django.utils import timezone

from chats.models import ACTIVE_STATUSES, Chat, ChatStatus, ChatType, Message, Participant, ParticipantType
from chats.serializers import number_as_shown
from chats.stats import today_start
from portal.models import AgentProfile
from portal.monitoring import metrics
from queues.models import Queue
from queues.routing import ELIGIBLE
from sms.models import MessageStatus

IN_PROGRESS = [ChatStatus.ASSIGNED, ChatStatus.DISMISSED]
CHATS_PER_PAGE = 50


class CountOf(Subquery):
    """The number of rows of a queryset, as a subquery (duplicates from its joins counted once)."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) _counted)"
    output_field = IntegerField()


def _agents_of_queue(extra: Q = Q()):
    return CountOf(
        AgentProfile.objects.filter(Q(queues=OuterRef("pk")) | Q(teams__queues=OuterRef("pk")))
        .filter(extra).values("pk").distinct()
    )


def queues_now(now: dt.datetime | None = None, *, names: dict[int, str] | None = None) -> list[dict]:
    """M3: per queue chats wait in (the menu's leaves): waiting, in progress, longest wait now,
    agents available / eligible, today's service level and abandon rate, the Type Breakdown."""
    now = now or timezone.now()
    since = today_start(now)
    names = names or Queue.objects.full_names()
    queues = list(
        Queue.objects.filter(children__isnull=True)
        .annotate(agents_eligible=_agents_of_queue(), agents_available=_agents_of_queue(ELIGIBLE))
        .order_by("parent__position", "position", "name")
    )
    active = {
        row["queue_id"]: row
        for row in Chat.objects.filter(status__in=ACTIVE_STATUSES, queue__isnull=False)
        .values("queue_id")
        .annotate(
            waiting=Count("pk", filter=Q(status=ChatStatus.QUEUED)),
            in_progress=Count("pk", filter=Q(status__in=IN_PROGRESS)),
            oldest_queued_at=Min("queued_at", filter=Q(status=ChatStatus.QUEUED)),
        )
        .order_by()
    }
    today = {row["queue_id"]: row for row in metrics.queue_figures(Chat.objects.filter(queued_at__gte=since))}
    types: dict[int, dict[str, int]] = {}
    for row in (
        Chat.objects.filter(created_at__gte=since, queue__isnull=False)
        .values("queue_id", "chat_type").annotate(n=Count("pk")).order_by()
    ):
        types.setdefault(row["queue_id"], {})[row["chat_type"]] = row["n"]
    return [
        _queue_row(queue, names[queue.pk], active.get(queue.pk, {}), today.get(queue.pk, {}), types.get(queue.pk, {}), now)
        for queue in queues
    ]


def _queue_row(queue: Queue, name: str, active: dict, today: dict, types: dict, now) -> dict:
    oldest = active.get("oldest_queued_at")
    return {
        "id": queue.pk,
        "name": name,
        "waiting": active.get("waiting", 0),
        "in_progress": active.get("in_progress", 0),
        "longest_wait_seconds": round((now - oldest).total_seconds()) if oldest else 0,
        "oldest_queued_at": oldest,
        "agents_available": queue.agents_available,
        "agents_eligible": queue.agents_eligible,
        "service_level_target_seconds": queue.service_level_seconds,
        "today": {
            key: today.get(key, 0 if key in ("offered", "assigned", "abandoned", "short_abandoned") else None)
            for key in ("offered", "assigned", "abandoned", "short_abandoned", "service_level", "abandon_rate", "average_wait_seconds")
        },
        "types": {label: types.get(value, 0) for value, label in ChatType.choices},
    }


def agents_now(
    now: dt.datetime | None = None, *, team_id: int | None = None, queue_id: int | None = None,
    names: dict[int, str] | None = None,
) -> list[dict]:
    """M1: each agent's status and since when, chats in progress against capacity, chats answered
    today, today's average handle time, their teams and queues."""
    now = now or timezone.now()
    since = today_start(now)
    agents = AgentProfile.objects.select_related("user").prefetch_related("teams", "queues", "teams__queues")
    if team_id:
        agents = agents.filter(teams=team_id)
    if queue_id:
        agents = agents.filter(Q(queues=queue_id) | Q(teams__queues=queue_id)).distinct()
    held = dict(
        Chat.objects.filter(status__in=IN_PROGRESS, agent__isnull=False)
        .values("agent_id").annotate(n=Count("pk")).order_by().values_list("agent_id", "n")
    )
    today = {
        row["agent_id"]: row
        for row in Participant.objects.filter(type=ParticipantType.AGENT, connected_at__gte=since)
        .values("agent_id")
        .annotate(answered=Count("pk"), average_handle=Avg(metrics.SecondsBetween("ended_at", "connected_at")))
        .order_by()
    }
    names = names or Queue.objects.full_names()
    return [_agent_row(agent, held.get(agent.pk, 0), today.get(agent.pk, {}), names, now) for agent in agents]


def _agent_row(agent: AgentProfile, in_progress: int, today: dict, names: dict[int, str], now) -> dict:
    queue_ids = {q.pk for q in agent.queues.all()} | {q.pk for t in agent.teams.all() for q in t.queues.all()}
    average = today.get("average_handle")
    return {
        "id": agent.pk,
        "name": str(agent),
        "username": agent.user.get_username(),
        "status": agent.status,
        "status_label": agent.get_status_display(),
        "status_since": agent.status_changed_at,
        "status_seconds": max(0, round((now - agent.status_changed_at).total_seconds())),
        "adapter_open": agent.connection_count > 0,
        "chats_in_progress": in_progress,
        "capacity": agent.max_concurrent_chats,
        "answered_today": today.get("answered", 0),
        "average_handle_seconds": round(average) if average is not None else None,
        "teams": [t.name for t in agent.teams.all()],
        "queues": sorted(names[pk] for pk in queue_ids),
    }


# --- M2: the chat lists ---------------------------------------------------------------------------

CHAT_LISTS = ("ongoing", "future", "previous")


def chat_list(
    which: str, *, search: str = "", page: int = 1, masked: bool = True, now=None, names: dict[int, str] | None = None
) -> dict:
    """Ongoing (active now), Future (an outbound text held for quiet hours or a send time) and
    Previous (ended, newest first), searchable by number, agent or text, a page at a time."""
    now = now or timezone.now()
    held = Exists(Message.objects.filter(chat=OuterRef("pk"), outbound__status=MessageStatus.HELD))
    chats = annotated_chats()
    if which == "future":
        chats = chats.filter(held, status__in=ACTIVE_STATUSES).order_by("created_at")
    elif which == "previous":
        chats = chats.filter(status=ChatStatus.FINISHED).order_by("-ends_at", "-pk")
    else:
        chats = chats.filter(status__in=ACTIVE_STATUSES).order_by("created_at")
    if search:
        chats = chats.filter(
            Q(consumer_number__contains=search.strip())
            | Q(agent__display_name__icontains=search)
            | Exists(Message.objects.filter(chat=OuterRef("pk"), body__icontains=search))
        )
    page = max(1, page)
    rows = list(chats[(page - 1) * CHATS_PER_PAGE : page * CHATS_PER_PAGE + 1])
    names = names or Queue.objects.full_names()
    return {
        "which": which,
        "page": page,
        "has_next": len(rows) > CHATS_PER_PAGE,
        "chats": [chat_row(chat, names, masked=masked, now=now) for chat in rows[:CHATS_PER_PAGE]],
    }


def annotated_chats():
    """Chats with what a row shows: their agent, wait and handle time (metrics' definitions)."""
    return Chat.objects.select_related("agent").annotate(wait=metrics.WAIT, handle=metrics.HANDLE)


def chat_row(chat: Chat, queue_names: dict[int, str], *, masked: bool, now=None) -> dict:
    now = now or timezone.now()
    waiting = chat.status == ChatStatus.QUEUED and chat.queued_at
    return {
        "id": chat.pk,
        "consumer_number": number_as_shown(chat.consumer_number, masked),
        "queue": queue_names.get(chat.queue_id, ""),
        "status": chat.status,
        "start_type": chat.get_start_type_display() if chat.start_type else "",
        "type": chat.get_chat_type_display(),
        "agent": str(chat.agent) if chat.agent else "",
        "created_at": chat.created_at,
        "queued_at": chat.queued_at,
        "waiting": bool(waiting),
        "wait_seconds": round((now - chat.queued_at).total_seconds()) if waiting else _whole(chat.wait),
        "handle_seconds": _whole(chat.handle),
        "finish_reason": chat.get_finish_reason_display() if chat.finish_reason else "",
        "version": chat.version,
    }


def _whole(seconds: float | None) -> int | None:
    return round(seconds) if seconds is not None else None


def monitor_state(*, masked: bool = True) -> dict:
    """Everything the monitor's first paint needs, in one answer (also GET /monitor/state)."""
    now = timezone.now()
    names = Queue.objects.full_names()
    return {
        "at": now,
        "queues": queues_now(now, names=names),
        "agents": agents_now(now, names=names),
        "ongoing": chat_list("ongoing", masked=masked, now=now, names=names),
    }
