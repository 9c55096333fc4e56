"""Fixtures of the conversation tests (SPEC S1–S12).

A portal number on the menu queue "Support" with the leaves "Billing" (option 1, keywords BILLING
and INVOICE) and "Tech" (option 2, keyword TECH), each with its own system messages; agents
alice and bob on both leaves; and the consumer's `phone`, which texts the portal through the
real `POST /sms/twilio/inbound/` view with a valid X-Twilio-Signature and reads back what the
portal sent it.

Every request and every service call runs inside `django_capture_on_commit_callbacks(execute=True)`
(the `committed` fixture of tests/conftest.py, and `Phone.text`), so the work queued after
commit — the django-q2 send task, run inline because the test settings set Q_CLUSTER sync=True,
and assignment — happens before the test looks.

Last, the fixtures of the calls with wait-time and in-call SMS (SPEC B1–B3): an in-call SMS number,
both switched on for "Billing", a caller entering it (`new_call`), the caller's phone texting the
in-call number through the signed webhook, a standing clock, and a recorder of the events the
browser would hear."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from chats import assignment, services
from chats.calls import lifecycle
from chats.models import Call, CallSource, Chat, ChatStatus, Message
from portal import presence
from portal.models import AgentStatus, BlendingMessages, ChatSettings, InCallSmsSettings, OperationSettings
from sms.models import MessageStatus, NumberUsage, OutboundMessage
from tests.chats.calls import CALLER, IN_CALL, START
from tests.factories import (
    link_number,
    make_agent,
    make_number,
    make_queue,
    make_queue_messages,
    update_chat_settings,
)
from tests.webhooks import post_inbound

PORTAL = "+15550100001"
OUTBOUND = "+15550100002"
CONSUMER = "+15557654321"
OTHER_CONSUMER = "+15557650000"

GREETING = "Welcome to Acme support."
MENU = "Reply 1 for Billing, 2 for Tech."
BILLING_QUEUED = "Thanks! A billing agent will be with you shortly."
TECH_QUEUED = "Thanks! A tech agent will be with you shortly."
INVALID = "Sorry, that is not one of the options."
CHAT_ENDED = "This conversation has ended. Thank you!"
AFTER_HOURS = "We are closed right now. We will answer when we open again."


@pytest.fixture
def auth_token(settings):
    """The webhook checks X-Twilio-Signature against TWILIO_AUTH_TOKEN whichever provider sends;
    keep the fake Twilio's token when `twilio_settings` set it."""
    if not settings.TWILIO_AUTH_TOKEN:
        settings.TWILIO_AUTH_TOKEN = "test-auth-token-0123456789abcdef"
    if not settings.TWILIO_ACCOUNT_SID:
        settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.PUBLIC_BASE_URL = ""
    return settings.TWILIO_AUTH_TOKEN


@pytest.fixture
def chat_settings(db):
    return ChatSettings.load()


@pytest.fixture
def support(db, auth_token, chat_settings):
    number = make_number(PORTAL, label="Support line", messages_per_second=100)
    menu = make_queue("Support")
    billing = make_queue("Billing", parent=menu, position=1, menu_keywords="BILLING, INVOICE")
    tech = make_queue("Tech", parent=menu, position=2, menu_keywords="TECH")
    make_queue_messages(menu, greeting=GREETING, menu_prompt="Reply", invalid_choice=INVALID)
    make_queue_messages(
        billing,
        queued=BILLING_QUEUED,
        agent_joined="{agent} from Billing has joined the chat.",
        chat_ended=CHAT_ENDED,
        after_hours=AFTER_HOURS,
    )
    make_queue_messages(
        tech,
        queued=TECH_QUEUED,
        agent_joined="{agent} from Tech has joined the chat.",
        chat_ended=CHAT_ENDED,
        after_hours=AFTER_HOURS,
    )
    link_number(menu, number)
    return SimpleNamespace(number=number, menu=menu, billing=billing, tech=tech)


@pytest.fixture
def alice(support):
    agent = make_agent("alice", display_name="Alice", max_concurrent_chats=3)
    support.billing.agents.add(agent)
    support.tech.agents.add(agent)
    return agent


@pytest.fixture
def bob(support):
    agent = make_agent("bob", display_name="Bob", max_concurrent_chats=3)
    support.billing.agents.add(agent)
    support.tech.agents.add(agent)
    return agent


@pytest.fixture
def go_online(committed):
    """The agent opens the adapter (a live websocket, once it exists): offline → available, and
    assignment runs for the agent's queues."""

    def connect(agent):
        presence.agent_connected(agent=agent)
        committed(assignment.route_to_agent, agent=agent)
        agent.refresh_from_db()
        return agent

    return connect


class Phone:
    """The consumer's phone: texts go through the signed webhook; `new_texts()` reads what the
    portal sent since the last look (suppressed messages never reach a phone)."""

    def __init__(self, client, capture, number: str = CONSUMER, portal: str = PORTAL):
        self.client = client
        self.capture = capture
        self.number = number
        self.portal = portal
        self._last_seen = 0

    def text(self, body: str = "", *, to: str | None = None, status: int = 200, **params):
        with self.capture(execute=True):
            response = post_inbound(
                self.client, from_number=self.number, to_number=to or self.portal, body=body, **params
            )
        assert response.status_code == status, response.content
        return response

    def _received(self):
        return OutboundMessage.objects.filter(to_number=self.number).exclude(status=MessageStatus.SUPPRESSED)

    def inbox(self) -> list[str]:
        return list(self._received().order_by("pk").values_list("body", flat=True))

    def new_texts(self) -> list[str]:
        rows = list(self._received().filter(pk__gt=self._last_seen).order_by("pk").values_list("pk", "body"))
        if rows:
            self._last_seen = rows[-1][0]
        return [body for _, body in rows]

    def chat(self) -> Chat | None:
        """The consumer's newest chat with the portal number."""
        return Chat.objects.filter(consumer_number=self.number, portal_number__number=self.portal).order_by("-pk").first()


@pytest.fixture
def phone(client, django_capture_on_commit_callbacks, support):
    return Phone(client, django_capture_on_commit_callbacks)


@pytest.fixture
def make_phone(client, django_capture_on_commit_callbacks, support):
    def build(number: str, portal: str = PORTAL) -> Phone:
        return Phone(client, django_capture_on_commit_callbacks, number=number, portal=portal)

    return build


def transcript(chat: Chat) -> list[tuple[str, str]]:
    """(author, body) of every transcript entry, in order."""
    return list(Message.objects.filter(chat=chat).order_by("created_at", "pk").values_list("author", "body"))


def queued_in_billing(phone) -> Chat:
    """The consumer texts in and picks Billing; their texts so far are read."""
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    assert chat.status in (ChatStatus.QUEUED, ChatStatus.ASSIGNED) and chat.queue.name == "Billing"
    phone.new_texts()
    return chat


def assigned_to(phone, agent, go_online, committed) -> Chat:
    """A Billing chat assigned to `agent`, who wrote; the consumer has answered once."""
    go_online(agent)
    chat = queued_in_billing(phone)
    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED
    committed(services.send_agent_message, agent=agent, chat=chat, body="Hello, how can I help?")
    phone.new_texts()
    return chat


@pytest.fixture
def dismissal_on(chat_settings):
    """Dismissal (S8) switched on globally, after 10 minutes; returns the chat settings."""
    return update_chat_settings(dismissal_enabled=True, dismissal_minutes=10)


# --- calls with wait-time and in-call SMS (SPEC B1–B3; numbers and texts in tests/chats/calls.py) ---


@pytest.fixture
def clock(time_machine):
    """The clock stands still at START of tests/chats/calls.py; tests move it with clock.shift(…)."""
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


@pytest.fixture
def alice_agent(blended):
    """Alice, available, an agent of Billing: the one its calls are put through to."""
    agent = make_agent("alice", display_name="Alice", status=AgentStatus.AVAILABLE)
    blended.agents.add(agent)
    return agent
