"""The consent ledger (SPEC R2): every opt-out, opt-in and wait-time SMS answer, as it happened —
who or what (the consumer's keyword or words, an agent, the API, an admin, the provider's 21610,
the caller's keypad), the MessageSid, when, and why. Rows are only ever added; erasure keeps them
(they are the proof). The do-not-contact list itself is `sms.pipeline`'s."""
from __future__ import annotations

from sms.models import ConsentEvent

CSV_COLUMNS = ["at", "consumer_number", "portal_number", "kind", "source", "text", "message_sid", "by", "reason"]


def record(
    *, kind: str, consumer_number: str, portal_number: str, source: str, text: str = "", message_sid: str = "",
    by=None, reason: str = "",
) -> ConsentEvent:
    return ConsentEvent.objects.create(
        consumer_number=consumer_number,
        portal_number=portal_number,
        kind=kind,
        source=source,
        text=text,
        message_sid=message_sid,
        by=by,
        by_name=by.get_username() if by is not None else "",
        reason=reason,
    )


def history(consumer_number: str, *, limit: int | None = None):
    """A number's ledger, newest first."""
    rows = ConsentEvent.objects.filter(consumer_number=consumer_number).order_by("-at", "-pk")
    return rows[:limit] if limit else rows


def as_row(event: ConsentEvent) -> dict:
    """One ledger row for the CSV, the API and the adapter."""
    return {
        "at": event.at.isoformat(),
        "consumer_number": event.consumer_number,
        "portal_number": event.portal_number,
        "kind": event.kind,
        "source": event.source,
        "text": event.text,
        "message_sid": event.message_sid,
        "by": event.by_name,
        "reason": event.reason,
    }
