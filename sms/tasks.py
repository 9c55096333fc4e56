"""django-q2 work of the transport: sending one message, and the outbound sweeper that releases
held messages and retries when their time comes (deadlines in columns, DESIGN rule 5).

Sending once: a send task claims its messages (`sms.leases.claim`: one conditional UPDATE; of two
callers one wins each message, the others skip it). The provider is called outside any
transaction, and the result is written after. While the task holds its messages the process
renews their leases (`sms.leases.keeper`), so a live worker keeps them however slow the provider
is, and a dead one loses them within SEND_LEASE; the sweeper then sends them again. Before that
second attempt the provider is asked whether it made the message already (`attempt_started_at`
says an attempt's outcome is unknown): a worker killed after Twilio took the message costs a
lookup, not a second text. A claimed message that does not go to the provider (the sending limit
says wait, an earlier one to its recipient did not go) is given back as it was.

In batches: a send task's messages (`send_messages`) are read in one query, their do-not-contact
entries in one more, claimed in two, and handed to the provider in turn; what the provider took
is recorded for all of them at the end (`statuses.record_provider_sids`: sids, statuses and
their events in a handful of queries), their leases renewed until then. A worker killed before
that leaves them leased and unrecorded, with those it had claimed and not handed over yet: the
next attempt asks the provider first for each of them, as above (a lookup, not a second text).

In order: replies to one recipient from one number reach the provider in the order they were
queued. A message whose earlier sibling is still unsent waits (`next_attempt_at` a little ahead,
no lease); the send that ends the earlier one — taken, failed for good, expired, suppressed —
releases the next at once (`_release_next`). Different recipients never wait for each other."""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.metrics import PROVIDER_SEND_SECONDS
from portal.models import ChatSettings
from portal.realtime import batched_pushes
from portal.singletons import cached_singletons
from sms import ratelimit, sending_limits
from sms.leases import claim, earlier_unsent, give_back, jobs_sendable, keeper, sendable
from sms.models import MessageStatus, OutboundMessage
from sms.pipeline import add_do_not_contact, is_do_not_contact, read_do_not_contact
from sms.send_queue import ENQUEUE_GRACE, batched_sends, enqueue_sends
from sms.statuses import record_provider_sids, set_status, sweep_early_callbacks
from sms.providers import ProviderError, get_provider
from sms.providers.base import OutgoingSms
from sms.sending_limits import SendingAllowance
from sms.providers.twilio import UNSUBSCRIBED_RECIPIENT

log = logging.getLogger(__name__)

SWEEP_BATCH = 200
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
    """The jobs' messages that may go are claimed together (`sms.leases.claim`), then each, in the order it
    was queued, takes its share of the sending limit and is handed to the provider on its own;
    what the provider took is recorded together when all were tried (their leases renewed until
    then): a handful of queries for the batch. A message whose earlier sibling in the batch did
    not go (held elsewhere, limited, refused) gives its claim back and waits for it. With
    `isolate`, a job that raises is logged and the others go on (the sweeper tries it again)."""
    now = timezone.now()
    outcomes = {pk: "skipped" for pk, _ in jobs}  # sent, final, not due yet, or someone else holds it
    leases = dict(jobs)
    messages = _sendable_messages(jobs, now)
    read_do_not_contact([(m.to_number, m.from_number) for m in messages.values() if not m.bypass_do_not_contact])
    for pk, message in list(messages.items()):
        closed = _isolated(isolate, pk, lambda: _close_if_unsendable(message, leases[pk], now))
        if closed:
            outcomes[pk] = closed
            del messages[pk]
    due = sorted(messages.values(), key=lambda m: m.pk)  # per recipient, the order they were queued
    claimed = claim(due, leases)
    allowance = SendingAllowance([m for m in due if m.pk in claimed])
    taken: list[tuple[OutboundMessage, str, tuple[str, ...]]] = []
    held_back: set[tuple[str, str]] = set()  # recipients (and numbers) whose earlier message did not go
    try:
        for message in due:
            outcomes[message.pk] = _isolated(
                isolate, message.pk,
                lambda: _go_or_wait(message, leases[message.pk], claimed, held_back, taken, allowance),
            )
            if outcomes[message.pk] not in ("sent", "found"):
                held_back.add((message.to_number, message.from_number))
    finally:
        keeper.let_go(claimed.difference(m.pk for m, _, _ in taken))
        _record_taken(taken)
    return outcomes


def _go_or_wait(
    message: OutboundMessage,
    lease,
    claimed: set[int],
    held_back: set[tuple[str, str]],
    taken: list,
    allowance: SendingAllowance,
) -> str:
    """One message of the task after the claim: sent, or waiting for an earlier one."""
    if message.pk not in claimed:
        return _wait_for_earlier(message, lease)
    if (message.to_number, message.from_number) in held_back:
        allowance.pass_over(message.portal_number)
        return _wait_after_giving_back(message)
    return _send_claimed(message, taken, allowance)


def _isolated(isolate: bool, pk: int, step):
    """`step()`'s outcome. With `isolate`, a step that raises is logged and ends as "error": the
    task's other messages go on, and the sweeper tries this one again."""
    try:
        return step()
    except Exception:
        if not isolate:
            raise
        log.exception("sms send raised: id=%s; the sweeper tries it again", pk)
        return "error"


def _sendable_messages(jobs: list[tuple[int, dt.datetime | None]], now: dt.datetime) -> dict[int, OutboundMessage]:
    """The jobs' messages that may be sent now with their leases, read in one query."""
    messages = OutboundMessage.objects.select_related("portal_number").filter(jobs_sendable(jobs, now))
    return {m.pk: m for m in messages}


def _close_if_unsendable(message: OutboundMessage, lease: dt.datetime | None, now: dt.datetime) -> str | None:
    """Expire or suppress a message that must not go out; None when it may."""
    if message.expires_at and message.expires_at <= now:
        return _close_unsent(message.pk, lease, MessageStatus.EXPIRED, "Not sent before it expired.")
    if not message.bypass_do_not_contact and is_do_not_contact(message.to_number, message.from_number):
        return _close_unsent(message.pk, lease, MessageStatus.SUPPRESSED, "Recipient is on the do-not-contact list.")
    return None


def _send_claimed(message: OutboundMessage, taken: list, allowance: SendingAllowance) -> str:
    """A claimed message takes its share of the sending limit (from the task's allowance when it
    has one left), then goes to the provider. The limit is taken outside any transaction: a short
    wait may be slept here. When it says wait longer, or fails (Redis gone), the claim is given
    back untouched for the sweeper."""
    try:
        wait = 0.0 if allowance.use(message.portal_number) else sending_limits.wait_for(message)
    except Exception:
        give_back(message, message.next_attempt_at or timezone.now())
        raise
    if wait:
        give_back(message, timezone.now() + dt.timedelta(seconds=wait))
        return "rate limited"
    return _hand_over(message, taken)


def _wait_after_giving_back(message: OutboundMessage) -> str:
    """An earlier message of this batch to the same recipient did not go: this one gives its claim
    back and waits for that one's end to release it."""
    give_back(message, timezone.now() + WAIT_FOR_EARLIER)
    return _look_once_more(message)


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
    try:
        found = provider.find_sent(outgoing, message.attempt_started_at) if message.attempt_started_at else None
        result = None
        if found is None:
            with PROVIDER_SEND_SECONDS.labels(provider=provider.name).time():
                result = provider.send(outgoing)
    except ProviderError as exc:
        # The outcome is written without the lease keeper: a renewal after a failure would hold
        # back the retry.
        keeper.let_go([message.pk])
        return _after_failure(message, exc)
    except BaseException:
        keeper.let_go([message.pk])
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
        keeper.let_go([m.pk for m, _, _ in taken])
    _release_next([m for m, _, _ in taken])


def _wait_for_earlier(message: OutboundMessage, lease: dt.datetime | None) -> str:
    """The claim failed. When an earlier message to the same recipient is still unsent, this one
    waits for it (its end releases this one). When none is left — it may have gone since the
    claim, its end finding this one still leased to this task and releasing nothing — the claim
    is tried again; it fails again only when someone else holds or sent this one (an earlier
    message never appears after a later one, so this happens once at most)."""
    if not earlier_unsent(message).exists():
        return send_message(message.pk, lease)
    now = timezone.now()
    waits = OutboundMessage.objects.filter(sendable(now, lease), pk=message.pk).update(
        next_attempt_at=now + WAIT_FOR_EARLIER, lease_until=None, updated_at=now
    )
    if not waits:
        return "skipped"
    return _look_once_more(message)


def _look_once_more(message: OutboundMessage) -> str:
    """The earlier message may have ended between the claim and the wait, and found this one
    still held: then nobody would release it before the sweeper. So look once more, and send it
    now when nothing earlier is left (unless its release got there first)."""
    if earlier_unsent(message).exists():
        return "waiting"
    now = timezone.now()
    OutboundMessage.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lte=now), pk=message.pk, next_attempt_at__gt=now
    ).update(next_attempt_at=now)
    return send_message(message.pk, None)


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
        message = OutboundMessage.objects.select_for_update().filter(sendable(now, lease), pk=message_id).first()
        if message is None:
            return "skipped"
        message.next_attempt_at = message.lease_until = message.attempt_started_at = None
        message.save(update_fields=["next_attempt_at", "lease_until", "attempt_started_at", "updated_at"])
        set_status(message, status, detail=detail)
    _release_next([message])
    return str(status)


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
    ratelimit.purge_old_windows(older_than=2 * sending_limits.DAY_SECONDS)
    return len(released)
