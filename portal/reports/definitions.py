"""The five reports of SPEC M4 and the hour × weekday heatmap. Each report is its columns, its
rows for a set of filters (aggregated by the database: one grouped query per figure family,
whatever the number of agents, queues or days) and its chart: which column the bars show and
which filter a bar sets to open the chats behind it. The page, the CSV and the API all read
`rows()`, so they always agree."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import ExtractHour, ExtractIsoWeekDay, TruncDate
from django.utils import timezone

from chats.models import Author, Call, Chat, ChatType, FinishReason, Message, Participant, ParticipantType, StartType, Transfer
from chats.models import WaitTimeSmsStatus
from chats.serializers import number_as_shown
from portal.monitoring import metrics
from portal.reports.filters import ReportFilters
from portal.reports.occupancy import occupancy
from queues.models import Queue

HISTORY_PAGE = 100


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "int"  # int, seconds, percent, text, date, datetime


@dataclass(frozen=True)
class Chart:
    value: str  # the column the bars show
    label: str  # the column naming each bar
    opens: str  # the filter a bar sets on Individual Chat History: agent, queue or day
    key: str  # the column holding that filter's value


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    description: str
    columns: list[Column]
    rows: Callable[..., Iterable[dict]]
    chart: Chart
    chart_rows: Callable[[ReportFilters], list[dict]] | None = None  # else the rows themselves


def _day_rows(days, counts: dict, keys: list[str]) -> list[dict]:
    """One row per day of the range, zeros where nothing happened."""
    return [{"day": day, **{key: counts.get(day, {}).get(key, 0) or 0 for key in keys}} for day in days]


def _by_day(rows, day_key: str = "day") -> dict:
    return {row[day_key]: row for row in rows}


def _local_day(field_name: str):
    return TruncDate(field_name, tzinfo=timezone.get_current_timezone())


# --- Users & Teams ---------------------------------------------------------------------------------


def users_teams_rows(f: ReportFilters, *, masked: bool = True) -> list[dict]:
    agents = list(f.agents().select_related("user").prefetch_related("teams").order_by("display_name", "pk"))
    stints = f.chats(
        Participant.objects.filter(type=ParticipantType.AGENT), time_field="connected_at", queue_field="chat__queue"
    )
    figures = {
        row["agent_id"]: row
        for row in stints.values("agent_id")
        .annotate(
            answered=Count("pk"),
            average_handle_seconds=Avg(metrics.STINT_HANDLE),
            average_first_response_seconds=Avg(metrics.STINT_FIRST_RESPONSE, filter=metrics.STINT_ANSWERED),
        )
        .order_by()
    }
    transfers = f.chats(Transfer.objects.all(), time_field="began_at", agent_field="from_agent", queue_field="chat__queue")
    transferred = {row["from_agent_id"]: row["n"] for row in transfers.values("from_agent_id").annotate(n=Count("pk")).order_by()}
    busy = occupancy(f.since, f.until)
    rows = []
    for agent in agents:
        row = figures.get(agent.pk, {})
        rows.append(
            {
                "agent_id": agent.pk,
                "agent": str(agent),
                "teams": ", ".join(team.name for team in agent.teams.all()),
                "answered": row.get("answered", 0),
                "transferred": transferred.get(agent.pk, 0),
                "average_handle_seconds": _whole(row.get("average_handle_seconds")),
                "average_first_response_seconds": _whole(row.get("average_first_response_seconds")),
                "occupancy": (busy.get(agent.pk) or {}).get("occupancy"),
            }
        )
    return rows


# --- Calls & Chats ---------------------------------------------------------------------------------

CHAT_TYPE_KEYS = [(f"type_{value}", label) for value, label in ChatType.choices]
START_TYPE_KEYS = [(f"start_{value}", label) for value, label in StartType.choices]


def calls_chats_rows(f: ReportFilters, *, masked: bool = True) -> list[dict]:
    chats = f.chats(Chat.objects.all())
    chat_counts = {"chats": Count("pk")}
    chat_counts |= {key: Count("pk", filter=Q(chat_type=key[5:])) for key, _ in CHAT_TYPE_KEYS}
    chat_counts |= {key: Count("pk", filter=Q(start_type=key[6:])) for key, _ in START_TYPE_KEYS}
    by_day = _by_day(chats.annotate(day=_local_day("created_at")).values("day").annotate(**chat_counts).order_by())
    calls = f.chats(Call.objects.all())
    call_days = _by_day(
        calls.annotate(day=_local_day("created_at"))
        .values("day")
        .annotate(
            calls=Count("pk"),
            wait_time_sms_allowed=Count("pk", filter=Q(wait_time_sms_status=WaitTimeSmsStatus.ALLOWED)),
            wait_time_sms_denied=Count("pk", filter=Q(wait_time_sms_status=WaitTimeSmsStatus.DENIED)),
        )
        .order_by()
    )
    merged = {day: {**by_day.get(day, {}), **call_days.get(day, {})} for day in set(by_day) | set(call_days)}
    keys = ["chats", *(k for k, _ in CHAT_TYPE_KEYS), *(k for k, _ in START_TYPE_KEYS), "calls", "wait_time_sms_allowed", "wait_time_sms_denied"]
    return _day_rows(f.days(), merged, keys)


def heatmap(f: ReportFilters) -> list[list[int]]:
    """Incoming chats (consumers texting in) by weekday (Monday first) × hour, portal time."""
    tz = timezone.get_current_timezone()
    grid = [[0] * 24 for _ in range(7)]
    rows = (
        f.chats(Chat.objects.filter(chat_type=ChatType.SMS))
        .annotate(weekday=ExtractIsoWeekDay("created_at", tzinfo=tz), hour=ExtractHour("created_at", tzinfo=tz))
        .values("weekday", "hour")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        grid[row["weekday"] - 1][row["hour"]] = row["n"]
    return grid


# --- Queues ----------------------------------------------------------------------------------------


def queues_rows(f: ReportFilters, *, masked: bool = True) -> list[dict]:
    names = Queue.objects.full_names()
    figures = {row["queue_id"]: row for row in metrics.queue_figures(f.chats(Chat.objects.all(), time_field="queued_at"))}
    queue_ids = [f.queue_id] if f.queue_id else sorted(figures, key=lambda pk: names.get(pk, ""))
    keys = ["offered", "assigned", "abandoned", "short_abandoned"]
    return [
        {
            "queue_id": pk,
            "queue": names.get(pk, "(deleted queue)"),
            **{key: figures.get(pk, {}).get(key, 0) for key in keys},
            **{
                key: figures.get(pk, {}).get(key)
                for key in (
                    "service_level", "abandon_rate", "average_wait_seconds", "longest_wait_seconds", "csat",
                    "survey_response_rate",
                )
            },
        }
        for pk in queue_ids
        if pk is not None
    ]


# --- Performance Metrics (Type Breakdown) ----------------------------------------------------------


def performance_rows(f: ReportFilters, *, masked: bool = True) -> list[dict]:
    """Per day: the texts of the chats in the filters, in and out, and the segments sent."""
    entries = f.chats(Message.objects.all(), time_field="created_at", agent_field="chat__agent", queue_field="chat__queue")
    incoming = Q(author=Author.CONSUMER)
    outgoing = Q(outbound__isnull=False)
    counts = _by_day(
        entries.annotate(day=_local_day("created_at"))
        .values("day")
        .annotate(
            total_sms=Count("pk", filter=incoming | outgoing),
            incoming_sms=Count("pk", filter=incoming),
            outbound_sms=Count("pk", filter=outgoing),
            agent_sms=Count("pk", filter=outgoing & Q(author=Author.AGENT)),
            segments=Sum("outbound__segments", filter=outgoing),
        )
        .order_by()
    )
    return _day_rows(f.days(), counts, ["total_sms", "incoming_sms", "outbound_sms", "agent_sms", "segments"])


# --- Individual Chat History -----------------------------------------------------------------------


def history_chats(f: ReportFilters):
    return f.chats(Chat.objects.all()).order_by("created_at", "pk")


# What a history row reads: plain values, not model instances (a CSV streams 100,000 of them).
_HISTORY_VALUES = [
    "pk", "created_at", "consumer_number", "portal_number__number", "queue_id", "chat_type", "start_type",
    "agent__display_name", "agent__user__username", "status", "finish_reason", "wait", "handle", "first_response",
]
_LABELS = {**dict(ChatType.choices), **dict(StartType.choices), **dict(FinishReason.choices), "": ""}


def history_row(chat: dict, names: dict[int, str], masked: bool, tz) -> dict:
    return {
        "chat_id": chat["pk"],
        "created_at": chat["created_at"].astimezone(tz),
        "consumer_number": number_as_shown(chat["consumer_number"], masked),
        "portal_number": chat["portal_number__number"],
        "queue": names.get(chat["queue_id"], ""),
        "type": "Outbound SMS" if chat["chat_type"] == ChatType.OUTBOUND_SMS else "SMS",
        "chat_type": _LABELS[chat["chat_type"]],
        "start_type": _LABELS[chat["start_type"]],
        "agent": chat["agent__display_name"] or chat["agent__user__username"] or "",
        "status": chat["status"],
        "wait_seconds": _whole(chat["wait"]),
        "first_response_seconds": _whole(chat["first_response"]),
        "handle_seconds": _whole(chat["handle"]),
        "finish_reason": _LABELS[chat["finish_reason"]],
    }


def history_rows(f: ReportFilters, *, masked: bool = True, page: int | None = None) -> Iterable[dict]:
    """Every chat of the range (page None: streamed, for the CSV) or one page of HISTORY_PAGE."""
    names, tz = Queue.objects.full_names(), timezone.get_current_timezone()
    chats = (
        history_chats(f)
        .annotate(wait=metrics.WAIT, handle=metrics.HANDLE, first_response=metrics.FIRST_RESPONSE)
        .values(*_HISTORY_VALUES)
    )
    if page is not None:
        chats = chats[(page - 1) * HISTORY_PAGE : page * HISTORY_PAGE]
        return [history_row(chat, names, masked, tz) for chat in chats]
    return (history_row(chat, names, masked, tz) for chat in chats.iterator(chunk_size=2000))


def chats_per_day(f: ReportFilters) -> list[dict]:
    """The chat history's chart: chats created per day."""
    counts = _by_day(f.chats(Chat.objects.all()).annotate(day=_local_day("created_at")).values("day").annotate(chats=Count("pk")).order_by())
    return _day_rows(f.days(), counts, ["chats"])


def _whole(seconds) -> int | None:
    return round(seconds) if seconds is not None else None


REPORTS: dict[str, Report] = {
    report.name: report
    for report in [
        Report(
            "users-teams",
            "Users & Teams",
            "Per agent: chats answered and transferred, average handle time and first response, occupancy.",
            [
                Column("agent", "Agent", "text"),
                Column("teams", "Teams", "text"),
                Column("answered", "Answered"),
                Column("transferred", "Transferred"),
                Column("average_handle_seconds", "Avg handle time", "seconds"),
                Column("average_first_response_seconds", "Avg first response", "seconds"),
                Column("occupancy", "Occupancy", "percent"),
            ],
            users_teams_rows,
            Chart(value="answered", label="agent", opens="agent", key="agent_id"),
        ),
        Report(
            "calls-chats",
            "Calls & Chats",
            "Per day: chats by type and start type, calls and their wait-time SMS answers; incoming chats by hour and weekday.",
            [
                Column("day", "Day", "date"),
                Column("chats", "Chats"),
                *(Column(key, label) for key, label in CHAT_TYPE_KEYS),
                *(Column(key, label) for key, label in START_TYPE_KEYS),
                Column("calls", "Calls"),
                Column("wait_time_sms_allowed", "Wait-time SMS allowed"),
                Column("wait_time_sms_denied", "Wait-time SMS denied"),
            ],
            calls_chats_rows,
            Chart(value="chats", label="day", opens="day", key="day"),
        ),
        Report(
            "queues",
            "Queues",
            "Per queue, chats queued in the range: offered, assigned, abandoned, service level, average and longest wait.",
            [
                Column("queue", "Queue", "text"),
                Column("offered", "Offered"),
                Column("assigned", "Assigned"),
                Column("abandoned", "Abandoned"),
                Column("short_abandoned", "Short abandons"),
                Column("service_level", "Service level", "percent"),
                Column("abandon_rate", "Abandon rate", "percent"),
                Column("average_wait_seconds", "Avg wait", "seconds"),
                Column("longest_wait_seconds", "Longest wait", "seconds"),
                Column("csat", "CSAT", "percent"),
                Column("survey_response_rate", "Survey response rate", "percent"),
            ],
            queues_rows,
            Chart(value="offered", label="queue", opens="queue", key="queue_id"),
        ),
        Report(
            "performance",
            "Performance Metrics",
            "Type Breakdown per day: total SMS, incoming, outbound (of which by agents), segments sent.",
            [
                Column("day", "Day", "date"),
                Column("total_sms", "Total SMS"),
                Column("incoming_sms", "Total Incoming SMS"),
                Column("outbound_sms", "Total Outbound SMS"),
                Column("agent_sms", "Of which by agents"),
                Column("segments", "Outbound segments"),
            ],
            performance_rows,
            Chart(value="total_sms", label="day", opens="day", key="day"),
        ),
        Report(
            "chat-history",
            "Individual Chat History",
            "One row per chat started in the range, with its type, agent, times and how it ended.",
            [
                Column("chat_id", "Chat"),
                Column("created_at", "Started", "datetime"),
                Column("consumer_number", "Consumer", "text"),
                Column("portal_number", "Portal number", "text"),
                Column("queue", "Queue", "text"),
                Column("type", "Type", "text"),
                Column("chat_type", "Chat type", "text"),
                Column("start_type", "Start Type", "text"),
                Column("agent", "Agent", "text"),
                Column("status", "Status", "text"),
                Column("wait_seconds", "Wait", "seconds"),
                Column("first_response_seconds", "First response", "seconds"),
                Column("handle_seconds", "Handle time", "seconds"),
                Column("finish_reason", "Finish reason", "text"),
            ],
            history_rows,
            Chart(value="chats", label="day", opens="day", key="day"),
            chart_rows=chats_per_day,
        ),
    ]
}
