"""The outbound pipeline (SPEC S11): every SMS the portal sends goes through `queue_sms`.

Checks, in order: do-not-contact (recorded as suppressed, never sent), the duplicate limiter,
quiet hours for proactive messages (held), body and media limits with the segment count; then
the send is enqueued as a django-q2 task after commit. The sending limits of the number are
applied by the task (sms/tasks.py), so every worker process obeys them.

Nothing is lost: a queued message is due (`next_attempt_at`) from the moment it is made, and the
task queue holds it only for a grace period (`lease_until`, handed to the task as its token); an
enqueue that fails is logged and the outbound sweeper sends the message once the grace is over.
Nothing is sent twice: the task claims the message before it calls the provider (sms/tasks.py)."""
from __future__ import annotations

import datetime as dt
import logging
import threading

from django.db import connection, transaction
from django.utils import timezone

from portal import webhooks
from portal.aftercommit import AfterCommitBatch
from portal.models import ChatSettings, WebhookEvent
from portal.realtime import publish_on_commit
from portal.singletons import cached, forget
from sms.models import (
    FINAL_STATUSES,
    STATUS_RANK,
    DoNotContact,
    MessageStatus,
    MessageStatusEvent,
    OutboundMessage,
    PendingProviderStatus,
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

# How long the task queue holds a message after an enqueue before the sweeper sends it itself
# (the enqueue failed, or the broker or the worker lost the task). Longer than a task usually
# waits in the queue; when the queue is slower, the second task finds the message taken or sent.
# Short enough that texts a killed worker took with it go out within half a minute.
ENQUEUE_GRACE = dt.timedelta(seconds=25)

# Early status callbacks (before the sid is saved) are kept this long for their message.
EARLY_CALLBACK_LIFETIME = dt.timedelta(days=1)
SWEEP_CALLBACKS = 200

# Statuses an earlier copy of a text can be in without counting for the duplicate limiter: it
# never went out and never will.
NEVER_SENT = [MessageStatus.SUPPRESSED, MessageStatus.REFUSED, MessageStatus.FAILED, MessageStatus.EXPIRED]


class SendRefused(Exception):
    """The pipeline refused the message; `message` is the documented text."""

    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.message = message
        self.code = code or message


def is_do_not_contact(consumer_number: str, portal_number: str) -> bool:
    """Read once per request or batch (`cached_singletons`) for each pair: a conversation's
    replies in one batch ask once; adding or removing the pair here reads it again."""
    return cached(
        ("do_not_contact", consumer_number, portal_number),
        lambda: DoNotContact.objects.filter(consumer_number=consumer_number, portal_number=portal_number).exists(),
    )


def add_do_not_contact(*, consumer_number: str, portal_number: str, source: str) -> bool:
    """Returns True when the entry is new."""
    forget(("do_not_contact", consumer_number, portal_number))
    _, created = DoNotContact.objects.get_or_create(
        consumer_number=consumer_number, portal_number=portal_number, defaults={"source": source}
    )
    return created


def remove_do_not_contact(*, consumer_number: str, portal_number: str) -> bool:
    forget(("do_not_contact", consumer_number, portal_number))
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
    _check_size(body, media_urls)

    chat_settings = ChatSettings.load()
    now = timezone.now()
    info = count_segments(body)
    limited = bool(kind in LIMITED_KINDS and chat_settings.duplicate_limiter_enabled and body)
    # One transaction (the caller's, when there is one: no savepoint) for the row, its first
    # status event and, for a limited kind, the lock that makes the duplicate check and the
    # insert one step. Nothing raises inside it: SendRefused leaves the caller's transaction
    # usable (callers catch it and go on).
    with transaction.atomic(savepoint=False):
        portal_number = _portal_number(from_number, lock=limited)
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
        refused = _queue_checked(message, chat_settings, now, limited=limited)
    if refused:
        raise SendRefused(refused)
    return message


def _check_size(body: str, media_urls: list[str]) -> None:
    """SPEC S11 step 5: raises SendRefused for an empty message, or one too long for the provider."""
    if not body.strip() and not media_urls:
        raise SendRefused("message is required")
    if len(body) > MAX_BODY_CHARS:
        raise SendRefused(f"message exceeds maximum number of characters by {len(body) - MAX_BODY_CHARS}")
    if len(media_urls) > MAX_MEDIA_ITEMS:
        raise SendRefused(f"at most {MAX_MEDIA_ITEMS} media items can be sent in one message")


def _portal_number(number: str, *, lock: bool) -> PhoneNumber | None:
    """The portal's number row; locked for the duplicate limiter (SPEC S11 step 2), so two sends
    of the same text through one number run their check-then-insert one after the other.
    FOR NO KEY UPDATE: it does not block the inserts of other messages that point at the row.
    SQLite ignores it, and needs nothing more: its transactions take the write lock at BEGIN."""
    numbers = PhoneNumber.objects.filter(number=number)
    if lock:
        return numbers.select_for_update(no_key=connection.features.has_select_for_no_key_update).first()
    return cached(("portal_number", number), numbers.first)  # once per request or batch


SUPPRESSED_DETAIL = "Recipient is on the do-not-contact list."


def _admission(
    message: OutboundMessage, chat_settings: ChatSettings, now: dt.datetime, *, opted_out: bool, duplicate=None
) -> tuple[str, str]:
    """The admission rule of the pipeline (SPEC S11), written once for `queue_sms`,
    `queue_sms_many` and `admit_pending`: do-not-contact, then the duplicate limiter
    (`duplicate`, a check to call, for the kinds it applies to), then quiet hours for proactive
    messages, else queued. Sets the fields the outcome needs (when it is next due, its lease,
    its expiry) and returns the status the message goes to and the detail of that change; the
    caller saves and records it its own way (one row, a row it holds, or a bulk insert)."""
    to, from_number = message.to_number, message.from_number
    if not message.bypass_do_not_contact and opted_out:
        message.error_message = SUPPRESSED_DETAIL
        log.info("outbound suppressed: to=%s from=%s (do not contact)", to, from_number)
        return MessageStatus.SUPPRESSED, SUPPRESSED_DETAIL
    if duplicate is not None and duplicate():
        return MessageStatus.REFUSED, DUPLICATE_MESSAGE_ERROR
    if message.proactive:
        opens = next_send_time(to, now, chat_settings.quiet_hours_start, chat_settings.quiet_hours_end)
        if opens > now:
            message.next_attempt_at = opens
            message.expires_at = message.expires_at or opens + HELD_MESSAGE_LIFETIME
            return MessageStatus.HELD, f"Quiet hours: goes out at {opens.isoformat()}."
    message.next_attempt_at = now
    message.lease_until = now + ENQUEUE_GRACE
    return MessageStatus.QUEUED, ""


def _queue_checked(message: OutboundMessage, chat_settings: ChatSettings, now: dt.datetime, *, limited: bool) -> str:
    """The checks of queue_sms on an unsaved message, which is saved in the status they lead to.
    Returns the refusal's text, else ""."""
    status, detail = _admission(
        message,
        chat_settings,
        now,
        opted_out=is_do_not_contact(message.to_number, message.from_number),
        duplicate=(lambda: _is_duplicate(message, chat_settings, now)) if limited else None,
    )
    if status == MessageStatus.REFUSED:
        return detail  # nothing is saved: the caller raises SendRefused
    message.status = status
    message.save()
    _record(message, status, detail=detail)
    if status == MessageStatus.QUEUED:
        enqueue_send(message)
    return ""


def _is_duplicate(message: OutboundMessage, chat_settings: ChatSettings, now: dt.datetime) -> bool:
    """The same body to the same number from the same number inside the window. Only a copy that
    went out, or still may, counts: one never sent (suppressed, refused, failed, expired) does
    not. For a message being admitted (itself `pending`), the other pending ones do not count
    either: they are admitted in order, and the first admitted is the one that counts."""
    since = now - dt.timedelta(minutes=chat_settings.duplicate_window_minutes)
    earlier = OutboundMessage.objects.filter(
        to_number=message.to_number, from_number=message.from_number, body=message.body, created_at__gte=since
    )
    if message.pk:
        earlier = earlier.exclude(pk=message.pk).exclude(status__in=[*NEVER_SENT, MessageStatus.PENDING])
    else:
        earlier = earlier.exclude(status__in=NEVER_SENT)
    return earlier.exists()


# Replies of one batch go to the task queue in tasks of at most this many messages; one
# recipient's replies always in the same task, in the order they were queued.
SEND_TASK_SIZE = 25
SEND_ONE = "sms.tasks.send_message"
SEND_MANY = "sms.tasks.send_messages"


def enqueue_send(message: OutboundMessage) -> None:
    """Hand the message to the send task after commit, with its lease as the task's token. An
    enqueue that fails (the broker is down) never fails the caller: it is logged, and the sweeper
    sends the message when the lease runs out."""
    enqueue_sends([message])


def enqueue_sends(messages: list[OutboundMessage]) -> None:
    """`enqueue_send` for many messages: after commit, one trip to the broker and few tasks
    (`send_tasks`) instead of one per message."""
    _sends.add([(message.pk, message.lease_until, message.to_number) for message in messages])


def batched_sends():
    """Enqueue the sends of everything committed inside the block together when it ends: for
    work that commits many replies at once, like a batch of inbound texts."""
    return _sends.collecting()


def send_tasks(jobs: list[tuple]) -> list[list[tuple]]:
    """Split send jobs (id, lease, recipient) into tasks of at most SEND_TASK_SIZE: each
    recipient's jobs stay together and in order, so one task sends them one after the other."""
    by_recipient: dict[str, list[tuple]] = {}
    for job in jobs:
        by_recipient.setdefault(job[2], []).append(job)
    tasks: list[list[tuple]] = [[]]
    for group in by_recipient.values():
        if tasks[-1] and len(tasks[-1]) + len(group) > SEND_TASK_SIZE:
            tasks.append([])
        tasks[-1].extend(group)
    return [task for task in tasks if task]


def _enqueue_jobs(jobs: list[tuple]) -> None:
    try:
        broker = _OneTrip(_broker())
    except Exception:  # noqa: BLE001 — each enqueue below tries (and logs) on its own
        broker = None
    for task in send_tasks(jobs):
        _enqueue_task([(pk, lease) for pk, lease, _ in task], broker=broker)
    if broker is not None:
        try:
            broker.flush()
        except Exception:  # noqa: BLE001 — whatever the broker raises, the sweeper catches up
            log.exception(
                "%d send jobs not enqueued (ids %s…); the sweeper sends them after %ss",
                len(jobs), jobs[0][0], int(ENQUEUE_GRACE.total_seconds()),
            )


_brokers = threading.local()


def _broker():
    """The process's django-q2 broker, one per thread: django-q2 builds a new one (a new Redis
    connection) for every task unless given one."""
    from django_q.brokers import get_broker

    if getattr(_brokers, "broker", None) is None:
        _brokers.broker = get_broker()
    return _brokers.broker


class _OneTrip:
    """A django-q2 broker that keeps the tasks `async_task` hands it and pushes them together
    when flushed: one pipelined round trip to Redis, or one INSERT with the ORM broker. Other
    brokers get them one by one."""

    def __init__(self, broker):
        self.broker = broker
        self.list_key = broker.list_key
        self.tasks: list = []

    def enqueue(self, task) -> None:
        self.tasks.append(task)

    def flush(self) -> None:
        from django_q.brokers.orm import ORM
        from django_q.brokers.redis_broker import Redis
        from django_q.conf import Conf
        from django_q.models import OrmQ

        tasks, self.tasks = self.tasks, []
        if not tasks:
            return
        if isinstance(self.broker, Redis):
            pipe = self.broker.connection.pipeline(transaction=False)
            for task in tasks:
                pipe.rpush(self.list_key, task)
            pipe.execute()
        elif isinstance(self.broker, ORM):
            now = timezone.now()  # as ORM.enqueue writes them: free to take at once
            key = self.list_key or Conf.CLUSTER_NAME
            self.broker.get_connection().bulk_create([OrmQ(key=key, payload=task, lock=now) for task in tasks])
        else:
            for task in tasks:
                self.broker.enqueue(task)


_sends = AfterCommitBatch("tern_send_batch", _enqueue_jobs)


def _enqueue_task(jobs: list[tuple[int, dt.datetime | None]], *, broker=None) -> None:
    from django_q.tasks import async_task

    try:
        # save=False: a successful send keeps no result row (failures are still kept).
        if len(jobs) == 1:
            pk, lease = jobs[0]
            async_task(SEND_ONE, pk, lease, task_name=f"send-sms-{pk}", save=False, broker=broker)
        else:
            async_task(SEND_MANY, jobs, task_name=f"send-sms-{jobs[0][0]}+{len(jobs) - 1}", save=False, broker=broker)
    except Exception:  # noqa: BLE001 — whatever the broker raises, the sweeper catches up
        log.exception(
            "send task not enqueued: id=%s; the sweeper sends it after %ss",
            ",".join(str(pk) for pk, _ in jobs), int(ENQUEUE_GRACE.total_seconds()),
        )


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
    _announce(message, status, error_code=error_code)


def _announce(message: OutboundMessage, status: str, *, error_code: str = "") -> None:
    """A status change, told to the event webhooks and to the message's notify group."""
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
    """The provider took the message: save its sid (the send is over: no next try, no lease),
    then apply `statuses` (what the provider answered, or — the local provider — reports at
    once) and any callback that arrived before the sid was saved. One transaction, one row
    lock, and only when there is a status to apply."""
    OutboundMessage.objects.filter(pk=message_id).update(
        provider_sid=provider_sid,
        error_code="",
        next_attempt_at=None,
        lease_until=None,
        attempt_started_at=None,
        updated_at=timezone.now(),
    )
    # An answer of "queued" (or "accepted") is where the message already is: nothing to apply.
    forward = [
        status for status in statuses
        if STATUS_RANK.get(PROVIDER_STATUS_MAP.get(status, status), 0) > STATUS_RANK[MessageStatus.QUEUED]
    ]
    apply_pending_statuses(provider_sid, forward)


def apply_pending_statuses(provider_sid: str, statuses: list[str] | tuple[str, ...] = ()) -> bool:
    """Apply `statuses` and the kept early callbacks of `provider_sid` to its message, in order
    (a status still never moves backwards), and forget those callbacks."""
    early = list(PendingProviderStatus.objects.filter(provider_sid=provider_sid)) if provider_sid else []
    if not statuses and not early:
        return False
    changed = False
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().filter(provider_sid=provider_sid).first()
        if message is None:
            return False
        for status in statuses:
            changed |= set_status(message, status, source="provider")
        if early:
            # Read again under the message's lock: another applier may have taken them already.
            for callback in PendingProviderStatus.objects.filter(provider_sid=provider_sid):
                changed |= set_status(
                    message, callback.status, error_code=callback.error_code, detail=callback.detail, source="provider"
                )
            PendingProviderStatus.objects.filter(provider_sid=provider_sid).delete()
    return changed


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


def admit_pending(message: OutboundMessage) -> str:
    """Put a message created `pending` (a session-less request's, made up front so its status
    can be shown at once) through the checks `queue_sms` makes — expiry, then `_admission` — and
    schedule its sending. The caller holds the row lock. Returns the status it ends in."""
    chat_settings = ChatSettings.load()
    now = timezone.now()
    if message.status != MessageStatus.PENDING:
        return message.status
    if message.expires_at and message.expires_at <= now:
        set_status(message, MessageStatus.EXPIRED, detail="Not sent before it expired.")
        return message.status

    def duplicate() -> bool:
        _portal_number(message.from_number, lock=True)  # the duplicate limiter's lock, as in queue_sms
        return _is_duplicate(message, chat_settings, now)

    limited = message.kind in LIMITED_KINDS and chat_settings.duplicate_limiter_enabled and message.body
    status, detail = _admission(
        message,
        chat_settings,
        now,
        opted_out=is_do_not_contact(message.to_number, message.from_number),
        duplicate=duplicate if limited else None,
    )
    if status in (MessageStatus.HELD, MessageStatus.QUEUED):
        message.save(update_fields=["next_attempt_at", "lease_until", "expires_at", "updated_at"])
    set_status(message, status, detail=detail)
    if status == MessageStatus.QUEUED:
        enqueue_send(message)
    return message.status


# ---------------------------------------------------------------------------------------------
# Many messages at once


def queue_sms_many(requests: list[dict]) -> list[OutboundMessage]:
    """`queue_sms` for many messages at once, for work that texts many consumers in one go (the
    chat timers' sweeper expiring a batch of chats). Each request holds queue_sms's keyword
    arguments, and may hold the sending `portal_number` row when the caller has it at hand (it
    is not looked up again). The same checks in the same order, with the same outcomes, at a
    cost that does not grow with the number of messages: one query for the portal numbers not
    given, one for the do-not-contact list, one insert for the messages and one for their first status events, and
    one after-commit enqueue of all their send tasks. Kinds the duplicate limiter applies to go
    through `queue_sms` one by one (its check and insert are one locked step per number).
    Returns the messages in the order asked (the limited ones are made last). Raises SendRefused
    when one of them is refused: for its size before anything is saved; as a duplicate after the
    others were, so a caller that goes on rolls its savepoint back."""
    chat_settings = ChatSettings.load()
    now = timezone.now()
    requests = [
        {**request, "body": request.get("body") or "", "media_urls": list(request.get("media_urls") or [])}
        for request in requests
    ]
    for request in requests:
        _check_size(request["body"], request["media_urls"])
    limited = {
        index for index, request in enumerate(requests)
        if request.get("kind", "system") in LIMITED_KINDS and chat_settings.duplicate_limiter_enabled and request["body"]
    }
    plain = [request for index, request in enumerate(requests) if index not in limited]
    numbers = {
        request["portal_number"].number: request["portal_number"] for request in plain if "portal_number" in request
    }
    unknown = {request["from_number"] for request in plain} - set(numbers)
    if unknown:
        numbers.update((number.number, number) for number in PhoneNumber.objects.filter(number__in=unknown))
    blocked = set(
        DoNotContact.objects.filter(
            consumer_number__in={request["to"] for request in plain},
            portal_number__in={request["from_number"] for request in plain},
        ).values_list("consumer_number", "portal_number")
    ) if plain else set()

    messages: list[OutboundMessage] = []
    details: list[str] = []
    for request in plain:
        to, from_number = request["to"], request["from_number"]
        info = count_segments(request["body"])
        message = OutboundMessage(
            to_number=to,
            from_number=from_number,
            portal_number=numbers.get(from_number),
            body=request["body"],
            media_urls=request["media_urls"],
            kind=request.get("kind", "system"),
            proactive=request.get("proactive", False),
            encoding=info.encoding,
            segments=info.segments,
            notify_group=request.get("notify_group", ""),
            batch=request.get("batch", ""),
            expires_at=request.get("expires_at"),
            bypass_do_not_contact=request.get("ignore_do_not_contact", False),
        )
        message.status, detail = _admission(message, chat_settings, now, opted_out=(to, from_number) in blocked)
        messages.append(message)
        details.append(detail)
    if messages:
        OutboundMessage.objects.bulk_create(messages)
        MessageStatusEvent.objects.bulk_create(
            [
                MessageStatusEvent(message=message, status=message.status, detail=detail[:500], source="portal")
                for message, detail in zip(messages, details)
            ]
        )
        for message in messages:
            _announce(message, message.status)
        enqueue_sends([message for message in messages if message.status == MessageStatus.QUEUED])

    made = iter(messages)
    return [
        queue_sms(**{key: value for key, value in request.items() if key != "portal_number"})
        if index in limited else next(made)
        for index, request in enumerate(requests)
    ]
