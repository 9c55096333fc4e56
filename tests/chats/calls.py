"""Fixtures of the blended SMS tests (SPEC B1–B3): an in-call SMS number, wait-time and in-call SMS
switched on for the queue "Billing" of tests/chats/conftest.py, a caller's phone texting the
in-call number through the signed webhook, a standing clock, and a recorder of the events the
browser would hear. Test modules import the fixtures they use from here."""
from __future__ import annotations

import datetime as dt

import pytest
from channels.db import database_sync_to_async

from chats.calls import consent, lifecycle
from chats.models import Call, CallSource
from portal.models import BlendingMessages, InCallSmsSettings, OperationSettings
from sms.models import NumberUsage
from tests.chats.conftest import Phone
from tests.factories import make_number

IN_CALL = "+15550100003"
CALLER = "+15557654999"
OTHER_CALLER = "+15557654888"
UK_CALLER = "+447700900123"  # a UK mobile
START = dt.datetime(2025, 3, 3, 15, 0, tzinfo=dt.UTC)

CONSENT = "To send us details by text message while you wait, press 1. To keep waiting, press 2."
SMS_SENT = "We have sent you a text message. Please stay on the line."
INCORRECT = "Sorry, that was not a valid choice."
WAIT_TIME_SMS = "Reply to this message with details or photos about your call. An agent will see them."
CLOSING = "Thanks for contacting us. This text session has ended."
AFTER_SESSION = "This text session has ended. Please call us again if you need help."


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(START, tick=False)
    return time_machine


@pytest.fixture
def in_call_number(db):
    return make_number(IN_CALL, label="In-call SMS", usage=NumberUsage.IN_CALL, messages_per_second=100)


@pytest.fixture
def in_call_settings(db):
    settings = InCallSmsSettings.load()
    settings.in_call_sms_enabled = True
    settings.wait_time_sms_enabled = True
    settings.announcement_interval_seconds = 60
    settings.save()
    BlendingMessages.objects.get_or_create(settings=settings, language="en")
    return settings


@pytest.fixture
def blended(support, in_call_number, in_call_settings):
    """Billing takes wait-time SMS and in-call SMS; returns the queue."""
    billing = support.billing
    billing.wait_time_sms_enabled = True
    billing.in_call_sms_enabled = True
    billing.save()
    return billing


@pytest.fixture
def operation_settings(db):
    return OperationSettings.load()


@pytest.fixture
def new_call(blended, committed):
    """A caller entering Billing (by default through Twilio Voice)."""

    def make(call_sid: str = "CA0001", caller: str = CALLER, source: str = CallSource.TWILIO, queue=None, **kw) -> Call:
        return committed(
            lifecycle.queue_call, call_sid=call_sid, caller_number=caller, queue=queue or blended, source=source, **kw
        )

    return make


@pytest.fixture
def caller_phone(client, django_capture_on_commit_callbacks, in_call_number):
    """The caller's phone texting the in-call SMS number through the signed webhook."""
    return Phone(client, django_capture_on_commit_callbacks, number=CALLER, portal=IN_CALL)


@pytest.fixture
def heard(monkeypatch):
    """Every event published after commit, as (group, event), in order."""
    from chats import events

    published: list[tuple[str, dict]] = []
    real = events.publish_on_commit

    def record(group, event):
        published.append((group, event))
        real(group, event)

    monkeypatch.setattr(events, "publish_on_commit", record)
    return published


def ask(committed, call: Call, *, digit: str | None = None):
    """One consent round: the wait step (which must be the prompt), then the digit if given."""
    _, step = committed(consent.wait_step, call_sid=call.call_sid)
    assert step.action == "consent", step
    if digit is None:
        return step, None
    _, result = committed(consent.apply_digit, call_sid=call.call_sid, digit=digit)
    return step, result


def reload(call: Call) -> Call:
    return Call.objects.select_related("chat", "queue", "crm_record").get(pk=call.pk)


def _session_cookie(username: str) -> bytes:
    from django.conf import settings
    from django.test import Client

    client = Client()
    assert client.login(username=username, password="demo")
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def open_agent_socket(username: str):
    """A logged-in agent's /ws/agent/ socket through the real ASGI stack, past its hello."""
    from channels.testing import WebsocketCommunicator

    from portal.asgi import application

    cookie = await database_sync_to_async(_session_cookie)(username)
    socket = WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"cookie", cookie), (b"origin", b"http://localhost")]
    )
    connected, code = await socket.connect()
    assert connected, code
    assert (await socket.receive_json_from(timeout=2))["type"] == "hello"
    return socket
