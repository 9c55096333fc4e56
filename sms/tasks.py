"""django-q2 work of the transport: sending one message, and the outbound sweeper that releases
held messages and retries when their time comes (deadlines in columns, DESIGN rule 5).

Sending once: `send_message` claims the message with a conditional UPDATE (status queued, no sid
yet, due, and its lease free or handed to this task) that sets `lease_until` = now + SEND_LEASE;
one caller wins, the others skip. The provider is called outside any transaction, and the result
is written after. A worker that dies between the claim and that write leaves the lease to run
out; the sweeper then sends the message again. That is the at-least-once window: when the worker
died after the provider took the message, the consumer gets it twice — the price of never
losing one."""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from portal.models import ChatSettings
from portal.singletons import cached_singletons
from sms import ratelimit
from sms.models import MessageStatus, OutboundMessage
from sms.pipeline import (
    ENQUEUE_GRACE,
    add_do_not_contact,
    enqueue_sends,
    is_do_not_contact,
    record_provider_sid,
    set_status,
    sweep_early_callbacks,
)
from sms.providers import ProviderError, get_provider
from sms.providers.base import OutgoingSms
from sms.providers.twilio import UNSUBSCRIBED_RECIPIENT

log = logging.getLogger(__name__)

SWEEP_BATCH = 200
SHORT_WAIT_SECONDS = 1.0
DAY_SECONDS = 86_400
# A worker holds a message this long while it calls the provider: longer than a send can take
# (the Twilio client's 15 s timeout; django-q2 kills a task after 60 s).
SEND_LEASE = dt.timedelta(seconds=120)


def status_callback_url() -> str:
    base = settings.PUBLIC_BASE_URL
    return f"{base}/sms/twilio/status/" if base else ""


def retry_delay(attempt: int, chat_settings: ChatSettings) -> float:
    """Exponential backoff between the configured minimum and maximum delay."""
    delay = chat_settings.send_retry_min_seconds * (2 ** max(attempt - 1, 0))
    return float(min(delay, chat_settings.send_retry_max_seconds))


def _free_or_mine(now: dt.datetime, lease: dt.datetime | None) -> Q:
    """Nobody holds the message, or the task queue handed it to this task (its lease token)."""
    free = Q(lease_until__isnull=True) | Q(lease_until__lte=now)
    return free | Q(lease_until=lease) if lease is not None else free


def _sendable(now: dt.datetime, lease: dt.datetime | None) -> Q:
    return (
        Q(status=MessageStatus.QUEUED, provider_sid__isnull=True)
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        & _free_or_mine(now, lease)
    )


def send_messages(jobs: list[tuple[int, dt.datetime | None]]) -> dict:
    """Send several messages one after the other (a batch's replies: `pipeline.send_tasks` keeps
    each recipient's in one task, in order). Each is `send_message` with its own lease: one that
    fails or is skipped never stops the others. Returns how many ended each way."""
    results: Counter = Counter()
    with cached_singletons():  # the settings and the event webhooks' subscribers, once per task
        for message_id, lease in jobs:
            try:
                results[send_message(message_id, lease)] += 1
            except Exception:  # noqa: BLE001 — its lease runs out and the sweeper tries it again
                log.exception("sms send raised: id=%s; the sweeper tries it again", message_id)
                results["error"] += 1
    return dict(results)


def send_message(message_id: int, lease: dt.datetime | None = None) -> str:
    """Hand one message to the provider, at most once at a time: see the module's docstring.
    `lease` is the token the enqueue gave the task. Safe to run twice and in parallel."""
    now = timezone.now()
    message = (
        OutboundMessage.objects.select_related("portal_number").filter(_sendable(now, lease), pk=message_id).first()
    )
    if message is None:
        return "skipped"  # sent, final, not due yet, or someone else holds it
    if message.expires_at and message.expires_at <= now:
        return _close_unsent(message_id, lease, MessageStatus.EXPIRED, "Not sent before it expired.")
    if not message.bypass_do_not_contact and is_do_not_contact(message.to_number, message.from_number):
        return _close_unsent(message_id, lease, MessageStatus.SUPPRESSED, "Recipient is on the do-not-contact list.")
    # The sending limit is taken before the claim and outside any transaction: a short wait may
    # be slept here. (A caller that then loses the claim to another has used one share.)
    wait = _sending_limit_wait(message)
    if wait:
        OutboundMessage.objects.filter(_sendable(now, lease), pk=message_id).update(
            next_attempt_at=timezone.now() + dt.timedelta(seconds=wait), lease_until=None
        )
        return "rate limited"

    # The claim: one conditional UPDATE, so of two callers exactly one goes on.
    now = timezone.now()
    claimed = OutboundMessage.objects.filter(_sendable(now, lease), pk=message_id).update(
        lease_until=now + SEND_LEASE, attempts=F("attempts") + 1, updated_at=now
    )
    if not claimed:
        return "skipped"
    attempt = message.attempts + 1

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

    # The local provider "delivers" at once and reports it as Twilio would, through the same
    # path a status callback takes.
    statuses = (result.status, "sent", "delivered") if provider.name == "local" else (result.status,)
    record_provider_sid(message_id, result.provider_sid, statuses)
    log.info("sms sent: id=%s sid=%s to=%s attempt=%s", message_id, result.provider_sid, message.to_number, attempt)
    return "sent"


def _close_unsent(message_id: int, lease: dt.datetime | None, status: str, detail: str) -> str:
    """Expire or suppress a message that must not go out, unless someone took it meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().filter(_sendable(now, lease), pk=message_id).first()
        if message is None:
            return "skipped"
        message.next_attempt_at = message.lease_until = None
        message.save(update_fields=["next_attempt_at", "lease_until", "updated_at"])
        set_status(message, status, detail=detail)
    return str(status)


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
    """The provider refused or could not be reached: a next try after backoff, or the end. The
    lease is given back either way."""
    chat_settings = ChatSettings.load()
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().get(pk=message_id)
        retry = (
            exc.code != UNSUBSCRIBED_RECIPIENT and exc.retryable and message.attempts < chat_settings.send_max_attempts
        )
        message.lease_until = None
        if retry:
            delay = retry_delay(message.attempts, chat_settings)
            message.next_attempt_at = timezone.now() + dt.timedelta(seconds=delay)
            message.error_code = exc.code
            message.save(update_fields=["next_attempt_at", "lease_until", "error_code", "updated_at"])
            log.warning(
                "sms send failed, retry in %.0fs: id=%s attempt=%s %s", delay, message_id, message.attempts, exc.message
            )
            return "retry"
        message.next_attempt_at = None
        message.save(update_fields=["next_attempt_at", "lease_until", "updated_at"])
        set_status(message, MessageStatus.FAILED, error_code=exc.code, detail=exc.message, source="provider")
        if exc.code == UNSUBSCRIBED_RECIPIENT:
            add_do_not_contact(consumer_number=message.to_number, portal_number=message.from_number, source="provider")
            log.warning("sms refused, recipient unsubscribed: id=%s to=%s", message_id, message.to_number)
            return "unsubscribed"
        log.warning("sms send failed for good: id=%s attempt=%s %s", message_id, message.attempts, exc.message)
        return "failed"


def sweep_outbound(now: dt.datetime | None = None) -> int:
    """Send what is due and nobody holds: held messages whose window opened, retries whose delay
    passed, and queued messages whose send task never ran (the enqueue failed, the task or its
    worker was lost: their lease ran out). Expire what waited too long — as soon as it expires,
    not only when its next try comes. Each message sent is leased to the task queue again for the
    grace period, so the next sweeps leave it to its task. Runs with the other sweepers; tests
    call it after moving the clock."""
    now = now or timezone.now()
    lease = now + ENQUEUE_GRACE
    released: list[tuple[int, str]] = []
    with transaction.atomic():
        due = list(
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(status__in=[MessageStatus.HELD, MessageStatus.QUEUED], provider_sid__isnull=True)
            .filter(Q(next_attempt_at__lte=now) | Q(expires_at__lte=now))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .order_by("next_attempt_at")[:SWEEP_BATCH]
        )
        for message in due:
            if message.expires_at and message.expires_at <= now:
                set_status(message, MessageStatus.EXPIRED, detail="Not sent before it expired.")
                continue
            if message.next_attempt_at is None or message.next_attempt_at > now:
                continue  # only its expiry brought it here, and that is not yet
            if message.status == MessageStatus.HELD:
                set_status(message, MessageStatus.QUEUED)
            released.append((message.pk, message.to_number))
        if released:
            OutboundMessage.objects.filter(pk__in=[pk for pk, _ in released]).update(lease_until=lease)
    enqueue_sends([OutboundMessage(pk=pk, lease_until=lease, to_number=to) for pk, to in released])
    sweep_early_callbacks(now)
    ratelimit.purge_old_windows(older_than=2 * DAY_SECONDS)
    return len(released)
