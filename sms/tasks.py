"""django-q2 work of the transport: sending one message, and the outbound sweeper that releases
held messages and retries when their time comes (deadlines in columns, DESIGN rule 5).

Sending once: `send_message` claims the message with a conditional UPDATE (status queued, no sid
yet, due, its lease free or handed to this task, and no earlier message to the same recipient
from the same number still unsent) that sets `lease_until` = now + SEND_LEASE; one caller wins,
the others skip. The provider is called outside any transaction, and the result is written
after. While the call is in flight the process renews the lease (`_LeaseKeeper`), so a live
worker keeps it however slow the provider is, and a dead one loses it within SEND_LEASE; the
sweeper then sends the message again. Before that second attempt the provider is asked whether
it made the message already (`attempt_started_at` says an attempt's outcome is unknown): a worker
killed after Twilio took the message costs a lookup, not a second text.

In batches: a send task's messages (`send_messages`) are read in one query, their do-not-contact
entries in one more, and each is claimed and handed to the provider in turn; what the provider
took is recorded for all of them at the end (`statuses.record_provider_sids`: sids, statuses and
their events in a handful of queries), their leases renewed until then. A worker killed before
that leaves them leased and unrecorded: the next attempt asks the provider first, as above.

In order: replies to one recipient from one number reach the provider in the order they were
queued. A message whose earlier sibling is still unsent waits (`next_attempt_at` a little ahead,
no lease); the send that ends the earlier one — taken, failed for good, expired, suppressed —
releases the next at once (`_release_next`). Different recipients never wait for each other."""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from portal.metrics import PROVIDER_SEND_SECONDS
from portal.models import ChatSettings
from portal.realtime import batched_pushes
from portal.singletons import cached_singletons
from sms import ratelimit
from sms.models import MessageStatus, OutboundMessage
from sms.pipeline import add_do_not_contact, is_do_not_contact, read_do_not_contact
from sms.send_queue import ENQUEUE_GRACE, batched_sends, enqueue_sends
from sms.statuses import record_provider_sids, set_status, sweep_early_callbacks
from sms.providers import ProviderError, get_provider
from sms.providers.base import OutgoingSms
from sms.providers.twilio import UNSUBSCRIBED_RECIPIENT

log = logging.getLogger(__name__)

SWEEP_BATCH = 200
SHORT_WAIT_SECONDS = 1.0
DAY_SECONDS = 86_400
# A worker holds a message this long past its last renewal while it calls the provider; the
# lease is renewed every LEASE_RENEW_SECONDS while the call is in flight, so only a dead worker
# lets it run out (and the sweeper, every few seconds, sends again soon after).
SEND_LEASE = dt.timedelta(seconds=15)
LEASE_RENEW_SECONDS = 5.0
# A message waiting for an earlier one to its recipient is released by that one's end; should
# that never come (its worker died), the sweeper looks at it again after this.
WAIT_FOR_EARLIER = dt.timedelta(seconds=10)


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


def _unsent_to_same(message: OutboundMessage):
    """The messages to the same recipient from the same number still queued and not taken."""
    return OutboundMessage.objects.filter(
        to_number=message.to_number,
        from_number=message.from_number,
        status=MessageStatus.QUEUED,
        provider_sid__isnull=True,
    )


def _earlier_unsent(message: OutboundMessage):
    return _unsent_to_same(message).filter(pk__lt=message.pk)


class _LeaseKeeper:
    """Renews the leases of this process's sends in flight, from one daemon thread, every
    LEASE_RENEW_SECONDS: a send slower than SEND_LEASE keeps its message, a killed worker's
    lease runs out soon after."""

    def __init__(self):
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Its own timer, not `time.sleep`: a test that stands in for this module's `time` (the
        # sending limit's wait) must not turn this thread into a busy loop.
        self._pause = threading.Event()

    def hold(self, message_id: int) -> None:
        with self._lock:
            self._held.add(message_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sms-lease-keeper", daemon=True)
                self._thread.start()

    def let_go(self, message_ids) -> None:
        with self._lock:
            self._held.difference_update(message_ids)

    def _run(self) -> None:
        while True:
            self._pause.wait(LEASE_RENEW_SECONDS)  # never set: a sleep
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                OutboundMessage.objects.filter(
                    pk__in=held, status=MessageStatus.QUEUED, provider_sid__isnull=True
                ).update(lease_until=timezone.now() + SEND_LEASE)
            except Exception:  # noqa: BLE001 — the lease may run out; the claim still sends once
                log.exception("sms lease renewal failed for ids %s", held)
            finally:
                connection.close()


_lease_keeper = _LeaseKeeper()


def send_messages(jobs: list[tuple[int, dt.datetime | None]]) -> dict:
    """Send several messages one after the other (a batch's replies: `send_queue.send_tasks` keeps
    each recipient's in one task, in order). Each is `send_message`'s steps with its own lease:
    one that fails or is skipped never stops the others. What the provider took is recorded for
    the whole task at its end (`_record_taken`). Returns how many ended each way."""
    # The settings and the event webhooks' subscribers read once per task; the status pushes and
    # the released followers' sends leave together at its end.
    with cached_singletons(), batched_pushes(), batched_sends():
        return dict(Counter(_send_batch(jobs, isolate=True).values()))


def send_message(message_id: int, lease: dt.datetime | None = None) -> str:
    """Hand one message to the provider, at most once at a time: see the module's docstring.
    `lease` is the token the enqueue gave the task. Safe to run twice and in parallel."""
    return _send_batch([(message_id, lease)], isolate=False)[message_id]


def _send_batch(jobs: list[tuple[int, dt.datetime | None]], *, isolate: bool) -> dict[int, str]:
    """The jobs in their order, each checked, claimed and handed to the provider on its own; the
    messages the provider took are recorded together when all were tried (their leases renewed
    until then), a handful of queries for the batch. With `isolate`, a job that raises is logged
    and the others go on (its lease runs out and the sweeper tries it again)."""
    now = timezone.now()
    outcomes = {pk: "skipped" for pk, _ in jobs}  # sent, final, not due yet, or someone else holds it
    messages = _sendable_messages(jobs, now)
    read_do_not_contact([(m.to_number, m.from_number) for m in messages.values() if not m.bypass_do_not_contact])
    taken: list[tuple[OutboundMessage, str, tuple[str, ...]]] = []
    try:
        for pk, lease in jobs:
            if pk not in messages:
                continue
            try:
                outcomes[pk] = _send_one(messages[pk], lease, now, taken)
            except Exception:
                if not isolate:
                    raise
                log.exception("sms send raised: id=%s; the sweeper tries it again", pk)
                outcomes[pk] = "error"
    finally:
        _record_taken(taken)
    return outcomes


def _sendable_messages(jobs: list[tuple[int, dt.datetime | None]], now: dt.datetime) -> dict[int, OutboundMessage]:
    """The jobs' messages that may be sent now with their leases, read in one query."""
    by_lease: dict[dt.datetime | None, list[int]] = {}
    for pk, lease in jobs:  # a batch's replies mostly share one lease token
        by_lease.setdefault(lease, []).append(pk)
    which = Q(pk__in=[])
    for lease, pks in by_lease.items():
        which |= Q(pk__in=pks) & _sendable(now, lease)
    return {m.pk: m for m in OutboundMessage.objects.select_related("portal_number").filter(which)}


def _send_one(message: OutboundMessage, lease: dt.datetime | None, now: dt.datetime, taken: list) -> str:
    if message.expires_at and message.expires_at <= now:
        return _close_unsent(message.pk, lease, MessageStatus.EXPIRED, "Not sent before it expired.")
    if not message.bypass_do_not_contact and is_do_not_contact(message.to_number, message.from_number):
        return _close_unsent(message.pk, lease, MessageStatus.SUPPRESSED, "Recipient is on the do-not-contact list.")
    # The sending limit is taken before the claim and outside any transaction: a short wait may
    # be slept here. (A caller that then loses the claim to another has used one share.)
    wait = _sending_limit_wait(message)
    if wait:
        OutboundMessage.objects.filter(_sendable(now, lease), pk=message.pk).update(
            next_attempt_at=timezone.now() + dt.timedelta(seconds=wait), lease_until=None
        )
        return "rate limited"
    # Earlier messages to the same recipient that this batch already handed over are taken,
    # though not recorded yet: they do not hold this one back.
    mine = [m.pk for m, _, _ in taken if (m.to_number, m.from_number) == (message.to_number, message.from_number)]
    if not _claim(message, lease, mine):
        return _wait_for_earlier(message, lease)
    return _hand_over(message, taken)


def _claim(message: OutboundMessage, lease: dt.datetime | None, mine: list[int] = ()) -> bool:
    """One conditional UPDATE, so of two callers exactly one goes on (and none while an earlier
    message to the same recipient is unsent, other than `mine`). The attempt's start is kept
    from an earlier attempt whose outcome is still unknown."""
    now = timezone.now()
    return bool(
        OutboundMessage.objects.filter(_sendable(now, lease), pk=message.pk)
        .exclude(Exists(_earlier_unsent(message).exclude(pk__in=list(mine))))
        .update(
            lease_until=now + SEND_LEASE,
            attempts=F("attempts") + 1,
            attempt_started_at=Coalesce(F("attempt_started_at"), now),
            updated_at=now,
        )
    )


def _hand_over(message: OutboundMessage, taken: list) -> str:
    """The claimed message to the provider, outside any transaction, its lease renewed while the
    call is in flight and until its outcome is recorded; first, when an earlier attempt's answer
    was lost, the provider is asked whether it made the message then. What the provider took
    joins `taken`; a failure is written at once."""
    provider = get_provider()
    outgoing = OutgoingSms(
        to=message.to_number,
        from_=message.from_number,
        body=message.body,
        media_urls=list(message.media_urls or []),
        messaging_service_sid=(message.portal_number.messaging_service_sid if message.portal_number else ""),
        status_callback=status_callback_url(),
    )
    _lease_keeper.hold(message.pk)
    try:
        found = provider.find_sent(outgoing, message.attempt_started_at) if message.attempt_started_at else None
        result = None
        if found is None:
            with PROVIDER_SEND_SECONDS.labels(provider=provider.name).time():
                result = provider.send(outgoing)
    except ProviderError as exc:
        # The outcome is written without the lease keeper: a renewal after a failure would hold
        # back the retry.
        _lease_keeper.let_go([message.pk])
        return _after_failure(message, exc)
    except BaseException:
        _lease_keeper.let_go([message.pk])
        raise
    if found is not None:
        taken.append((message, found.provider_sid, (found.status,)))
        log.warning(
            "sms found at the provider, not sent again: id=%s sid=%s (an earlier attempt's answer was lost)",
            message.pk, found.provider_sid,
        )
        return "found"
    # The local provider "delivers" at once and reports it as Twilio would, through the same
    # path a status callback takes.
    statuses = (result.status, "sent", "delivered") if provider.name == "local" else (result.status,)
    taken.append((message, result.provider_sid, statuses))
    log.info(
        "sms sent: id=%s sid=%s to=%s attempt=%s", message.pk, result.provider_sid, message.to_number, message.attempts + 1
    )
    return "sent"


def _record_taken(taken: list[tuple[OutboundMessage, str, tuple[str, ...]]]) -> None:
    """The sids and statuses of what the provider took, recorded together; then the messages
    that wait for them to their recipients are released."""
    if not taken:
        return
    try:
        record_provider_sids([(m.pk, sid, statuses) for m, sid, statuses in taken])
    finally:
        _lease_keeper.let_go([m.pk for m, _, _ in taken])
    _release_next([m for m, _, _ in taken])


def _wait_for_earlier(message: OutboundMessage, lease: dt.datetime | None) -> str:
    """The claim failed. When an earlier message to the same recipient is still unsent, this one
    waits for it (its end releases this one); else someone else holds or sent it."""
    if not _earlier_unsent(message).exists():
        return "skipped"
    now = timezone.now()
    waits = OutboundMessage.objects.filter(_sendable(now, lease), pk=message.pk).update(
        next_attempt_at=now + WAIT_FOR_EARLIER, lease_until=None, updated_at=now
    )
    if not waits:
        return "skipped"
    # The earlier one may have ended between the claim and the wait, and found this one still
    # held: then nobody would release it before the sweeper. Look once more.
    if not _earlier_unsent(message).exists():
        return send_message(message.pk, None)
    return "waiting"


def _release_next(ended: list[OutboundMessage]) -> None:
    """These messages' sends are over (taken, failed for good, expired, suppressed): for each
    recipient and number, the next message, if it waits for them (nobody holds it), is handed to
    a send task now. A few queries for all of them."""
    now = timezone.now()
    lease = now + ENQUEUE_GRACE
    last: dict[tuple[str, str], int] = {}
    for message in ended:
        pair = (message.to_number, message.from_number)
        last[pair] = max(last.get(pair, 0), message.pk)
    following: dict[tuple[str, str], tuple[int, bool]] = {}
    unsent = (
        OutboundMessage.objects.filter(
            to_number__in={to for to, _ in last}, status=MessageStatus.QUEUED, provider_sid__isnull=True, pk__gt=min(last.values())
        )
        .order_by("pk")
        .values_list("pk", "to_number", "from_number", "lease_until")
    )
    for pk, to, from_, held_until in unsent:
        pair = (to, from_)
        if pair in last and pk > last[pair] and pair not in following:
            following[pair] = (pk, held_until is None or held_until <= now)
    free = [pk for pk, is_free in following.values() if is_free]
    if not free:
        return
    released = OutboundMessage.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lte=now),
        pk__in=free,
        status=MessageStatus.QUEUED,
        provider_sid__isnull=True,
    )
    if released.update(next_attempt_at=now, lease_until=lease, updated_at=now):
        mine = OutboundMessage.objects.filter(pk__in=free, lease_until=lease).values_list("pk", "to_number")
        enqueue_sends([OutboundMessage(pk=pk, lease_until=lease, to_number=to) for pk, to in mine])


def _close_unsent(message_id: int, lease: dt.datetime | None, status: str, detail: str) -> str:
    """Expire or suppress a message that must not go out, unless someone took it meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().filter(_sendable(now, lease), pk=message_id).first()
        if message is None:
            return "skipped"
        message.next_attempt_at = message.lease_until = message.attempt_started_at = None
        message.save(update_fields=["next_attempt_at", "lease_until", "attempt_started_at", "updated_at"])
        set_status(message, status, detail=detail)
    _release_next([message])
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


def _after_failure(sent: OutboundMessage, exc: ProviderError) -> str:
    """The provider refused or could not be reached: a next try after backoff, or the end. The
    lease is given back either way. An answer from the provider (an HTTP status) says it made no
    message; a broken connection does not, so the next try asks first (`attempt_started_at`
    stays)."""
    chat_settings = ChatSettings.load()
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().get(pk=sent.pk)
        retry = (
            exc.code != UNSUBSCRIBED_RECIPIENT and exc.retryable and message.attempts < chat_settings.send_max_attempts
        )
        message.lease_until = None
        if exc.status is not None:
            message.attempt_started_at = None
        fields = ["next_attempt_at", "lease_until", "attempt_started_at", "updated_at"]
        if retry:
            delay = retry_delay(message.attempts, chat_settings)
            message.next_attempt_at = timezone.now() + dt.timedelta(seconds=delay)
            message.error_code = exc.code
            message.save(update_fields=[*fields, "error_code"])
            log.warning(
                "sms send failed, retry in %.0fs: id=%s attempt=%s %s", delay, sent.pk, message.attempts, exc.message
            )
            return "retry"
        message.next_attempt_at = None
        message.save(update_fields=fields)
        set_status(message, MessageStatus.FAILED, error_code=exc.code, detail=exc.message, source="provider")
        unsubscribed = exc.code == UNSUBSCRIBED_RECIPIENT
        if unsubscribed:
            add_do_not_contact(
                consumer_number=message.to_number, portal_number=message.from_number, source="provider", text=exc.message
            )
    _release_next([message])
    if unsubscribed:
        log.warning("sms refused, recipient unsubscribed: id=%s to=%s", sent.pk, message.to_number)
        return "unsubscribed"
    log.warning("sms send failed for good: id=%s attempt=%s %s", sent.pk, message.attempts, exc.message)
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
