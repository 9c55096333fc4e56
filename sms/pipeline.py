"""The outbound pipeline (SPEC S11): every SMS the portal sends goes through `queue_sms`.

Checks, in order: do-not-contact (recorded as suppressed, never sent), the duplicate limiter,
quiet hours for proactive messages (held), body and media limits with the segment count; then
the send is enqueued as a django-q2 task after commit. The sending limits of the number are
applied by the task (sms/tasks.py), so every worker process obeys them."""
from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from portal import webhooks
from portal.models import ChatSettings, WebhookEvent
from portal.realtime import publish_on_commit
from sms.models import (
    FINAL_STATUSES,
    STATUS_RANK,
    DoNotContact,
    MessageStatus,
    MessageStatusEvent,
    OutboundMessage,
    PhoneNumber,
)
from sms.quiet_hours import next_send_time
from sms.segments import MAX_BODY_CHARS, MAX_MEDIA_ITEMS, count_segments

log = logging.getLogger(__name__)

DUPLICATE_MESSAGE_ERROR = "error.platform.message-limiter.duplicate-message-sent"
HELD_MESSAGE_LIFETIME = dt.timedelta(hours=24)

# Kinds the duplicate limiter applies to. System replies (menus, confirmations, "invalid
# choice") answer the consumer's own texts, so repeating them is expected.
LIMITED_KINDS = {"agent", "api", "sessionless", "blending"}


class SendRefused(Exception):
    """The pipeline refused the message; `message` is the documented text."""

    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.message = message
        self.code = code or message


def is_do_not_contact(consumer_number: str, portal_number: str) -> bool:
    return DoNotContact.objects.filter(consumer_number=consumer_number, portal_number=portal_number).exists()


def add_do_not_contact(*, consumer_number: str, portal_number: str, source: str) -> bool:
    """Returns True when the entry is new."""
    _, created = DoNotContact.objects.get_or_create(
        consumer_number=consumer_number, portal_number=portal_number, defaults={"source": source}
    )
    return created


def remove_do_not_contact(*, consumer_number: str, portal_number: str) -> bool:
    deleted, _ = DoNotContact.objects.filter(consumer_number=consumer_number, portal_number=portal_number).delete()
    return deleted > 0


def queue_sms(
    *,
    to: str,
    from_number: str,
    body: str = "",
    media_urls: list[str] | tuple[str, ...] = (),
    kind: str = "system",
    proactive: bool = False,
    notify_group: str = "",
    batch: str = "",
    expires_at: dt.datetime | None = None,
    ignore_do_not_contact: bool = False,
) -> OutboundMessage:
    """Record an outbound message and schedule its sending. Raises SendRefused for the
    duplicate limiter and the size limits; a do-not-contact recipient gives a `suppressed` row."""
    body = body or ""
    media_urls = list(media_urls or [])
    if not body.strip() and not media_urls:
        raise SendRefused("message is required")
    if len(body) > MAX_BODY_CHARS:
        raise SendRefused(f"message exceeds maximum number of characters by {len(body) - MAX_BODY_CHARS}")
    if len(media_urls) > MAX_MEDIA_ITEMS:
        raise SendRefused(f"at most {MAX_MEDIA_ITEMS} media items can be sent in one message")

    chat_settings = ChatSettings.load()
    now = timezone.now()
    portal_number = PhoneNumber.objects.filter(number=from_number).first()
    info = count_segments(body)
    message = OutboundMessage(
        to_number=to,
        from_number=from_number,
        portal_number=portal_number,
        body=body,
        media_urls=media_urls,
        kind=kind,
        proactive=proactive,
        encoding=info.encoding,
        segments=info.segments,
        notify_group=notify_group,
        batch=batch,
        expires_at=expires_at,
        bypass_do_not_contact=ignore_do_not_contact,
    )

    if not ignore_do_not_contact and is_do_not_contact(to, from_number):
        message.status = MessageStatus.SUPPRESSED
        message.error_message = "Recipient is on the do-not-contact list."
        message.save()
        _record(message, MessageStatus.SUPPRESSED, detail=message.error_message)
        log.info("outbound suppressed: to=%s from=%s (do not contact)", to, from_number)
        return message

    if kind in LIMITED_KINDS and chat_settings.duplicate_limiter_enabled and body:
        since = now - dt.timedelta(minutes=chat_settings.duplicate_window_minutes)
        duplicate = (
            OutboundMessage.objects.filter(to_number=to, from_number=from_number, body=body, created_at__gte=since)
            # Only a message that went out, or still may, counts: one that was never sent
            # (suppressed, refused, failed, expired while held) may be sent again.
            .exclude(
                status__in=[
                    MessageStatus.SUPPRESSED,
                    MessageStatus.REFUSED,
                    MessageStatus.FAILED,
                    MessageStatus.EXPIRED,
                ]
            )
            .exists()
        )
        if duplicate:
            raise SendRefused(DUPLICATE_MESSAGE_ERROR)

    if proactive:
        opens = next_send_time(to, now, chat_settings.quiet_hours_start, chat_settings.quiet_hours_end)
        if opens > now:
            message.status = MessageStatus.HELD
            message.next_attempt_at = opens
            message.expires_at = expires_at or opens + HELD_MESSAGE_LIFETIME
            message.save()
            _record(message, MessageStatus.HELD, detail=f"Quiet hours: goes out at {opens.isoformat()}.")
            return message

    message.status = MessageStatus.QUEUED
    message.save()
    _record(message, MessageStatus.QUEUED)
    enqueue_send(message)
    return message


def enqueue_send(message: OutboundMessage) -> None:
    from django_q.tasks import async_task

    pk = message.pk
    transaction.on_commit(lambda: async_task("sms.tasks.send_message", pk, task_name=f"send-sms-{pk}"))


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
    if source == "provider":
        status = PROVIDER_STATUS_MAP.get(status, status)
    if status not in STATUS_RANK:
        log.warning("unknown message status %r for message %s", status, message.pk)
        return False
    current = message.status
    if current == status or current in FINAL_STATUSES or STATUS_RANK[status] < STATUS_RANK[current]:
        return False
    message.status = status
    fields = ["status", "updated_at"]
    if error_code:
        message.error_code = str(error_code)[:20]
        fields.append("error_code")
    if detail and status in FINAL_STATUSES:
        message.error_message = detail[:500]
        fields.append("error_message")
    message.save(update_fields=fields)
    _record(message, status, error_code=error_code, detail=detail, source=source)
    return True


def _record(message: OutboundMessage, status: str, *, error_code: str = "", detail: str = "", source: str = "portal"):
    MessageStatusEvent.objects.create(
        message=message, status=status, error_code=str(error_code or "")[:20], detail=detail[:500], source=source
    )
    webhooks.emit(
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
    """A status callback from the provider (Twilio's or the local provider's)."""
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().filter(provider_sid=provider_sid).first()
        if message is None:
            log.info("status callback for unknown message sid=%s status=%s", provider_sid, status)
            return False
        return set_status(message, status, error_code=error_code, detail=detail, source="provider")


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


def admit_pending(message: OutboundMessage) -> str:
    """Put a message created `pending` (a session-less request's, made up front so its status
    can be shown at once) through the checks `queue_sms` makes — do-not-contact, duplicate
    limiter, quiet hours, expiry — and schedule its sending. The caller holds the row lock.
    Returns the status it ends in."""
    chat_settings = ChatSettings.load()
    now = timezone.now()
    if message.status != MessageStatus.PENDING:
        return message.status
    if message.expires_at and message.expires_at <= now:
        set_status(message, MessageStatus.EXPIRED, detail="Not sent before it expired.")
        return message.status
    if not message.bypass_do_not_contact and is_do_not_contact(message.to_number, message.from_number):
        set_status(message, MessageStatus.SUPPRESSED, detail="Recipient is on the do-not-contact list.")
        return message.status
    if message.kind in LIMITED_KINDS and chat_settings.duplicate_limiter_enabled and message.body:
        since = now - dt.timedelta(minutes=chat_settings.duplicate_window_minutes)
        duplicate = (
            OutboundMessage.objects.filter(
                to_number=message.to_number, from_number=message.from_number, body=message.body, created_at__gte=since
            )
            .exclude(pk=message.pk)
            .exclude(
                status__in=[
                    MessageStatus.PENDING,
                    MessageStatus.SUPPRESSED,
                    MessageStatus.REFUSED,
                    MessageStatus.FAILED,
                    MessageStatus.EXPIRED,
                ]
            )
            .exists()
        )
        if duplicate:
            set_status(message, MessageStatus.REFUSED, detail=DUPLICATE_MESSAGE_ERROR)
            return message.status
    if message.proactive:
        opens = next_send_time(message.to_number, now, chat_settings.quiet_hours_start, chat_settings.quiet_hours_end)
        if opens > now:
            message.next_attempt_at = opens
            if message.expires_at is None:
                message.expires_at = opens + HELD_MESSAGE_LIFETIME
            message.save(update_fields=["next_attempt_at", "expires_at", "updated_at"])
            set_status(message, MessageStatus.HELD, detail=f"Quiet hours: goes out at {opens.isoformat()}.")
            return message.status
    message.next_attempt_at = None
    message.save(update_fields=["next_attempt_at", "updated_at"])
    set_status(message, MessageStatus.QUEUED)
    enqueue_send(message)
    return message.status
