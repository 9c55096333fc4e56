"""The outbound pipeline (SPEC S11): every SMS the portal sends goes through `queue_sms`.

Checks, in order: do-not-contact (recorded as suppressed, never sent), the duplicate limiter,
quiet hours for proactive messages (held), body and media limits with the segment count; then
the send is enqueued as a django-q2 task after commit. The sending limits of the number are
applied by the task (sms/tasks.py), so every worker process obeys them.

Nothing is lost: a queued message is due (`next_attempt_at`) from the moment it is made, and the
task queue holds it only for a grace period (sms/send_queue.py); an enqueue that fails is logged
and the outbound sweeper sends the message once the grace is over. Nothing is sent twice: the
task claims the message before it calls the provider (sms/tasks.py). Status changes:
sms/statuses.py."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging

from django.db import connection, transaction
from django.utils import timezone

from portal.models import ChatSettings
from portal.singletons import cached, caching, forget, known
from sms import consent
from sms.models import (
    ConsentKind,
    ConsentSource,
    DoNotContact,
    MessageStatus,
    MessageStatusEvent,
    OutboundMessage,
    PhoneNumber,
)
from sms.quiet_hours import quiet_hours_for
from sms.segments import MAX_BODY_CHARS, MAX_MEDIA_ITEMS, count_segments
from sms.send_queue import ENQUEUE_GRACE, enqueue_send, enqueue_sends
from sms.statuses import announce_status, insert_status_events, record_status, set_status

log = logging.getLogger(__name__)

DUPLICATE_MESSAGE_ERROR = "error.platform.message-limiter.duplicate-message-sent"
HELD_MESSAGE_LIFETIME = dt.timedelta(hours=24)

# Kinds the duplicate limiter applies to. System replies (menus, confirmations, "invalid
# choice") answer the consumer's own texts, so repeating them is expected.
LIMITED_KINDS = {"agent", "api", "sessionless", "blending"}



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


def read_do_not_contact(pairs) -> None:
    """Read the do-not-contact entries of many (consumer, portal number) pairs in one query into
    the running `cached_singletons()` block, so that `is_do_not_contact` asks nothing more for
    them (a send task's replies). Outside a block it reads nothing."""
    pairs = {pair for pair in pairs if not known(("do_not_contact", *pair))}
    if not pairs or not caching():
        return
    listed = set(
        DoNotContact.objects.filter(
            consumer_number__in={c for c, _ in pairs}, portal_number__in={p for _, p in pairs}
        ).values_list("consumer_number", "portal_number")
    )
    for consumer_number, portal_number in pairs:
        cached(("do_not_contact", consumer_number, portal_number), lambda pair=(consumer_number, portal_number): pair in listed)


def add_do_not_contact(
    *, consumer_number: str, portal_number: str, source: str, text: str = "", message_sid: str = "", by=None, reason: str = ""
) -> bool:
    """Put the pair on the do-not-contact list and write the consent ledger. Returns True when
    the entry is new. A consumer's own STOP is recorded every time (it is their words); an
    entry that already existed is not recorded again for the other sources."""
    forget(("do_not_contact", consumer_number, portal_number))
    _, created = DoNotContact.objects.get_or_create(
        consumer_number=consumer_number, portal_number=portal_number, defaults={"source": source}
    )
    if created or source == ConsentSource.STOP:
        consent.record(
            kind=ConsentKind.OPT_OUT, consumer_number=consumer_number, portal_number=portal_number, source=source,
            text=text, message_sid=message_sid, by=by, reason=reason,
        )
    return created


def remove_do_not_contact(
    *, consumer_number: str, portal_number: str, source: str = ConsentSource.STOP, text: str = "", message_sid: str = "",
    by=None, reason: str = "",
) -> bool:
    """Take the pair off the list (the consumer's START, or an admin's clearing with a reason)
    and write the consent ledger. Returns True when an entry was removed."""
    forget(("do_not_contact", consumer_number, portal_number))
    deleted, _ = DoNotContact.objects.filter(consumer_number=consumer_number, portal_number=portal_number).delete()
    if deleted or source == ConsentSource.STOP:
        consent.record(
            kind=ConsentKind.OPT_IN, consumer_number=consumer_number, portal_number=portal_number, source=source,
            text=text, message_sid=message_sid, by=by, reason=reason,
        )
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
    portal_number: PhoneNumber | None = None,
) -> OutboundMessage:
    """Record an outbound message and schedule its sending. Raises SendRefused for the
    duplicate limiter and the size limits; a do-not-contact recipient gives a `suppressed` row.
    `portal_number`: the row of `from_number` when the caller has it at hand (not read again)."""
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
        if limited:
            _lock_for_duplicates(to, from_number)
        if portal_number is None or portal_number.number != from_number:
            portal_number = _portal_number(from_number)
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


def _portal_number(number: str) -> PhoneNumber | None:
    """The portal's number row, read once per request or batch."""
    return cached(("portal_number", number), PhoneNumber.objects.filter(number=number).first)


def _lock_for_duplicates(to: str, from_number: str) -> None:
    """The duplicate limiter's lock (SPEC S11 step 2): two sends between the same two numbers run
    their check-then-insert one after the other, the second waiting for the first's transaction
    to end; sends to other consumers, through the same portal number or not, do not wait for it.
    On PostgreSQL a transaction-scoped advisory lock keyed by the pair (a hash collision only
    makes two pairs wait for each other). SQLite needs nothing more: its transactions take the
    write lock at BEGIN."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(f"duplicate-limiter {from_number} {to}".encode(), digest_size=8).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)])


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
        decision = quiet_hours_for(to, now, chat_settings)
        if decision.is_held(now):
            message.next_attempt_at = decision.at
            message.expires_at = message.expires_at or decision.at + HELD_MESSAGE_LIFETIME
            message.error_message = decision.reason[:500]
            return MessageStatus.HELD, decision.reason
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
    record_status(message, status, detail=detail)
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
        _lock_for_duplicates(message.to_number, message.from_number)  # as in queue_sms
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
    chat timers' sweeper expiring a batch of chats, a batch of inbound texts' held replies).
    Each request holds queue_sms's keyword arguments, and may hold the sending `portal_number`
    row when the caller has it at hand (it is not looked up again). The same checks in the same
    order, with the same outcomes, at a cost that does not grow with the number of messages: one
    query for the portal numbers not given, one for the do-not-contact list, one insert for the
    messages and one for their first status events, and one after-commit enqueue of all their
    send tasks. Kinds the duplicate limiter applies to go through `queue_sms` one by one (its
    check and insert are one locked step per pair of numbers).
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
    numbers, blocked = _numbers_and_opt_outs(plain)

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
    _save_admitted(messages, details)

    made = iter(messages)
    return [
        queue_sms(**{key: value for key, value in request.items() if key != "portal_number"})
        if index in limited else next(made)
        for index, request in enumerate(requests)
    ]


def _numbers_and_opt_outs(requests: list[dict]) -> tuple[dict[str, PhoneNumber], set[tuple[str, str]]]:
    """For a batch: the sending numbers' rows by number (those given are not looked up again),
    and the (consumer, portal number) pairs on the do-not-contact list. Two queries at most."""
    numbers = {
        request["portal_number"].number: request["portal_number"] for request in requests if "portal_number" in request
    }
    unknown = {request["from_number"] for request in requests} - set(numbers)
    if unknown:
        numbers.update((number.number, number) for number in PhoneNumber.objects.filter(number__in=unknown))
    if not requests:
        return numbers, set()
    pairs = {(request["to"], request["from_number"]) for request in requests}
    if caching():  # what the block read already (a batch of inbound texts has) is not read again
        read_do_not_contact(pairs)
        return numbers, {pair for pair in pairs if is_do_not_contact(*pair)}
    blocked = set(
        DoNotContact.objects.filter(
            consumer_number__in={to for to, _ in pairs}, portal_number__in={from_ for _, from_ in pairs}
        ).values_list("consumer_number", "portal_number")
    )
    return numbers, blocked


def _save_admitted(messages: list[OutboundMessage], details: list[str]) -> None:
    """Insert a batch of admitted messages and their first status events, announce them and
    enqueue the queued ones' sends: a few statements for the whole batch."""
    if not messages:
        return
    OutboundMessage.objects.bulk_create(messages)
    insert_status_events(
        [
            MessageStatusEvent(message=message, status=message.status, detail=detail[:500], source="portal")
            for message, detail in zip(messages, details)
        ]
    )
    for message in messages:
        announce_status(message, message.status)
    enqueue_sends([message for message in messages if message.status == MessageStatus.QUEUED])
