"""Numbers, texts and helpers of the blended SMS tests (SPEC B1–B3). Their fixtures (the in-call
SMS number, wait-time and in-call SMS switched on for "Billing", the caller's phone, a standing
clock, the events the browser would hear) are in tests/chats/conftest.py."""
from __future__ import annotations

import datetime as dt

from channels.db import database_sync_to_async

from chats.calls import consent
from chats.models import Call

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
