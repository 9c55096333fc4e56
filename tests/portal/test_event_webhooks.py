"""Event webhooks (SPEC A5, C9): chat lifecycle and message status events are POSTed, after
commit, to the subscribers set up in the admin, signed as docs/webhooks.md says (checked here
with the verification snippet of that page, run as it is written), delivered by django-q2 with
retries and backoff, and every attempt is logged.

Subscribers are loopback HTTP servers started by the test (127.0.0.1, a free port)."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from django.urls import reverse

from chats import services
from chats.models import ChatStatus, FinishReason
from portal import event_webhooks
from portal.models import DeliveryLog, EventWebhook, WebhookEvent
from sms.pipeline import queue_sms
from tests.chats.conftest import (  # noqa: F401 — the conversation fixtures, used here too
    CONSUMER,
    PORTAL,
    alice,
    auth_token,
    bob,
    chat_settings,
    go_online,
    phone,
    support,
)
from tests.factories import make_sending_number
from tests.fakes.webhook_subscriber import Subscriber

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "whsec-test-0123456789"


def documented_verifier():
    """The first Python block of docs/webhooks.md, executed: what a subscriber would paste."""
    source = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(source, str(DOCS), "exec"), namespace)  # noqa: S102 — our own documentation
    return namespace["verify_tern_signature"]


@pytest.fixture
def subscriber():
    with Subscriber() as server:
        yield server


@pytest.fixture
def failing_twice():
    with Subscriber(answers=(500, 503, 204)) as server:
        yield server


def subscribe(url: str, *event_types: str, secret: str = SECRET) -> EventWebhook:
    hook = EventWebhook(url=url, signing_secret=secret, event_types=list(event_types or WebhookEvent.values))
    hook.full_clean()
    hook.save()
    return hook


def test_a_delivery_verifies_with_the_documented_snippet(subscriber, phone, alice, go_online):
    verify = documented_verifier()
    subscribe(subscriber.url, WebhookEvent.CHAT_CREATED)

    phone.text("Hi")

    assert len(subscriber.requests) == 1
    request = subscriber.requests[0]
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Tern-Event"] == "chat.created"
    assert verify(SECRET, headers["X-Tern-Timestamp"], request["body"], headers["X-Tern-Signature"])
    assert not verify("another-secret", headers["X-Tern-Timestamp"], request["body"], headers["X-Tern-Signature"])
    assert not verify(SECRET, headers["X-Tern-Timestamp"], request["body"] + b" ", headers["X-Tern-Signature"])
    assert not verify(SECRET, str(int(headers["X-Tern-Timestamp"]) - 3600), request["body"], headers["X-Tern-Signature"])
    event = json.loads(request["body"])
    assert event["type"] == "chat.created"
    assert event["data"]["chat"]["end_user_number"] == CONSUMER
    assert event["data"]["chat"]["outbound_number"] == PORTAL
    assert event["data"]["chat"]["status"] == "selecting"
    delivery = DeliveryLog.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert headers["X-Tern-Delivery"] == str(delivery.pk)


def test_chat_lifecycle_events_in_order(subscriber, phone, alice, bob, go_online, committed):
    subscribe(subscriber.url, "chat.created", "chat.assigned", "chat.transferred", "chat.finished")
    go_online(alice)
    go_online(bob)

    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    holder = chat.agent
    other = bob if holder == alice else alice
    committed(services.transfer_chat, agent=holder, chat=chat, to_agent=other)
    committed(services.end_chat, chat=chat, by="agent", reason=FinishReason.AGENT_ENDED, agent=other)

    events = subscriber.events()
    assert [e["type"] for e in events] == ["chat.created", "chat.assigned", "chat.transferred", "chat.finished"]
    assert {e["data"]["chat"]["id"] for e in events} == {chat.pk}
    assert events[1]["data"]["chat"]["agent_id"] == holder.pk
    assert events[2]["data"]["chat"]["agent_id"] == other.pk
    assert events[3]["data"]["chat"]["finish_reason"] == "agent_ended"
    assert events[3]["data"]["chat"]["status"] == ChatStatus.FINISHED


def test_message_status_changes_are_posted(db, subscriber, committed):
    subscribe(subscriber.url, WebhookEvent.MESSAGE_STATUS)
    make_sending_number(PORTAL)

    message = committed(queue_sms, to=CONSUMER, from_number=PORTAL, body="Hello", kind="agent", notify_group="chat.9")

    events = subscriber.events()
    assert [e["data"]["status"] for e in events] == ["queued", "sent", "delivered"]
    assert {e["data"]["sms_id"] for e in events} == {message.pk}
    assert events[0]["data"]["group"] == "chat.9"
    assert events[0]["data"]["to"] == CONSUMER


def test_only_subscribed_event_types_and_active_webhooks_are_sent(subscriber, phone):
    subscribe(subscriber.url, WebhookEvent.CHAT_FINISHED)
    inactive = subscribe(subscriber.url, WebhookEvent.CHAT_CREATED)
    inactive.is_active = False
    inactive.save()

    phone.text("Hi")

    assert subscriber.requests == []
    assert DeliveryLog.objects.count() == 0


def test_nothing_is_sent_for_a_change_that_is_rolled_back(db, subscriber, django_capture_on_commit_callbacks):
    subscribe(subscriber.url, WebhookEvent.CHAT_CREATED)

    with django_capture_on_commit_callbacks() as callbacks:
        event_webhooks.emit(WebhookEvent.CHAT_CREATED, {"chat": {"id": 1}})
    # The callbacks were captured, not run: that is what a rollback does to them.

    assert len(callbacks) == 1
    assert subscriber.requests == []
    assert DeliveryLog.objects.count() == 0


def test_a_failing_subscriber_is_retried_with_backoff_and_every_attempt_logged(
    failing_twice, phone, time_machine, committed
):
    time_machine.move_to(dt.datetime(2030, 3, 5, 15, 0, tzinfo=dt.timezone.utc), tick=False)
    subscribe(failing_twice.url, WebhookEvent.CHAT_CREATED)

    phone.text("Hi")

    delivery = DeliveryLog.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.next_attempt_at == dt.datetime(2030, 3, 5, 15, 0, 10, tzinfo=dt.timezone.utc)
    time_machine.shift(dt.timedelta(seconds=9))
    assert committed(event_webhooks.sweep_deliveries) == 0
    time_machine.shift(dt.timedelta(seconds=1))
    assert committed(event_webhooks.sweep_deliveries) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 2, 503)
    assert delivery.next_attempt_at == dt.datetime(2030, 3, 5, 15, 0, 30, tzinfo=dt.timezone.utc)
    time_machine.shift(dt.timedelta(seconds=20))
    committed(event_webhooks.sweep_deliveries)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 204)
    assert [attempt["status_code"] for attempt in delivery.history] == [500, 503, 204]
    assert len(failing_twice.requests) == 3
    assert len({r["headers"]["X-Tern-Delivery"] for r in failing_twice.requests}) == 1
    assert len({json.loads(r["body"])["id"] for r in failing_twice.requests}) == 1


def test_a_subscriber_that_never_answers_well_is_given_up_after_the_last_try(db, time_machine, committed):
    time_machine.move_to(dt.datetime(2030, 3, 5, 15, 0, tzinfo=dt.timezone.utc), tick=False)
    with Subscriber(answers=(410,)) as gone:
        subscribe(gone.url, WebhookEvent.CHAT_CREATED)
        committed(event_webhooks.emit, WebhookEvent.CHAT_CREATED, {"chat": {"id": 1}})
        for _ in range(event_webhooks.MAX_ATTEMPTS):
            time_machine.shift(dt.timedelta(seconds=event_webhooks.LONGEST_RETRY_SECONDS))
            committed(event_webhooks.sweep_deliveries)

    delivery = DeliveryLog.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", event_webhooks.MAX_ATTEMPTS)
    assert len(gone.requests) == event_webhooks.MAX_ATTEMPTS


def test_an_unreachable_subscriber_is_logged_with_the_error(db, committed):
    with Subscriber() as closed:
        url = closed.url
    subscribe(url, WebhookEvent.CHAT_CREATED)

    committed(event_webhooks.emit, WebhookEvent.CHAT_CREATED, {"chat": {"id": 1}})

    delivery = DeliveryLog.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "refused" in delivery.last_error.lower()


def test_a_delivery_is_sent_once_even_when_two_workers_take_it(db, subscriber, committed):
    subscribe(subscriber.url, WebhookEvent.CHAT_CREATED)
    committed(event_webhooks.emit, WebhookEvent.CHAT_CREATED, {"chat": {"id": 1}})
    delivery = DeliveryLog.objects.get()

    assert event_webhooks.deliver(delivery.pk) == "skipped"
    assert len(subscriber.requests) == 1


def test_the_admin_lists_deliveries_and_retries_one(admin_client, subscriber, committed, django_capture_on_commit_callbacks):
    with Subscriber(answers=(500,)) as down:
        hook = subscribe(down.url, WebhookEvent.CHAT_CREATED)
        committed(event_webhooks.emit, WebhookEvent.CHAT_CREATED, {"chat": {"id": 1}})
    delivery = DeliveryLog.objects.get()
    hook.url = subscriber.url
    hook.save()

    assert admin_client.get(reverse("admin:portal_deliverylog_changelist")).status_code == 200
    page = admin_client.get(reverse("admin:portal_deliverylog_change", args=[delivery.pk]))
    assert page.status_code == 200 and b"HTTP 500" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:portal_deliverylog_changelist"),
            {"action": "retry", "_selected_action": [delivery.pk]},
        )

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:portal_eventwebhook_changelist"), {"action": "send_test", "_selected_action": [hook.pk]}
        )
    assert subscriber.events()[-1]["type"] == "ping"
