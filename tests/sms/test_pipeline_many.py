"""SPEC S11 for many messages at once: `sms.pipeline.queue_sms_many` (the chat timers' sweeper
texting a batch of expired chats) ends each message where `queue_sms` would — sent,
suppressed for the do-not-contact list, held by quiet hours, refused as a duplicate — in a
number of queries that does not grow with the batch."""
import datetime as dt
import zoneinfo

import pytest

from portal.models import ChatSettings
from sms.models import MessageStatus, OutboundMessage
from sms.pipeline import DUPLICATE_MESSAGE_ERROR, SendRefused, add_do_not_contact, queue_sms, queue_sms_many
from tests.factories import make_sending_number

SENDER = "+15550100001"
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")

pytestmark = pytest.mark.django_db


@pytest.fixture
def sender(db):
    return make_sending_number(SENDER)


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(dt.datetime(2025, 6, 10, 11, 0, tzinfo=NEW_YORK), tick=False)
    return time_machine


def consumers(count: int) -> list[str]:
    return [f"+1212555{index:04d}" for index in range(count)]  # New York numbers


def history(message: OutboundMessage) -> list[str]:
    return list(message.status_events.order_by("at", "pk").values_list("status", flat=True))


def send_many(committed, requests) -> list[OutboundMessage]:
    messages = committed(queue_sms_many, requests)
    for message in messages:
        message.refresh_from_db()
    return messages


def test_each_message_is_sent_and_tracked_as_queue_sms_would(sender, clock, committed):
    messages = send_many(committed, [{"to": to, "from_number": SENDER, "body": "Bye"} for to in consumers(3)])

    assert [m.to_number for m in messages] == consumers(3)
    assert [m.status for m in messages] == [MessageStatus.DELIVERED] * 3  # the local provider
    assert {m.portal_number for m in messages} == {sender}
    assert [history(m)[0] for m in messages] == ["queued"] * 3


def test_do_not_contact_and_quiet_hours_apply_to_each_message(sender, clock, committed):
    blocked, night_owl, fine = consumers(3)
    add_do_not_contact(consumer_number=blocked, portal_number=SENDER, source="test")

    clock.move_to(dt.datetime(2025, 6, 10, 23, 0, tzinfo=NEW_YORK), tick=False)
    messages = send_many(
        committed,
        [
            {"to": blocked, "from_number": SENDER, "body": "Bye"},
            {"to": night_owl, "from_number": SENDER, "body": "Your parcel", "kind": "api", "proactive": True},
            {"to": fine, "from_number": SENDER, "body": "Bye"},
        ],
    )

    assert [m.status for m in messages] == [MessageStatus.SUPPRESSED, MessageStatus.HELD, MessageStatus.DELIVERED]
    assert messages[1].next_attempt_at == dt.datetime(2025, 6, 11, 8, 0, tzinfo=NEW_YORK)
    assert history(messages[0]) == ["suppressed"] and history(messages[1]) == ["held"]


def test_a_limited_kind_still_meets_the_duplicate_limiter(sender, clock, committed):
    committed(queue_sms, to=consumers(1)[0], from_number=SENDER, body="Same text", kind="agent")

    with pytest.raises(SendRefused) as refused:
        committed(queue_sms_many, [{"to": consumers(1)[0], "from_number": SENDER, "body": "Same text", "kind": "agent"}])

    assert refused.value.message == DUPLICATE_MESSAGE_ERROR


def test_a_body_too_long_refuses_the_batch_before_anything_is_saved(sender, clock, committed):
    with pytest.raises(SendRefused):
        queue_sms_many(
            [
                {"to": consumers(1)[0], "from_number": SENDER, "body": "fine"},
                {"to": consumers(2)[1], "from_number": SENDER, "body": "x" * 1601},
            ]
        )

    assert not OutboundMessage.objects.exists()


@pytest.mark.parametrize("count", [1, 40])
def test_the_queries_do_not_grow_with_the_batch(sender, clock, count, django_assert_max_num_queries):
    ChatSettings.load()  # the row exists, as it always does but in a fresh test database

    with django_assert_max_num_queries(4):  # settings, do-not-contact, messages, status events
        queue_sms_many([{"to": to, "from_number": SENDER, "body": "Bye", "portal_number": sender} for to in consumers(count)])

    assert OutboundMessage.objects.filter(status=MessageStatus.QUEUED).count() == count
