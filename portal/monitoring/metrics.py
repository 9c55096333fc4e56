"""Every figure supervisors read, defined once (SPEC M) and computed by the database.

The live monitor, the reports, their CSV and the API all build on these expressions; none of
them loops over chats in Python. The definitions (a report's footnote quotes DEFINITIONS):

- wait: assigned_at − queued_at, or ends_at − queued_at for a chat that left the queue unassigned;
- first response: the first agent message after assigned_at − assigned_at (outbound chats: none);
- handle time: ends_at − assigned_at of a finished chat (per agent: their participation's span);
- abandoned: queued, never assigned, finished; a short abandon left within the queue's
  short-abandon seconds and counts in no rate;
- service level: assigned within the queue's target ÷ (assigned + abandoned − short abandons);
- abandon rate: (abandoned − short abandons) ÷ the same.

Which chats count: a queue's figures for a period are those of the chats queued in it in that
period (queued_at), the moment a chat was offered."""
from __future__ import annotations

from django.db.models import (
    Avg,
    Count,
    DateTimeField,
    F,
    FloatField,
    Func,
    Max,
    OuterRef,
    Q,
    Subquery,
)
from django.db.models.functions import Coalesce

from chats.models import Author, ChatStatus, Message, StartType

DEFINITIONS = [
    ("Wait", "Queued until assigned, or until the chat left the queue unassigned."),
    ("First response", "Assigned until the agent's first message (outbound chats have none)."),
    ("Handle time", "Assigned until the chat ended."),
    ("Abandoned", "Left the queue unassigned (expired, EXIT, STOP)."),
    ("Short abandon", "Abandoned within the queue's short-abandon seconds; in no rate."),
    ("Service level", "Assigned within the queue's target ÷ (assigned + abandoned − short abandons)."),
    ("Abandon rate", "(Abandoned − short abandons) ÷ (assigned + abandoned − short abandons)."),
    ("Occupancy", "An agent's time with at least one chat ÷ their time available or with chats."),
]


class SecondsBetween(Func):
    """`later − earlier` in seconds, as a float, on PostgreSQL and SQLite alike."""

    output_field = FloatField()
    arity = 2

    def as_sql(self, compiler, connection, **extra):
        return super().as_sql(
            compiler, connection, template="EXTRACT(EPOCH FROM (%(expressions)s))::double precision",
            arg_joiner=" - ", **extra,
        )

    def as_sqlite(self, compiler, connection, **extra):
        return super().as_sql(
            # julianday() is a float of days: rounded to the millisecond, its noise goes.
            compiler, connection, template="round((julianday(%(expressions)s)) * 86400.0, 3)",
            arg_joiner=") - julianday(", **extra,
        )


# --- one chat's figures (annotations) -------------------------------------------------------------

WAIT = SecondsBetween(Coalesce("assigned_at", "ends_at"), "queued_at")
HANDLE = SecondsBetween("ends_at", "assigned_at")


def first_agent_message_at():
    return Subquery(
        Message.objects.filter(chat=OuterRef("pk"), author=Author.AGENT, created_at__gte=OuterRef("assigned_at"))
        .order_by("created_at")
        .values("created_at")[:1],
        output_field=DateTimeField(),
    )


FIRST_RESPONSE = SecondsBetween(first_agent_message_at(), "assigned_at")

# --- one agent's stint in a chat (a Participant of type agent: connected until ended) -------------
# The same definitions for one agent: a transferred chat gives each agent their own stint.

STINT_HANDLE = SecondsBetween("ended_at", "connected_at")


def _stint_first_message_at():
    return Subquery(
        Message.objects.filter(
            chat=OuterRef("chat_id"), agent=OuterRef("agent_id"), author=Author.AGENT, created_at__gte=OuterRef("connected_at")
        )
        .order_by("created_at")
        .values("created_at")[:1],
        output_field=DateTimeField(),
    )


STINT_FIRST_RESPONSE = SecondsBetween(_stint_first_message_at(), "connected_at")
STINT_ANSWERED = ~Q(chat__start_type=StartType.OUTBOUND)  # an outbound chat has no first response

# --- the conditions, written once -----------------------------------------------------------------

OFFERED = Q(queued_at__isnull=False)
# The CSAT survey by SMS (chats.surveys): CSAT = scores of 4 or 5 ÷ scores; response rate =
# scores ÷ surveys sent.
SURVEYED = Q(survey_sent_at__isnull=False)
SURVEY_ANSWERED = Q(survey_sent_at__isnull=False, rating__isnull=False)
SATISFIED = Q(survey_sent_at__isnull=False, rating__gte=4)
ASSIGNED = Q(queued_at__isnull=False, assigned_at__isnull=False)
ABANDONED = Q(queued_at__isnull=False, assigned_at__isnull=True, status=ChatStatus.FINISHED)


def _short_abandon() -> Q:
    return ABANDONED & Q(wait__lt=F("queue__short_abandon_seconds"))


def _within_target() -> Q:
    return ASSIGNED & Q(wait__lte=F("queue__service_level_seconds"))


def queue_counts() -> dict:
    """The aggregates behind a queue's figures, by name, over chats annotated `with_wait()`:
    grouped as the caller wants (per queue, per day) or over a whole queryset."""
    return {
        "offered": Count("pk", filter=OFFERED),
        "assigned": Count("pk", filter=ASSIGNED),
        "abandoned": Count("pk", filter=ABANDONED),
        "short_abandoned": Count("pk", filter=_short_abandon()),
        "within_target": Count("pk", filter=_within_target()),
        "average_wait_seconds": Avg("wait", filter=ASSIGNED | ABANDONED),
        "longest_wait_seconds": Max("wait", filter=ASSIGNED | ABANDONED),
        "surveys_sent": Count("pk", filter=SURVEYED),
        "survey_answers": Count("pk", filter=SURVEY_ANSWERED),
        "satisfied": Count("pk", filter=SATISFIED),
    }


def with_wait(chats):
    return chats.annotate(wait=WAIT)


def rates(row: dict) -> dict:
    """Service level, abandon rate, CSAT and the survey's response rate (percent, one decimal;
    None when nothing counts yet) from a row of queue_counts(): arithmetic on the database's
    counts, not a pass over chats."""
    counted = row["assigned"] + row["abandoned"] - row["short_abandoned"]
    return {
        "service_level": _percent(row["within_target"], counted),
        "abandon_rate": _percent(row["abandoned"] - row["short_abandoned"], counted),
        "csat": _percent(row.get("satisfied", 0), row.get("survey_answers", 0)),
        "survey_response_rate": _percent(row.get("survey_answers", 0), row.get("surveys_sent", 0)),
    }


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole > 0 else None


def queue_figures(chats, *, by=("queue_id",)) -> list[dict]:
    """Per group of `by` (default per queue): offered, assigned, abandoned, short abandons,
    within target, average and longest wait, service level and abandon rate."""
    rows = with_wait(chats.filter(OFFERED)).values(*by).annotate(**queue_counts()).order_by(*by)
    return [{**row, **rates(row), **_rounded(row)} for row in rows]


def _rounded(row: dict) -> dict:
    return {
        key: (round(row[key], 1) if row.get(key) is not None else None)
        for key in ("average_wait_seconds", "longest_wait_seconds")
    }
