"""The hot path's cost (DESIGN, Tests): a consumer's text inside an assigned chat, from the signed
webhook through the after-commit work, in a bounded number of queries whatever the length of
the chat."""
import pytest

from chats import services
from chats.models import ChatStatus, Message
from tests.chats.conftest import CONSUMER, PORTAL
from tests.factories import make_transcript
from tests.webhooks import post_inbound

MAX_QUERIES = 15


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

    with django_assert_max_num_queries(MAX_QUERIES):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="One more thing")

    assert response.status_code == 200
    assert Message.objects.filter(chat=assigned_chat).count() == before + 1


@pytest.mark.parametrize("earlier", [0, 1000])
def test_an_agent_reply_costs_a_bounded_number_of_queries(
    assigned_chat, alice, earlier, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    """The reply itself, without the send task that runs after commit."""
    make_transcript(assigned_chat, earlier)

    with django_assert_max_num_queries(MAX_QUERIES):
        services.send_agent_message(agent=alice, chat=assigned_chat, body="Let me check that for you.")

    assert assigned_chat.messages.filter(author="agent").count() == 1
