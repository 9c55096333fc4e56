"""The hot path's cost (DESIGN, Tests): each kind of consumer text, from the signed webhook
through its after-commit work, in a bounded number of queries whatever the length of the chat.

The texts of a conversation as bench/inbound.py sends them — a first text (a new chat: opt-in,
greeting, menu), the menu choice, then texts in the queued chat — run with their replies handed
to the task queue as in production (the test settings otherwise send them inline, and the send
task is not the webhook's cost). The queue here is an in-memory one, so the figures do not depend
on the broker: django-q2's ORM broker adds one INSERT per reply, Redis none."""
import pytest

from chats import services
from chats.models import ChatStatus, Message
from sms.models import MessageStatus, OutboundMessage
from tests.chats.conftest import CONSUMER, GREETING, MENU, PORTAL
from tests.factories import make_transcript
from tests.webhooks import post_inbound

# The figures as they are (bench/inbound.py's in-process counts are these, give or take the
# broker): a regression fails here. In a test the after-commit work runs after the request, out
# of its settings cache, so the event webhooks' subscribers are read once per event here (four
# times for a first text), once per request in production.
#
# A text in a chat: the inbound row, the settings, the chat (with its number, the consumer's
# opt-out and the command words, in one query), the transcript entry, the chat's timestamps and
# the outcome; in a queued chat, the queue's assignment run after commit. Was 14 (12 in an
# assigned chat).
TEXT_IN_A_CHAT_MAX = 9
# A new chat's first text, with its three replies (opt-in, greeting, menu); was 48.
FIRST_TEXT_MAX = 37
# The menu choice that queues the chat, with the queued text; was 29.
MENU_CHOICE_MAX = 20
# The agent's reply, without the send task that runs after commit.
AGENT_REPLY_MAX = 12

SEND_TASK = "sms.tasks.send_message"


class MemoryBroker:
    """A django-q2 broker that keeps what is enqueued in a list."""

    enqueued: list = []

    def __init__(self, list_key=None):
        self.list_key = list_key

    def enqueue(self, task):
        MemoryBroker.enqueued.append(task)
        return len(MemoryBroker.enqueued)


@pytest.fixture
def task_queue(monkeypatch):
    """Replies go to the task queue, as in production, instead of being sent inline; returns
    how many send tasks were enqueued so far."""
    from django_q.conf import Conf
    from django_q.signing import SignedPackage

    MemoryBroker.enqueued = []
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "BROKER_CLASS", f"{__name__}.MemoryBroker")

    def send_tasks() -> int:
        return sum(SignedPackage.loads(task)["func"] == SEND_TASK for task in MemoryBroker.enqueued)

    return send_tasks


def queued_replies() -> list[str]:
    return list(
        OutboundMessage.objects.filter(to_number=CONSUMER, status=MessageStatus.QUEUED)
        .order_by("pk")
        .values_list("body", flat=True)
    )


def text(client, body, capture):
    with capture(execute=True):
        response = post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body=body)
    assert response.status_code == 200
    return response


def test_a_first_text_costs_a_bounded_number_of_queries(
    client, support, chat_settings, task_queue, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    with django_assert_max_num_queries(FIRST_TEXT_MAX):
        text(client, "Hi, I have a question", django_capture_on_commit_callbacks)

    assert queued_replies() == [chat_settings.opt_in_message, GREETING, MENU]
    assert task_queue() == 3


def test_a_menu_choice_costs_a_bounded_number_of_queries(
    client, support, task_queue, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    text(client, "Hi, I have a question", django_capture_on_commit_callbacks)

    with django_assert_max_num_queries(MENU_CHOICE_MAX):
        text(client, "1", django_capture_on_commit_callbacks)

    chat = Message.objects.filter(body="1").get().chat
    assert (chat.status, chat.queue) == (ChatStatus.QUEUED, support.billing)
    assert task_queue() == 4


@pytest.mark.parametrize("earlier", [0, 1000])
def test_a_text_in_a_queued_chat_costs_a_bounded_number_of_queries(
    client, support, task_queue, earlier, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    text(client, "Hi, I have a question", django_capture_on_commit_callbacks)
    text(client, "1", django_capture_on_commit_callbacks)
    chat = Message.objects.filter(body="1").get().chat
    make_transcript(chat, earlier)

    with django_assert_max_num_queries(TEXT_IN_A_CHAT_MAX):
        text(client, "Anyone there? I have been waiting a while.", django_capture_on_commit_callbacks)

    assert chat.messages.filter(body="Anyone there? I have been waiting a while.").exists()
    assert task_queue() == 4  # no reply to a text in the queue


@pytest.fixture
def assigned_chat(phone, alice, go_online):
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    assert chat.status == ChatStatus.ASSIGNED
    return chat


@pytest.mark.parametrize("earlier", [0, 10, 1000])
def test_a_consumer_text_in_an_assigned_chat_costs_a_bounded_number_of_queries(
    client, assigned_chat, earlier, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    make_transcript(assigned_chat, earlier)
    before = Message.objects.filter(chat=assigned_chat).count()

    with django_assert_max_num_queries(TEXT_IN_A_CHAT_MAX):
        text(client, "One more thing", django_capture_on_commit_callbacks)

    assert Message.objects.filter(chat=assigned_chat).count() == before + 1


@pytest.mark.parametrize("earlier", [0, 1000])
def test_an_agent_reply_costs_a_bounded_number_of_queries(
    assigned_chat, alice, earlier, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    """The reply itself, without the send task that runs after commit."""
    make_transcript(assigned_chat, earlier)

    with django_assert_max_num_queries(AGENT_REPLY_MAX):
        services.send_agent_message(agent=alice, chat=assigned_chat, body="Let me check that for you.")

    assert assigned_chat.messages.filter(author="agent").count() == 1


def test_a_settings_change_applies_to_the_next_text(phone, chat_settings, make_phone):
    """The settings are read once per text, not kept: what an admin saves applies at once."""
    phone.text("Hi")
    assert phone.new_texts()[0] == chat_settings.opt_in_message

    chat_settings.opt_in_message = "Welcome! Reply STOP to opt out."
    chat_settings.save()
    other = make_phone("+15557650001")
    other.text("Hi")

    assert other.new_texts()[0] == "Welcome! Reply STOP to opt out."
