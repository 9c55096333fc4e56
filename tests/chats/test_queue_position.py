"""A waiting consumer's place and estimated wait by SMS (issue 14, item 11): `{position}` and
`{wait}` in the queued text, the WHERE word, and a queue's periodic updates (at most M, every N
minutes; none in quiet hours for an API-initiated chat)."""
import datetime as dt

import pytest

from chats import queue_position
from chats.models import Chat, ChatStatus, ChatType
from queues.models import QueueMessages
from tests.chats.conftest import queued_in_billing, transcript
from tests.factories import make_queued_chats

PLACE = "You are number {position} in line. Estimated wait: {wait}."
START = dt.datetime(2030, 3, 5, 15, 0, tzinfo=dt.UTC)  # a Tuesday, 10:00 in New York


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(START, tick=False)
    return time_machine


@pytest.fixture
def sweep(committed):
    return lambda: committed(queue_position.send_updates)


def served_recently(support, count: int, *, minutes_ago: int = 30):
    """`count` Billing chats that waited and were assigned within the last hour."""
    for chat in make_queued_chats(support.billing, support.number, count, first_consumer=15558000000):
        Chat.objects.filter(pk=chat.pk).update(
            status=ChatStatus.FINISHED,
            queued_at=START - dt.timedelta(minutes=minutes_ago + 4),
            assigned_at=START - dt.timedelta(minutes=minutes_ago),
        )


def test_the_queued_text_says_the_place_and_the_wait(support, make_phone, clock):
    QueueMessages.objects.filter(queue=support.billing).update(queued="Thanks! You are number {position}; wait {wait}.")
    served_recently(support, 4)  # 4 assignments in the last hour: 15 minutes per place
    first, second = make_phone("+15557650001"), make_phone("+15557650002")

    queued_in_billing(first)
    second.text("Hi")
    second.text("1")

    assert second.new_texts()[-1] == "Thanks! You are number 2; wait about 30 minutes."


def test_where_answers_the_place_now_and_is_kept_in_the_transcript(support, make_phone, clock):
    first, second = make_phone("+15557650001"), make_phone("+15557650002")
    queued_in_billing(first)
    queued_in_billing(second)

    second.text(" where ")  # case and spaces do not matter, as for every command word

    answer = "You are number 2 in line. Estimated wait: a few minutes."  # no history yet
    assert second.new_texts() == [answer]
    assert transcript(second.chat())[-2:] == [("consumer", " where "), ("system", answer)]
    first.text("WHERE")
    assert first.new_texts() == ["You are number 1 in line. Estimated wait: a few minutes."]


def test_where_in_an_assigned_chat_is_an_ordinary_text_for_the_agent(phone, alice, go_online):
    go_online(alice)
    chat = queued_in_billing(phone)

    phone.text("WHERE")

    assert phone.new_texts() == []
    assert transcript(chat)[-1] == ("consumer", "WHERE")
    assert Chat.objects.get(pk=chat.pk).status == ChatStatus.ASSIGNED


def test_a_queue_sends_at_most_m_updates_every_n_minutes(support, phone, clock, sweep):
    support.billing.position_update_minutes = 5
    support.billing.position_update_limit = 2
    support.billing.save()
    queued_in_billing(phone)

    clock.shift(dt.timedelta(minutes=4, seconds=59))
    sweep()
    assert phone.new_texts() == []
    clock.shift(dt.timedelta(seconds=1))
    sweep()
    assert phone.new_texts() == ["You are number 1 in line. Estimated wait: a few minutes."]
    clock.shift(dt.timedelta(minutes=5))
    sweep()
    sweep()  # a second sweeper finds nothing more due
    assert len(phone.new_texts()) == 1
    clock.shift(dt.timedelta(minutes=5))
    sweep()
    assert phone.new_texts() == []  # the limit of 2 was reached
    assert phone.chat().position_update_at is None


def test_no_update_for_an_api_initiated_chat_in_quiet_hours(support, phone, clock, sweep):
    support.billing.position_update_minutes = 5
    support.billing.save()
    chat = queued_in_billing(phone)
    Chat.objects.filter(pk=chat.pk).update(chat_type=ChatType.API_SMS)
    clock.move_to(dt.datetime(2030, 3, 6, 8, 30, tzinfo=dt.UTC))  # 03:30 in New York

    sweep()

    assert phone.new_texts() == []
    assert Chat.objects.get(pk=chat.pk).position_update_at == dt.datetime(2030, 3, 6, 8, 35, tzinfo=dt.UTC)  # the next one


def test_no_updates_once_the_chat_is_assigned(support, phone, alice, go_online, clock, sweep):
    support.billing.position_update_minutes = 5
    support.billing.save()
    queued_in_billing(phone)
    go_online(alice)
    phone.new_texts()

    clock.shift(dt.timedelta(minutes=6))
    sweep()

    assert not any("in line" in text for text in phone.new_texts())
