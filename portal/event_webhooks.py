"""Event webhooks (SPEC A5, C9): chat lifecycle and message status events POSTed as JSON to the
subscribers an admin set up, signed with HMAC-SHA256, delivered by django-q2 with retries and
backoff, every attempt kept in a DeliveryLog.

The layers above only call `emit(event_type, data)` inside their transaction; nothing leaves
before commit. Each POST carries

    X-Tern-Event: chat.assigned
    X-Tern-Delivery: <delivery id>
    X-Tern-Timestamp: <unix seconds>
    X-Tern-Signature: sha256=<hex HMAC-SHA256(signing secret, timestamp + "." + body)>

docs/webhooks.md shows how a subscriber checks it."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.models import DeliveryLog, EventWebhook, WebhookEvent
from portal.singletons import cached, caching

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
MAX_ATTEMPTS = 8
FIRST_RETRY_SECONDS = 10
LONGEST_RETRY_SECONDS = 3600
# While one worker is delivering, nobody else takes the delivery (longer than the timeout).
LEASE_SECONDS = 60
SWEEP_BATCH = 100
USER_AGENT = "Tern-Webhooks/1"
EVENT_TYPES = frozenset(WebhookEvent.values)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def emit(event_type: str, data: dict) -> None:
    """Queue an event for every active subscriber of its type, after the caller's transaction
    commits (a rolled-back change is never announced)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event {event_type!r}")
    if caching() and not any(event_type in (hook.event_types or []) for hook in _active_webhooks()):
        return  # nobody subscribes: known without a query inside a cached block (a sweeper run)
    payload = {
        "id": uuid.uuid4().hex,
        "type": event_type,
        "created_at": timezone.now(),
        "data": data,
    }
    payload = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))  # JSON now, not at delivery
    transaction.on_commit(lambda: _fan_out(payload))


def _active_webhooks() -> list[EventWebhook]:
    """Read once per `cached_singletons()` block: work that emits many events, like the sweeper
    expiring a batch of chats, looks the subscribers up once, not twice per chat."""
    return cached(EventWebhook, lambda: list(EventWebhook.objects.filter(is_active=True)))


def _fan_out(payload: dict) -> list[int]:
    subscribers = [hook for hook in _active_webhooks() if payload["type"] in (hook.event_types or [])]
    if not subscribers:
        return []
    now = timezone.now()
    ids = []
    for hook in subscribers:
        delivery = DeliveryLog.objects.create(
            webhook=hook, event_id=payload["id"], event_type=payload["type"], payload=payload, next_attempt_at=now
        )
        ids.append(delivery.pk)
    for delivery_id in ids:
        _enqueue(delivery_id)
    return ids


def _enqueue(delivery_id: int) -> None:
    from django_q.tasks import async_task

    async_task("portal.event_webhooks.deliver", delivery_id, task_name=f"webhook-{delivery_id}")


def retry_delay(attempts: int) -> int:
    """Seconds before the next try: 10, 20, 40, … at most an hour."""
    return min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), LONGEST_RETRY_SECONDS)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a place to re-send a signed event to."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def deliver(delivery_id: int) -> str:
    """POST one delivery; on failure schedule the next try with backoff, or give up after
    MAX_ATTEMPTS. Safe to run twice: a delivery is taken with a lease."""
    now = timezone.now()
    taken = (
        DeliveryLog.objects.filter(pk=delivery_id, status=DeliveryLog.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .update(lease_until=now + dt.timedelta(seconds=LEASE_SECONDS))
    )
    if not taken:
        return "skipped"
    delivery = DeliveryLog.objects.select_related("webhook").get(pk=delivery_id)
    hook = delivery.webhook
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        hook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Tern-Event": delivery.event_type,
            "X-Tern-Delivery": str(delivery.pk),
            "X-Tern-Timestamp": timestamp,
            "X-Tern-Signature": sign(hook.signing_secret, timestamp, body),
        },
    )
    status_code, error = None, ""
    started = time.monotonic()
    try:
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            status_code = response.status
    except urllib.error.HTTPError as exc:
        status_code, error = exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = str(getattr(exc, "reason", exc)) or exc.__class__.__name__
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return _record_attempt(delivery_id, status_code=status_code, error=error, elapsed_ms=elapsed_ms)


def _record_attempt(delivery_id: int, *, status_code: int | None, error: str, elapsed_ms: int) -> str:
    now = timezone.now()
    ok = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        delivery = DeliveryLog.objects.select_for_update().get(pk=delivery_id)
        delivery.attempts += 1
        delivery.lease_until = None
        delivery.last_status_code = status_code
        delivery.last_error = error[:500]
        delivery.history = [
            *delivery.history,
            {"at": now.isoformat(), "status_code": status_code, "error": error[:200], "ms": elapsed_ms},
        ]
        if ok:
            delivery.status = DeliveryLog.Status.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            outcome = "delivered"
        elif delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = DeliveryLog.Status.FAILED
            delivery.next_attempt_at = None
            outcome = "failed"
        else:
            delivery.next_attempt_at = now + dt.timedelta(seconds=retry_delay(delivery.attempts))
            outcome = "retry"
        delivery.save()
    log_level = logging.INFO if ok else logging.WARNING
    log.log(
        log_level, "webhook %s %s to %s: attempt %s, %s %s",
        delivery.event_type, outcome, delivery.webhook_id, delivery.attempts, status_code, error,
    )
    return outcome


def sweep_deliveries(now: dt.datetime | None = None) -> int:
    """Send the deliveries whose next try is due (retries, and any whose task was lost). Run
    with the other sweepers; returns how many were handed to the task queue."""
    now = now or timezone.now()
    due = list(
        DeliveryLog.objects.filter(status=DeliveryLog.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for delivery_id in due:
        _enqueue(delivery_id)
    return len(due)


def retry_now(delivery: DeliveryLog) -> None:
    """The admin's "retry now": a failed or waiting delivery is tried again at once."""
    DeliveryLog.objects.filter(pk=delivery.pk).exclude(status=DeliveryLog.Status.DELIVERED).update(
        status=DeliveryLog.Status.PENDING, next_attempt_at=timezone.now()
    )
    transaction.on_commit(lambda: _enqueue(delivery.pk))


def send_test_event(webhook: EventWebhook) -> None:
    """The admin's "send a test event": a `ping` delivery to this subscriber only."""
    payload = json.loads(
        json.dumps(
            {"id": uuid.uuid4().hex, "type": "ping", "created_at": timezone.now(), "data": {"webhook_id": webhook.pk}},
            cls=DjangoJSONEncoder,
        )
    )
    delivery = DeliveryLog.objects.create(
        webhook=webhook, event_id=payload["id"], event_type="ping", payload=payload, next_attempt_at=timezone.now()
    )
    transaction.on_commit(lambda: _enqueue(delivery.pk))
