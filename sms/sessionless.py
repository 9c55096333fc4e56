"""Session-less SMS (SPEC A2): one request texts up to 100 recipients up to 5 messages each,
with no chat and no CRM record.

The request is checked and its messages are stored at once, `pending`, so its status can be
shown from the first second; the sending is django-q2 work (`dispatch`) that admits the pending
messages through the outbound pipeline at no more than 300 a minute across every worker (the
shared limiter of sms/ratelimit.py). What the limiter holds back waits with a `next_attempt_at`
for the sweeper (`sweep`); whatever is unsent two hours after the request expires."""
from __future__ import annotations

import datetime as dt
import logging
import secrets

from django.db import transaction
from django.utils import timezone

from portal.models import ChatSettings
from sms import ratelimit
from sms.models import MessageStatus, NumberUsage, OutboundMessage, PhoneNumber, SessionlessRequest
from sms.numbers import is_us_number, parse_e164, validate_portal_number
from sms.pipeline import admit_pending
from sms.statuses import set_status
from sms.segments import count_segments

log = logging.getLogger(__name__)

KIND = "sessionless"
MAX_RECIPIENTS = 100
MAX_MESSAGES = 5
MAX_MESSAGE_CHARS = 320
PER_MINUTE = 300
LIFETIME = dt.timedelta(hours=2)
# One limiter for every session-less request of the portal, whichever worker sends it.
LIMIT_KEY = "sessionless"
DISPATCH_CHUNK = 50


class SessionlessError(Exception):
    """A refused request, with the sentence the API answers."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _check_from(value) -> PhoneNumber:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise SessionlessError("from_phone is required")
    from_phone = _text(value)
    try:
        validate_portal_number(from_phone)
    except Exception:  # noqa: BLE001 — a ValidationError: any malformed value
        raise SessionlessError("from_phone is invalid") from None
    if not is_us_number(from_phone):
        raise SessionlessError("from_phone must be a US phone number")
    number = PhoneNumber.objects.verified().filter(number=from_phone, usage=NumberUsage.SMS_CHAT).first()
    if number is None:
        raise SessionlessError("from_phone is not a verified SMS number of this portal")
    return number


def _check_recipients(value, chat_settings: ChatSettings) -> list[str]:
    if value is None or value == [] or value == "":
        raise SessionlessError("to_phones is required")
    if not isinstance(value, list):
        raise SessionlessError("to_phones must be a list of phone numbers")
    recipients: list[str] = []
    for item in value[: MAX_RECIPIENTS * 10]:
        phone = _text(item)
        if parse_e164(phone) is None:
            raise SessionlessError(f"to_phones contains an invalid phone number: {str(item)[:40]}")
        if not chat_settings.api_non_us_numbers_allowed and not is_us_number(phone):
            raise SessionlessError("Non US phone number service is not enabled")
        if phone not in recipients:
            recipients.append(phone)
    if len(value) > MAX_RECIPIENTS * 10 or len(recipients) > MAX_RECIPIENTS:
        raise SessionlessError(f"to_phones can have at most {MAX_RECIPIENTS} phone numbers")
    return recipients


def _check_messages(value) -> list[str]:
    if value is None or value == [] or value == "":
        raise SessionlessError("messages is required")
    if not isinstance(value, list):
        raise SessionlessError("messages must be a list of texts")
    if len(value) > MAX_MESSAGES:
        raise SessionlessError(f"messages can have at most {MAX_MESSAGES} messages")
    texts = []
    for index, item in enumerate(value, 1):
        text = _text(item)
        if not text:
            raise SessionlessError(f"message {index} is empty")
        if len(text) > MAX_MESSAGE_CHARS:
            raise SessionlessError(
                f"message {index} exceeds maximum number of characters by {len(text) - MAX_MESSAGE_CHARS}"
            )
        texts.append(text)
    return texts


def create_request(*, from_phone, to_phones, messages, credential=None) -> SessionlessRequest:
    """Check a request (SessionlessError with the answer's sentence), store it and its messages
    as `pending`, and start the sending after commit."""
    chat_settings = ChatSettings.load()
    if not chat_settings.outbound_sms_enabled:
        raise SessionlessError("Outbound SMS service is not enabled")
    number = _check_from(from_phone)
    recipients = _check_recipients(to_phones, chat_settings)
    texts = _check_messages(messages)
    now = timezone.now()
    with transaction.atomic():
        request = SessionlessRequest.objects.create(
            request_id=f"slr_{secrets.token_hex(12)}",
            from_number=number.number,
            to_numbers=recipients,
            messages=texts,
            credential=credential,
            expires_at=now + LIFETIME,
        )
        segments = [count_segments(text) for text in texts]
        OutboundMessage.objects.bulk_create(
            [
                OutboundMessage(
                    to_number=phone,
                    from_number=number.number,
                    portal_number=number,
                    body=text,
                    kind=KIND,
                    proactive=True,
                    encoding=info.encoding,
                    segments=info.segments,
                    status=MessageStatus.PENDING,
                    batch=request.request_id,
                    next_attempt_at=now,
                    expires_at=request.expires_at,
                )
                for phone in recipients
                for text, info in zip(texts, segments)
            ]
        )
        request_id = request.request_id
        transaction.on_commit(lambda: _enqueue_dispatch(request_id))
    log.info("session-less request %s: %s recipients × %s messages", request_id, len(recipients), len(texts))
    return request


def _enqueue_dispatch(request_id: str) -> None:
    from django_q.tasks import async_task

    async_task("sms.sessionless.dispatch", request_id, task_name=f"sessionless-{request_id}")


def dispatch(request_id: str) -> int:
    """Admit the request's pending messages, oldest first, while the shared limiter allows
    (no more than 300 in any minute, across every worker); when it does not, the rest wait until
    the oldest admissions have left the minute.
    Safe to run twice and in parallel (each message is taken under its row lock). Returns how
    many messages were admitted."""
    admitted = 0
    while True:
        rows = list(
            OutboundMessage.objects.filter(batch=request_id, kind=KIND, status=MessageStatus.PENDING)
            .order_by("pk")
            .values_list("pk", "expires_at")[:DISPATCH_CHUNK]
        )
        if not rows:
            return admitted
        for pk, expires_at in rows:
            now = timezone.now()
            # An expired message takes no place in the pace; admit_pending expires it.
            if not (expires_at and expires_at <= now):
                wait = ratelimit.take_sliding(LIMIT_KEY, limit=PER_MINUTE, period=60)
                if wait:
                    OutboundMessage.objects.filter(batch=request_id, kind=KIND, status=MessageStatus.PENDING).update(
                        next_attempt_at=now + dt.timedelta(seconds=wait)
                    )
                    return admitted
            with transaction.atomic():
                message = (
                    OutboundMessage.objects.select_for_update(skip_locked=True)
                    .filter(pk=pk, status=MessageStatus.PENDING)
                    .first()
                )
                if message is not None and admit_pending(message) != MessageStatus.EXPIRED:
                    admitted += 1


def sweep(now: dt.datetime | None = None) -> int:
    """Expire pending session-less messages past their two hours and dispatch the requests whose
    wait for the limiter is over. Run with the other sweepers; returns messages admitted."""
    now = now or timezone.now()
    with transaction.atomic():
        for message in OutboundMessage.objects.select_for_update(skip_locked=True).filter(
            kind=KIND, status=MessageStatus.PENDING, expires_at__lte=now
        )[:500]:
            set_status(message, MessageStatus.EXPIRED, detail="Not sent within two hours of the request.")
    batches = list(
        OutboundMessage.objects.filter(kind=KIND, status=MessageStatus.PENDING, next_attempt_at__lte=now)
        .order_by("batch")
        .values_list("batch", flat=True)
        .distinct()
    )
    return sum(dispatch(batch) for batch in batches)


def request_status(request: SessionlessRequest) -> dict:
    """Progress of a request: counts by status and each message's status."""
    rows = list(
        OutboundMessage.objects.filter(batch=request.request_id, kind=KIND)
        .order_by("pk")
        .values("pk", "to_number", "body", "status", "error_code", "error_message", "updated_at")
    )
    counts = {status: 0 for status in MessageStatus.values}
    positions: dict[str, int] = {}
    messages = []
    for row in rows:
        counts[row["status"]] += 1
        index = positions.get(row["to_number"], 0)
        positions[row["to_number"]] = index + 1
        messages.append(
            {
                "id": row["pk"],
                "to_phone": row["to_number"],
                "message_index": index,
                "body": row["body"],
                "status": row["status"],
                "error_code": row["error_code"],
                "error_message": row["error_message"],
                "updated_at": row["updated_at"],
            }
        )
    unsent = {MessageStatus.PENDING, MessageStatus.HELD, MessageStatus.QUEUED, MessageStatus.SENDING}
    return {
        "request_id": request.request_id,
        "from_phone": request.from_number,
        "created_at": request.created_at,
        "expires_at": request.expires_at,
        "total": len(rows),
        "done": not any(counts[status] for status in unsent),
        "counts": counts,
        "messages": messages,
    }
