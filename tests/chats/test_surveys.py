"""CSAT by SMS (issue 14, item 12): after an agent ends a chat the queue's survey text goes out;
within the window a reply of 1 to 5 is the chat's rating (the API's `rating`), the next text its
feedback (`has_feedback`), both in the CRM record; anything else starts a new chat as before."""
import datetime as dt

import pytest

from chats import services
from chats.models import Chat, DisconnectedBy, FinishReason
from portal.models import CrmEntry
from queues.models import QueueMessages
from tests.api_client import make_api
from tests.factories import update_chat_settings

SURVEY = "How did we do? Reply 1 (poor) to 5 (great)."
THANKS = "Thank you! If you like, reply with a few words about it."


@pytest.fixture
def surveyed(support):
    """Billing (and its menu) asks for a score."""
    for queue in (support.menu, support.billing):
        QueueMessages.objects.update_or_create(queue=queue, language="en", defaults={"csat_survey": SURVEY})
    return support


@pytest.fixture
def ended(surveyed, phone, alice, go_online, committed):
    """Alice served the consumer in Billing and ended the chat."""
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    chat = phone.chat()
    committed(services.end_chat, chat=chat, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED, agent=alice)
    return Chat.objects.get(pk=chat.pk)


def test_the_survey_follows_an_agents_end_and_a_score_then_feedback_fill_the_chat(
    ended, phone, client, django_capture_on_commit_callbacks
):
    assert phone.new_texts()[-1] == SURVEY
    assert ended.survey_sent_at is not None

    phone.text(" 4 ")
    assert phone.new_texts() == [THANKS]
    phone.text("Quick and friendly, thanks Alice")
    phone.text("Actually I have another question")  # after the feedback: a new conversation

    chat = Chat.objects.get(pk=ended.pk)
    assert (chat.rating, chat.feedback) == (4, "Quick and friendly, thanks Alice")
    assert Chat.objects.count() == 2
    api = make_api(client, django_capture_on_commit_callbacks)
    body = api.get(f"/apps/api/v1/chats/{chat.pk}").json()
    assert (body["rating"], body["has_feedback"]) == (4, True)
    entries = dict(CrmEntry.objects.filter(record=chat.crm_record, kind__startswith="csat").values_list("kind", "text"))
    assert entries == {"csat": "Satisfaction score 4 of 5", "csat_feedback": "Quick and friendly, thanks Alice"}
    bodies = list(chat.messages.values_list("body", flat=True))
    assert bodies[-3:] == [" 4 ", THANKS, "Quick and friendly, thanks Alice"]  # in the chat's transcript


def test_anything_but_a_score_starts_a_new_chat_as_before(ended, phone):
    phone.text("I need help again")

    assert Chat.objects.get(pk=ended.pk).rating is None
    assert phone.chat().pk != ended.pk


def test_a_score_after_the_window_starts_a_new_chat(ended, phone, time_machine):
    update_chat_settings(survey_window_minutes=30)
    time_machine.move_to(ended.survey_sent_at + dt.timedelta(minutes=31))

    phone.text("5")

    assert Chat.objects.get(pk=ended.pk).rating is None
    assert Chat.objects.count() == 2


@pytest.mark.parametrize("reason, by", [(FinishReason.END_USER_EXIT, DisconnectedBy.END_USER), (FinishReason.EXPIRED_UNANSWERED, DisconnectedBy.SYSTEM)])
def test_no_survey_unless_an_agent_ended_the_chat(surveyed, phone, alice, go_online, committed, reason, by):
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    committed(services.end_chat, chat=phone.chat(), by=by, reason=reason)

    assert SURVEY not in phone.inbox()


def test_no_survey_where_the_queue_has_no_survey_text(support, phone, alice, go_online, committed):
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    chat = phone.chat()
    committed(services.end_chat, chat=chat, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED, agent=alice)

    assert Chat.objects.get(pk=chat.pk).survey_sent_at is None
    phone.text("5")
    assert Chat.objects.count() == 2  # a plain new conversation
