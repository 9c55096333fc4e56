"""M6 message tracking (issue 13, item 5): counts by status per number and per queue for a range,
each message's status history with the provider's error, undelivered and failed first, filters."""
import datetime as dt

import pytest
import time_machine

from chats.models import Chat, Message
from sms.models import MessageStatusEvent, OutboundMessage
from tests.factories import make_number, make_queue, page_text

pytestmark = pytest.mark.django_db

DAY = dt.datetime(2030, 3, 4, 12, tzinfo=dt.timezone.utc)
RANGE = {"start": "2030-03-04", "end": "2030-03-04"}



@pytest.fixture
def sent():
    """Three texts from the support number in Billing: delivered, undelivered (30003), failed."""
    number, billing = make_number("+15550100001"), make_queue("Billing")
    chat = Chat.objects.create(consumer_number="+15557654321", portal_number=number, queue=billing, status="assigned")
    made = {}
    with time_machine.travel(DAY, tick=False):
        for status, code, text in [("delivered", "", ""), ("undelivered", "30003", "Unreachable destination handset"), ("failed", "30008", "Unknown error")]:
            message = OutboundMessage.objects.create(
                to_number="+15557654321", from_number=number.number, portal_number=number, body=f"a {status} text",
                status=status, error_code=code, error_message=text,
            )
            MessageStatusEvent.objects.create(message=message, status="sent", source="portal")
            MessageStatusEvent.objects.create(message=message, status=status, error_code=code, detail=text, source="provider")
            Message.objects.create(chat=chat, author="agent", body=message.body, outbound=message)
            made[status] = message
    return made


def test_counts_by_status_per_number_and_queue(sam, sent):
    response = sam.get("/monitor/messages/", RANGE)
    counts = response.context["counts"]
    [by_number] = counts["per_number"]
    assert by_number["name"] == "+15550100001" and by_number["total"] == 3
    assert (by_number["counts"]["delivered"], by_number["counts"]["undelivered"], by_number["counts"]["failed"]) == (1, 1, 1)
    [by_queue] = counts["per_queue"]
    assert by_queue["name"] == "Billing" and by_queue["counts"]["failed"] == 1


def test_undelivered_and_failed_come_first_with_their_history_and_error(sam, sent):
    listing = sam.get("/monitor/messages/", RANGE).context["listing"]
    assert [m["status"] for m in listing["messages"]][-1] == "delivered"
    undelivered = next(m for m in listing["messages"] if m["status"] == "undelivered")
    assert undelivered["error_code"] == "30003"
    assert [(e["status"], e["error_code"]) for e in undelivered["history"]] == [("Sent", ""), ("Undelivered", "30003")]
    text = page_text(sam.get("/monitor/messages/", RANGE))
    assert "Unreachable destination handset" in text and "+15557654321" not in text  # masked


@pytest.mark.parametrize(
    "params, expected",
    [({"status": "failed"}, ["failed"]), ({"error_code": "30003"}, ["undelivered"]), ({"start": "2030-03-05", "end": "2030-03-05"}, [])],
)
def test_the_filters_narrow_the_list(sam, sent, params, expected):
    listing = sam.get("/monitor/messages/", {**RANGE, **params}).context["listing"]
    assert [m["status"] for m in listing["messages"]] == expected


@pytest.mark.parametrize(
    "params, message",
    [({"status": "lost"}, "status must be one of"), ({"number": "999"}, "There is no portal number with id 999."),
     ({"start": "2030-03-05", "end": "2030-03-01"}, "The range is reversed")],
)
def test_bad_filters_are_explained(sam, params, message):
    response = sam.get("/monitor/messages/", params)
    assert response.status_code == 400 and message in page_text(response)
