"""M6 message tracking: what happened to the texts the portal sent, for a date range — counts by
status per portal number and per queue, and each message with its status history and the
provider's error, the undelivered and failed first. Counted by the database."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Case, Count, IntegerField, Prefetch, Q, Value, When

from chats.serializers import number_as_shown
from portal.reports.filters import ReportError, ReportFilters, parse_filters
from queues.models import Queue
from sms.models import MessageStatus, MessageStatusEvent, OutboundMessage, PhoneNumber

PER_PAGE = 50
TROUBLE = [MessageStatus.UNDELIVERED, MessageStatus.FAILED]


@dataclass(frozen=True)
class MessageFilters:
    range: ReportFilters
    number_id: int | None = None
    status: str = ""
    error_code: str = ""

    def query(self) -> dict[str, str]:
        values = self.range.query()
        values.pop("team", None)
        values.pop("agent", None)
        values |= {k: str(v) for k, v in (("number", self.number_id), ("status", self.status), ("error_code", self.error_code)) if v}
        return values


def parse_message_filters(params) -> MessageFilters:
    """The range and queue as a report's; a portal number's id, a status, an error code."""
    range_ = parse_filters({key: params.get(key) for key in ("start", "end", "queue") if params.get(key)})
    number = params.get("number") or None
    if number is not None:
        if not str(number).isdigit() or not PhoneNumber.objects.filter(pk=int(number)).exists():
            raise ReportError(f"There is no portal number with id {number}.")
        number = int(number)
    status = (params.get("status") or "").strip()
    if status and status not in MessageStatus.values:
        raise ReportError(f"status must be one of {', '.join(MessageStatus.values)}.")
    return MessageFilters(range_, number, status, (params.get("error_code") or "").strip()[:20])


def _messages(f: MessageFilters, *, with_status: bool = True):
    messages = OutboundMessage.objects.filter(created_at__gte=f.range.since, created_at__lt=f.range.until)
    if f.range.queue_id:
        messages = messages.filter(message__chat__queue_id=f.range.queue_id)
    if f.number_id:
        messages = messages.filter(portal_number_id=f.number_id)
    if f.error_code:
        messages = messages.filter(error_code=f.error_code)
    if f.status and with_status:
        messages = messages.filter(status=f.status)
    return messages


def _pivot(rows, key: str, names: dict) -> list[dict]:
    table: dict = {}
    for row in rows:
        entry = table.setdefault(row[key], {"name": names.get(row[key], "—"), "counts": dict.fromkeys(MessageStatus.values, 0), "total": 0})
        entry["counts"][row["status"]] = row["n"]
        entry["total"] += row["n"]
    return sorted(table.values(), key=lambda entry: entry["name"])


def status_counts(f: MessageFilters) -> dict:
    """Counts by status per portal number and per queue (the status filter left out: the table
    shows every status)."""
    messages = _messages(f, with_status=False)
    numbers = dict(PhoneNumber.objects.values_list("pk", "number"))
    per_number = messages.values("portal_number_id", "status").annotate(n=Count("pk")).order_by()
    per_queue = messages.values("message__chat__queue_id", "status").annotate(n=Count("pk", distinct=True)).order_by()
    return {
        "statuses": MessageStatus.choices,
        "per_number": _pivot(per_number, "portal_number_id", numbers),
        "per_queue": _pivot(per_queue, "message__chat__queue_id", Queue.objects.full_names() | {None: "No queue (session-less, API without chat)"}),
    }


def message_list(f: MessageFilters, *, page: int = 1, masked: bool = True) -> dict:
    """A page of messages, undelivered and failed first, then newest first, each with its
    status history."""
    trouble_first = Case(When(status__in=TROUBLE, then=Value(0)), default=Value(1), output_field=IntegerField())
    messages = (
        _messages(f)
        .annotate(trouble=trouble_first)
        .order_by("trouble", "-created_at", "-pk")
        .prefetch_related(Prefetch("status_events", queryset=MessageStatusEvent.objects.order_by("at", "pk")))
    )
    page = max(1, page)
    rows = list(messages[(page - 1) * PER_PAGE : page * PER_PAGE + 1])
    return {
        "page": page,
        "has_next": len(rows) > PER_PAGE,
        "messages": [
            {
                "id": m.pk,
                "created_at": m.created_at,
                "to": number_as_shown(m.to_number, masked),
                "from": m.from_number,
                "kind": m.kind,
                "status": m.status,
                "status_label": m.get_status_display(),
                "error_code": m.error_code,
                "error_message": m.error_message,
                "segments": m.segments,
                "body": m.body,
                "history": [
                    {"at": e.at, "status": e.get_status_display(), "error_code": e.error_code, "detail": e.detail, "source": e.source}
                    for e in m.status_events.all()
                ],
                "trouble": m.status in TROUBLE,
            }
            for m in rows[:PER_PAGE]
        ],
    }


def problem_totals(f: MessageFilters) -> dict:
    return _messages(f, with_status=False).aggregate(total=Count("pk"), trouble=Count("pk", filter=Q(status__in=TROUBLE)))
