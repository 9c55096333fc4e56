"""django-q2 work of the transport: sending one message, and the outbound sweeper that releases
held messages and retries when their time comes (deadlines in columns, DESIGN rule 5)."""
from __future__ import annotations

import datetime as dt
import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.models import ChatSettings
from sms import ratelimit
from sms.models import MessageStatus, OutboundMessage
from sms.pipeline import add_do_not_contact, apply_provider_status, enqueue_send, is_do_not_contact, set_status
from sms.providers import ProviderError, get_provider
from sms.providers.base import OutgoingSms
from sms.providers.twilio import UNSUBSCRIBED_RECIPIENT

log = logging.getLogger(__name__)

SWEEP_BATCH = 200
SHORT_WAIT_SECONDS = 1.0
DAY_SECONDS = 86_400


def status_callback_url() -> str:
    base = settings.PUBLIC_BASE_URL
    return f"{base}/sms/twilio/status/" if base else ""


def retry_delay(attempt: int, chat_settings: ChatSettings) -> float:
    """Exponential backoff between the configured minimum and maximum delay."""
    delay = chat_settings.send_retry_min_seconds * (2 ** max(attempt - 1, 0))
    return float(min(delay, chat_settings.send_retry_max_seconds))


def send_message(message_id: int) -> str:
    """Hand one message to the provider. Safe to run twice: only a `queued` message is sent."""
    now = timezone.now()
    message = OutboundMessage.objects.select_related("portal_number").filter(pk=message_id).first()
    if message is None or message.status != MessageStatus.QUEUED or message.provider_sid:
        return "skipped"
    if message.next_attempt_at and message.next_attempt_at > now:
        return "not due"
    if message.expires_at and message.expires_at <= now:
        with transaction.atomic():
            message = OutboundMessage.objects.select_for_update().get(pk=message_id)
            set_status(message, MessageStatus.EXPIRED, detail="Not sent before it expired.")
        return "expired"
    # The sending limit is taken outside any transaction: a short wait may be slept here.
    wait = _sending_limit_wait(message)
    if wait:
        OutboundMessage.objects.filter(pk=message_id, status=MessageStatus.QUEUED).update(
            next_attempt_at=timezone.now() + dt.timedelta(seconds=wait)
        )
        return "rate limited"
    with transaction.atomic():
        message = (
            # of=self: portal_number is nullable, and PostgreSQL refuses FOR UPDATE on the
            # nullable side of the outer join select_related makes.
            OutboundMessage.objects.select_for_update(of=("self",))
            .select_related("portal_number")
            .filter(pk=message_id)
            .first()
        )
        if message is None or message.status != MessageStatus.QUEUED or message.provider_sid:
            return "skipped"
        if not message.bypass_do_not_contact and is_do_not_contact(message.to_number, message.from_number):
            set_status(message, MessageStatus.SUPPRESSED, detail="Recipient is on the do-not-contact list.")
            return "suppressed"
        message.attempts += 1
        message.next_attempt_at = None
        message.save(update_fields=["attempts", "next_attempt_at", "updated_at"])

    provider = get_provider()
    outgoing = OutgoingSms(
        to=message.to_number,
        from_=message.from_number,
        body=message.body,
        media_urls=list(message.media_urls or []),
        messaging_service_sid=(message.portal_number.messaging_service_sid if message.portal_number else ""),
        status_callback=status_callback_url(),
    )
    try:
        result = provider.send(outgoing)
    except ProviderError as exc:
        return _after_failure(message_id, exc)

    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().get(pk=message_id)
        message.provider_sid = result.provider_sid
        message.error_code = ""  # an earlier try's 429 or 5xx is not this message's outcome
        message.save(update_fields=["provider_sid", "error_code", "updated_at"])
        set_status(message, result.status, source="provider")
    log.info("sms sent: id=%s sid=%s to=%s attempt=%s", message_id, result.provider_sid, message.to_number, message.attempts)
    if provider.name == "local":
        # The local provider "delivers" at once and reports it as Twilio would, through the
        # same function the status webhook calls.
        apply_provider_status(provider_sid=result.provider_sid, status="sent")
        apply_provider_status(provider_sid=result.provider_sid, status="delivered")
    return "sent"


def _sending_limit_wait(message: OutboundMessage) -> float:
    """0 when the number may send now (and the send is counted), else seconds to wait. A wait
    for the next one-second window is slept here, so a burst of replies is not parked for the
    sweeper; longer waits are left to it."""
    number = message.portal_number
    if number is None:
        return 0.0
    wait = ratelimit.take(f"num:{number.pk}:s", limit=number.messages_per_second, period=1)
    if 0 < wait <= SHORT_WAIT_SECONDS:
        time.sleep(wait)
        wait = ratelimit.take(f"num:{number.pk}:s", limit=number.messages_per_second, period=1)
    if not wait and number.messages_per_day:
        wait = ratelimit.take(f"num:{number.pk}:d", limit=number.messages_per_day, period=DAY_SECONDS)
    return wait


def _after_failure(message_id: int, exc: ProviderError) -> str:
    chat_settings = ChatSettings.load()
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().get(pk=message_id)
        if exc.code == UNSUBSCRIBED_RECIPIENT:
            add_do_not_contact(consumer_number=message.to_number, portal_number=message.from_number, source="provider")
            set_status(message, MessageStatus.FAILED, error_code=exc.code, detail=exc.message, source="provider")
            log.warning("sms refused, recipient unsubscribed: id=%s to=%s", message_id, message.to_number)
            return "unsubscribed"
        if exc.retryable and message.attempts < chat_settings.send_max_attempts:
            delay = retry_delay(message.attempts, chat_settings)
            message.next_attempt_at = timezone.now() + dt.timedelta(seconds=delay)
            message.error_code = exc.code
            message.save(update_fields=["next_attempt_at", "error_code", "updated_at"])
            log.warning(
                "sms send failed, retry in %.0fs: id=%s attempt=%s %s", delay, message_id, message.attempts, exc.message
            )
            return "retry"
        set_status(message, MessageStatus.FAILED, error_code=exc.code, detail=exc.message, source="provider")
        log.warning("sms send failed for good: id=%s attempt=%s %s", message_id, message.attempts, exc.message)
        return "failed"


def sweep_outbound(now: dt.datetime | None = None) -> int:
    """Release held messages whose window opened, retry queued ones whose delay passed, expire
    what waited too long — as soon as it expires, not only when its next try comes. A queued
    message without a next try is with a worker or in the task queue: the send task itself
    checks its expiry. Runs on a django-q2 schedule; tests call it after moving the clock."""
    now = now or timezone.now()
    released: list[int] = []
    with transaction.atomic():
        due = list(
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(status__in=[MessageStatus.HELD, MessageStatus.QUEUED])
            .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=False, expires_at__lte=now))
            .order_by("next_attempt_at")[:SWEEP_BATCH]
        )
        for message in due:
            if message.expires_at and message.expires_at <= now:
                set_status(message, MessageStatus.EXPIRED, detail="Not sent before it expired.")
                continue
            if message.status == MessageStatus.HELD:
                set_status(message, MessageStatus.QUEUED)
            released.append(message.pk)
    for pk in released:
        enqueue_send(OutboundMessage(pk=pk))
    ratelimit.purge_old_windows(older_than=2 * DAY_SECONDS)
    return len(released)

