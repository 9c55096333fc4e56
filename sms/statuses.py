"""Where an outbound message's status moves (SPEC S11 step 7): forward only, each change recorded
as a MessageStatusEvent and told to the event webhooks and the message's notify group; the
provider's status callbacks, including those that arrive before the send's answer saved the sid."""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from portal import event_webhooks
from portal.bulk import update_each
from portal.models import WebhookEvent
from portal.realtime import publish_on_commit
from sms.models import FINAL_STATUSES, STATUS_RANK, MessageStatus, MessageStatusEvent, OutboundMessage, PendingProviderStatus

log = logging.getLogger(__name__)

# Early status callbacks (before the sid is saved) are kept this long for their message.
EARLY_CALLBACK_LIFETIME = dt.timedelta(days=1)
SWEEP_CALLBACKS = 200


def set_status(
    message: OutboundMessage,
    status: str,
    *,
    error_code: str = "",
    detail: str = "",
    source: str = "portal",
) -> bool:
    """Move a message forward to `status` (never backwards, SPEC S11 step 7), record the change
    and tell its notify group. Returns whether anything changed. The caller holds the row lock."""
    fields = _advance(message, status, error_code=error_code, detail=detail, source=source)
    if not fields:
        return False
    message.save(update_fields=fields)
    record_status(message, message.status, error_code=error_code, detail=detail, source=source)
    return True


def _advance(message: OutboundMessage, status: str, *, error_code: str = "", detail: str = "", source: str = "portal") -> list[str]:
    """The one rule of a status move: forward only, never out of a final status. Changes
    `message` in memory; returns the fields changed (none when the status does not move)."""
    if source == "provider":
        status = PROVIDER_STATUS_MAP.get(status, status)
    if status not in STATUS_RANK:
        log.warning("unknown message status %r for message %s", status, message.pk)
        return []
    current = message.status
    if current == status or current in FINAL_STATUSES or STATUS_RANK[status] < STATUS_RANK[current]:
        return []
    message.status = status
    fields = ["status", "updated_at"]
    if error_code:
        message.error_code = str(error_code)[:20]
        fields.append("error_code")
    if detail and (status in FINAL_STATUSES or status == MessageStatus.HELD):
        message.error_message = detail[:500]  # a held message says until when and why (SPEC R1)
        fields.append("error_message")
    elif current == MessageStatus.HELD and message.error_message:
        message.error_message = ""  # the hold is over
        fields.append("error_message")
    return fields


_held_events: contextvars.ContextVar[list | None] = contextvars.ContextVar("held_status_events", default=None)


@contextlib.contextmanager
def held_status_events():
    """Inside the block, the status events recorded are kept and inserted together when it ends
    (one INSERT for a batch of inbound texts' replies). Nested, the inner block's events join the
    outer's when it ends normally and are dropped when it raises — wrapped around a savepoint,
    they go where its rows go. The block must end inside the transaction that made the messages."""
    outer = _held_events.get()
    held: list[MessageStatusEvent] = []
    token = _held_events.set(held)
    try:
        yield
    finally:
        _held_events.reset(token)
    insert_status_events(held)  # into the outer block's, or saved


def record_status(message: OutboundMessage, status: str, *, error_code: str = "", detail: str = "", source: str = "portal"):
    event = MessageStatusEvent(
        message=message, status=status, error_code=str(error_code or "")[:20], detail=detail[:500], source=source
    )
    insert_status_events([event])
    announce_status(message, status, error_code=error_code)


def insert_status_events(events: list[MessageStatusEvent]) -> None:
    """Save these status events now, or inside `held_status_events()` with the block's others."""
    held = _held_events.get()
    if held is not None:
        held.extend(events)
    elif len(events) == 1:
        events[0].save()
    elif events:
        MessageStatusEvent.objects.bulk_create(events)


def announce_status(message: OutboundMessage, status: str, *, error_code: str = "") -> None:
    """A status change, told to the event webhooks and to the message's notify group."""
    event_webhooks.emit(
        WebhookEvent.MESSAGE_STATUS,
        {
            "sms_id": message.pk,
            "status": status,
            "to": message.to_number,
            "from": message.from_number,
            "kind": message.kind,
            "group": message.notify_group or None,
            "request_id": message.batch or None,
            "error_code": str(error_code or message.error_code or ""),
            "error_message": message.error_message,
            "segments": message.segments,
        },
    )
    publish_on_commit(
        message.notify_group,
        {
            "type": "message.status",
            "outbound_id": message.pk,
            "status": status,
            "error_code": str(error_code or ""),
            "error_message": message.error_message,
        },
    )


def apply_provider_status(*, provider_sid: str, status: str, error_code: str = "", detail: str = "") -> bool:
    """A status callback from the provider (Twilio's, or the local provider's). Twilio may call
    back before the answer to the send reaches the worker and the sid is saved: such a callback
    is kept (PendingProviderStatus) and applied by `record_provider_sid`. Returns whether the
    message's status changed."""
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().filter(provider_sid=provider_sid).first()
        if message is not None:
            return set_status(message, status, error_code=error_code, detail=detail, source="provider")
        PendingProviderStatus.objects.create(
            provider_sid=provider_sid[:64], status=status[:20], error_code=str(error_code or "")[:20], detail=detail[:500]
        )
    log.info("status callback before its message's sid was saved: sid=%s status=%s (kept)", provider_sid, status)
    # The sid may have been saved since we looked. Run in autocommit (the webhook), either this
    # look or the sender's look for early callbacks, each made after its own write committed,
    # sees the other's write; the outbound sweeper catches anything else.
    return apply_pending_statuses(provider_sid)


def record_provider_sid(message_id: int, provider_sid: str, statuses: tuple[str, ...] = ()) -> None:
    """`record_provider_sids` for one message."""
    record_provider_sids([(message_id, provider_sid, tuple(statuses))])


def record_provider_sids(taken: list[tuple[int, str, tuple[str, ...]]]) -> None:
    """The provider took these messages, (id, sid, statuses) each: save their sids (the send is
    over: no next try, no lease), committed first; then, in one transaction under the messages'
    row locks, apply `statuses` (what the provider answered, or — the local provider — reports at
    once) and any callback that arrived before the sid was saved. A send task's replies are
    recorded together: a handful of queries for the batch, not a dozen for each."""
    if not taken:
        return
    now = timezone.now()
    _save_sids({pk: sid for pk, sid, _ in taken}, now)
    # An answer of "queued" (or "accepted") is where the message already is: nothing to apply.
    forward = {
        sid: [s for s in statuses if STATUS_RANK.get(PROVIDER_STATUS_MAP.get(s, s), 0) > STATUS_RANK[MessageStatus.QUEUED]]
        for _, sid, statuses in taken
    }
    # Looked for after the sids were committed: a status callback that found no sid has kept its
    # status by then (see apply_provider_status).
    early: dict[str, list[PendingProviderStatus]] = {}
    for callback in PendingProviderStatus.objects.filter(provider_sid__in=list(forward)).order_by("pk"):
        early.setdefault(callback.provider_sid, []).append(callback)
    if not any(forward.values()) and not early:
        return
    with transaction.atomic():
        _apply_statuses_locked(forward, early, now)


def _apply_statuses_locked(forward: dict[str, list[str]], early: dict[str, list], now) -> bool:
    """Under the messages' row locks: each sid's `forward` statuses, then its early callbacks
    (read again here), as moves of the one rule (`_advance`); one UPDATE and one INSERT for all.
    Returns whether any message moved."""
    messages = list(OutboundMessage.objects.select_for_update().filter(provider_sid__in=list(forward)).order_by("pk"))
    changed, events = [], []
    for message in messages:
        moves = [(status, "", "") for status in forward[message.provider_sid]]
        if early.get(message.provider_sid):
            # Read again under the message's lock: another applier may have taken them already.
            moves += [
                (c.status, c.error_code, c.detail)
                for c in PendingProviderStatus.objects.filter(provider_sid=message.provider_sid).order_by("pk")
            ]
        moved = False
        for status, error_code, detail in moves:
            if _advance(message, status, error_code=error_code, detail=detail, source="provider"):
                moved = True
                events.append((message, message.status, error_code, detail))
                announce_status(message, message.status, error_code=error_code)  # as it stands at this move
        if moved:
            message.updated_at = now
            changed.append(message)
    _update_alike(changed, ["status", "error_code", "error_message", "updated_at"])
    MessageStatusEvent.objects.bulk_create(
        MessageStatusEvent(message=m, status=status, error_code=str(code or "")[:20], detail=detail[:500], source="provider")
        for m, status, code, detail in events
    )
    applied = [m.provider_sid for m in messages if m.provider_sid in early]
    if applied:  # a callback whose message has no sid yet stays kept
        PendingProviderStatus.objects.filter(provider_sid__in=applied).delete()
    return bool(changed)


def _save_sids(sids: dict[int, str], now) -> None:
    """One UPDATE for many messages' sids (the send is over: no next try, no lease)."""
    update_each(
        OutboundMessage, [OutboundMessage(pk=pk, provider_sid=sid) for pk, sid in sids.items()], ["provider_sid"],
        error_code="", next_attempt_at=None, lease_until=None, attempt_started_at=None, updated_at=now,
    )


def _update_alike(messages: list[OutboundMessage], fields: list[str]) -> None:
    """Save `fields` of many messages with one UPDATE per distinct set of values (a send task's
    replies mostly move alike, to sent and delivered)."""
    alike: dict[tuple, list[int]] = {}
    for message in messages:
        alike.setdefault(tuple(getattr(message, name) for name in fields), []).append(message.pk)
    for values, pks in alike.items():
        OutboundMessage.objects.filter(pk__in=pks).update(**dict(zip(fields, values)))


def apply_pending_statuses(provider_sid: str) -> bool:
    """Apply the kept early callbacks of `provider_sid` to its message, in order (a status
    still never moves backwards), and forget those callbacks. Returns whether it moved."""
    early = list(PendingProviderStatus.objects.filter(provider_sid=provider_sid).order_by("pk")) if provider_sid else []
    if not early:
        return False
    with transaction.atomic():
        return _apply_statuses_locked({provider_sid: []}, {provider_sid: early}, timezone.now())


def sweep_early_callbacks(now: dt.datetime) -> int:
    """Apply kept callbacks whose message has its sid by now (a safety net for callers of
    apply_provider_status inside a longer transaction), and drop those whose sid never showed up
    after a day (a message another system sent from the same account). Returns how many were
    applied."""
    sids = list(
        PendingProviderStatus.objects.filter(
            provider_sid__in=OutboundMessage.objects.filter(provider_sid__isnull=False).values("provider_sid")
        )
        .values_list("provider_sid", flat=True)
        .distinct()[:SWEEP_CALLBACKS]
    )
    for sid in sids:
        apply_pending_statuses(sid)
    PendingProviderStatus.objects.filter(received_at__lt=now - EARLY_CALLBACK_LIFETIME).delete()
    return len(sids)


# Twilio statuses that have no twin of their own here.
PROVIDER_STATUS_MAP = {
    "accepted": MessageStatus.QUEUED,
    "scheduled": MessageStatus.QUEUED,
    "canceled": MessageStatus.FAILED,
    "receiving": MessageStatus.SENT,
    "received": MessageStatus.DELIVERED,
    "read": MessageStatus.DELIVERED,
    "partially_delivered": MessageStatus.DELIVERED,
}
