"""SPEC S11 step 7: Twilio's status callbacks at POST /sms/twilio/status/, through the real view
with signed requests. A status only ever moves forward; every change is kept with its time and
the provider's error code (SPEC M6) and pushed to the message's notify group."""
import asyncio
import datetime as dt
import secrets

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from sms.models import MessageStatus
from sms.pipeline import queue_sms
from tests.factories import make_sending_number
from tests.webhooks import new_sid, post_signed, post_status

SENDER = "+15550100001"
CONSUMER = "+12125550123"
STATUS_PATH = "/sms/twilio/status/"
UTC = dt.timezone.utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(dt.datetime(2025, 6, 10, 15, 0, tzinfo=UTC), tick=False)
    return time_machine


@pytest.fixture
def message(twilio_settings, django_capture_on_commit_callbacks):
    """A message the pipeline handed to (fake) Twilio, which answered `queued`."""
    make_sending_number(SENDER)
    with django_capture_on_commit_callbacks(execute=True):
        message = queue_sms(to=CONSUMER, from_number=SENDER, body="Your order has shipped.", kind="api")
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED and message.provider_sid
    return message


def history(message):
    return list(message.status_events.values_list("status", "error_code", "source"))


def callback(client, message, status, **extra):
    response = post_status(client, sid=message.provider_sid, status=status, **extra)
    assert response.status_code == 204
    message.refresh_from_db()
    return response


def test_queued_sent_delivered(clock, client, message):
    callback(client, message, "queued")  # Twilio repeats the status the API call answered
    clock.shift(2)
    callback(client, message, "sent")
    clock.shift(3)
    callback(client, message, "delivered")

    assert message.status == MessageStatus.DELIVERED
    assert history(message) == [
        ("queued", "", "portal"),
        ("sent", "", "provider"),
        ("delivered", "", "provider"),
    ]
    times = list(message.status_events.values_list("at", flat=True))
    start = dt.datetime(2025, 6, 10, 15, 0, tzinfo=UTC)
    assert times == [start, start + dt.timedelta(seconds=2), start + dt.timedelta(seconds=5)]


def test_sending_comes_between_queued_and_sent(client, message):
    callback(client, message, "sending")
    callback(client, message, "sent")

    assert [status for status, *_ in history(message)] == ["queued", "sending", "sent"]


def test_callbacks_out_of_order_never_move_a_status_backwards(client, message):
    callback(client, message, "delivered")
    callback(client, message, "sent")
    callback(client, message, "queued")

    assert message.status == MessageStatus.DELIVERED
    assert [status for status, *_ in history(message)] == ["queued", "delivered"]


def test_a_final_status_is_final(client, message):
    callback(client, message, "delivered")
    callback(client, message, "undelivered", error_code="30003")

    assert message.status == MessageStatus.DELIVERED
    assert message.error_code == ""


def test_undelivered_keeps_the_error_code(clock, client, message):
    callback(client, message, "sent")
    clock.shift(60)
    callback(client, message, "undelivered", error_code="30003", ErrorMessage="Unreachable destination handset")

    assert message.status == MessageStatus.UNDELIVERED
    assert message.error_code == "30003"
    assert message.error_message == "Unreachable destination handset"
    last = message.status_events.last()
    assert (last.status, last.error_code, last.source) == ("undelivered", "30003", "provider")
    assert last.at == dt.datetime(2025, 6, 10, 15, 1, tzinfo=UTC)


def test_failed_with_its_code(client, message):
    callback(client, message, "failed", error_code="30007")

    assert message.status == MessageStatus.FAILED
    assert history(message)[-1] == ("failed", "30007", "provider")


def test_twilio_only_statuses_map_onto_ours(client, message):
    callback(client, message, "accepted")
    assert message.status == MessageStatus.QUEUED

    callback(client, message, "read")  # WhatsApp-style read receipt
    assert message.status == MessageStatus.DELIVERED


def test_an_unknown_status_changes_nothing(client, message):
    callback(client, message, "teleported")

    assert message.status == MessageStatus.QUEUED
    assert len(history(message)) == 1


def test_an_unknown_sid_is_ignored(client, message):
    response = post_status(client, sid=new_sid(), status="delivered")

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED


def test_a_bad_signature_is_refused(client, message):
    params = {"MessageSid": message.provider_sid, "MessageStatus": "delivered"}

    forged = post_signed(client, STATUS_PATH, params, signature="bm90IGEgc2lnbmF0dXJl")
    wrong_token = post_signed(client, STATUS_PATH, params, token=secrets.token_hex(16))
    unsigned = client.post(STATUS_PATH, params)

    assert forged.status_code == wrong_token.status_code == unsigned.status_code == 403
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    assert len(history(message)) == 1


def test_the_signature_covers_the_public_url_behind_a_proxy(client, message, settings):
    settings.PUBLIC_BASE_URL = "https://tern.example.com"

    callback(client, message, "delivered")  # signed for https://tern.example.com/sms/twilio/status/

    assert message.status == MessageStatus.DELIVERED


def test_only_post_is_allowed(client, twilio_settings):
    assert client.get(STATUS_PATH).status_code == 405


async def _receive(layer, channel):
    return await asyncio.wait_for(layer.receive(channel), timeout=5)


def test_the_status_change_is_pushed_to_the_notify_group(client, twilio_settings, django_capture_on_commit_callbacks):
    group = f"chat.{secrets.randbelow(10**9)}"
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    make_sending_number(SENDER)
    with django_capture_on_commit_callbacks(execute=True):
        message = queue_sms(to=CONSUMER, from_number=SENDER, body="Hi", notify_group=group)
    message.refresh_from_db()
    assert async_to_sync(_receive)(layer, channel)["event"]["status"] == "queued"

    with django_capture_on_commit_callbacks(execute=True):
        response = post_status(client, sid=message.provider_sid, status="undelivered", error_code="30003")

    assert response.status_code == 204
    pushed = async_to_sync(_receive)(layer, channel)
    assert pushed["type"] == "push"
    assert pushed["event"] == {
        "type": "message.status",
        "outbound_id": message.pk,
        "status": "undelivered",
        "error_code": "30003",
        "error_message": "",
    }
    async_to_sync(layer.group_discard)(group, channel)
