"""SPEC S11: the outbound pipeline, end to end through the Twilio provider and the loopback fake.

Every message goes through `sms.pipeline.queue_sms`; the django-q2 send task runs inline (tests
run the cluster in sync mode) when the transaction's on-commit callbacks run, which
`django_capture_on_commit_callbacks(execute=True)` does. The clock is moved with time_machine and
`sms.tasks.sweep_outbound()` is called the way its schedule would call it."""
import datetime as dt
import socket
import zoneinfo
from types import SimpleNamespace

import pytest

from sms import sending_limits
from sms.models import DoNotContact, MessageStatus, OutboundMessage, RateWindow
from sms.pipeline import DUPLICATE_MESSAGE_ERROR, SendRefused, add_do_not_contact, queue_sms
from sms.tasks import retry_delay, send_message, sweep_outbound
from tests.factories import make_sending_number, update_chat_settings
from tests.layers import commit, fresh_channel_layer

SENDER = "+15550100001"
OTHER_SENDER = "+15550100002"
CONSUMER = "+12125550123"  # New York
OTHER_CONSUMER = "+12125550199"
SERVICE_SID = "MG" + "b" * 32
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
UTC = dt.timezone.utc

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_failed_tasks")]


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def fake(twilio_settings):
    return twilio_settings


@pytest.fixture
def sender(db):
    return make_sending_number(SENDER)


@pytest.fixture
def clock(time_machine):
    """A frozen clock, moved on only by the test."""
    time_machine.move_to(dt.datetime(2025, 6, 10, 15, 0, tzinfo=UTC), tick=False)  # 11:00 in New York
    return time_machine


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """queue_sms as the portal calls it, with the send task run after commit."""

    def _send(**kwargs) -> OutboundMessage:
        kwargs.setdefault("to", CONSUMER)
        kwargs.setdefault("from_number", SENDER)
        kwargs.setdefault("body", "Your order has shipped.")
        with django_capture_on_commit_callbacks(execute=True):
            message = queue_sms(**kwargs)
        message.refresh_from_db()
        return message

    return _send


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    def _sweep() -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return sweep_outbound()

    return _sweep


def posts(fake):
    return fake.requests_to("/Messages.json", "POST")


def history(message) -> list[str]:
    return list(message.status_events.values_list("status", flat=True))


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the happy path ----------------------------------------------------------------------------


def test_a_queued_message_is_sent_to_twilio_and_its_sid_stored(fake, sender, send):
    message = send(body="Your order has shipped.")

    assert len(posts(fake)) == 1 and len(fake.sent_messages) == 1
    sent = fake.sent_messages[0]
    assert sent["To"] == CONSUMER
    assert sent["From"] == SENDER
    assert sent["Body"] == "Your order has shipped."
    assert "MessagingServiceSid" not in sent
    assert message.status == MessageStatus.QUEUED
    assert message.provider_sid.startswith("SM") and len(message.provider_sid) == 34
    assert message.attempts == 1
    assert message.portal_number == sender
    assert message.error_code == ""
    events = list(message.status_events.all())
    assert [(e.status, e.source) for e in events] == [("queued", "portal")]


def test_a_number_with_a_messaging_service_sends_through_the_pool(fake, send):
    make_sending_number(SENDER, messaging_service_sid=SERVICE_SID)

    message = send()

    sent = fake.sent_messages[0]
    assert sent["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in sent
    # Twilio answers "accepted" for a pooled send; that is our "queued".
    assert message.status == MessageStatus.QUEUED
    assert message.provider_sid


def test_the_status_callback_url_is_the_public_one(fake, sender, send, settings):
    settings.PUBLIC_BASE_URL = "https://tern.example.com"

    send()

    assert fake.sent_messages[0]["StatusCallback"] == "https://tern.example.com/sms/twilio/status/"


def test_media_urls_go_out_as_an_mms(fake, sender, send):
    urls = ["https://cdn.example.com/a.jpg", "https://cdn.example.com/b.png"]

    message = send(body="Your receipt", media_urls=urls)

    assert fake.sent_messages[0]["MediaUrl"] == urls
    assert message.media_urls == urls
    assert message.provider_sid.startswith("MM")


def test_a_message_from_a_number_that_is_not_the_portals_is_still_sent(fake, send):
    message = send(from_number="+15550109999")

    assert fake.sent_messages[0]["From"] == "+15550109999"
    assert message.portal_number is None and message.provider_sid


def test_running_the_send_task_again_sends_nothing_more(fake, sender, send):
    message = send()

    assert send_message(message.pk) == "skipped"
    assert len(posts(fake)) == 1


def test_each_status_change_is_pushed_to_the_notify_group_after_commit(
    fake, sender, settings, django_capture_on_commit_callbacks
):
    """Heard on the real channel layer, and only once the transaction that queued it commits."""
    layer = fresh_channel_layer(settings)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = queue_sms(to=CONSUMER, from_number=SENDER, body="Your order has shipped.", notify_group="chat.42")

    before, after = commit(layer, callbacks, group="chat.42")

    assert before is None  # nothing before the commit
    assert after["event"] == {
        "type": "message.status",
        "outbound_id": message.pk,
        "status": "queued",
        "error_code": "",
        "error_message": "",
    }


# --- do not contact ----------------------------------------------------------------------------


def test_a_recipient_on_the_do_not_contact_list_is_suppressed_and_costs_nothing(fake, sender, send):
    add_do_not_contact(consumer_number=CONSUMER, portal_number=SENDER, source="stop")

    message = send()

    assert message.status == MessageStatus.SUPPRESSED
    assert "do-not-contact" in message.error_message
    assert history(message) == ["suppressed"]
    assert fake.requests == []
    assert message.attempts == 0 and message.provider_sid is None
    assert not RateWindow.objects.exists()  # no share of the sending limit used either


def test_do_not_contact_is_per_portal_number(fake, send):
    make_sending_number(SENDER)
    make_sending_number(OTHER_SENDER)
    add_do_not_contact(consumer_number=CONSUMER, portal_number=OTHER_SENDER, source="stop")

    message = send(from_number=SENDER)

    assert message.status == MessageStatus.QUEUED and message.provider_sid
    assert len(fake.sent_messages) == 1


def test_the_stop_confirmation_bypasses_the_list(fake, sender, send):
    add_do_not_contact(consumer_number=CONSUMER, portal_number=SENDER, source="stop")

    message = send(body="You have been unsubscribed.", ignore_do_not_contact=True)

    assert message.provider_sid and message.bypass_do_not_contact
    assert fake.sent_messages[0]["Body"] == "You have been unsubscribed."


def test_twilio_21610_fails_the_message_and_puts_the_number_on_the_list(fake, sender, send):
    fake.queue_failure(400, 21610, "Attempt to send to unsubscribed recipient")

    message = send()

    assert message.status == MessageStatus.FAILED
    assert message.error_code == "21610"
    assert "unsubscribed recipient" in message.error_message
    assert message.next_attempt_at is None
    entry = DoNotContact.objects.get(consumer_number=CONSUMER, portal_number=SENDER)
    assert entry.source == "provider"
    assert history(message) == ["queued", "failed"]
    assert message.status_events.last().error_code == "21610"

    later = send(body="Another message")

    assert later.status == MessageStatus.SUPPRESSED
    assert len(posts(fake)) == 1 and fake.sent_messages == []


def test_a_recipient_who_opted_out_while_the_message_waited_is_not_sent_to(fake, sender, send, sweep, clock):
    clock.move_to(dt.datetime(2025, 6, 10, 23, 0, tzinfo=NEW_YORK), tick=False)
    message = send(kind="api", proactive=True)
    assert message.status == MessageStatus.HELD

    add_do_not_contact(consumer_number=CONSUMER, portal_number=SENDER, source="stop")
    clock.move_to(dt.datetime(2025, 6, 11, 8, 1, tzinfo=NEW_YORK), tick=False)
    sweep()

    message.refresh_from_db()
    assert message.status == MessageStatus.SUPPRESSED
    assert history(message) == ["held", "queued", "suppressed"]
    assert fake.requests == []


# --- retries -----------------------------------------------------------------------------------


def test_retry_delays_double_between_the_configured_minimum_and_maximum(db):
    chat_settings = update_chat_settings(send_retry_min_seconds=2, send_retry_max_seconds=30)

    assert [retry_delay(attempt, chat_settings) for attempt in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_429_twice_then_success_sends_exactly_once(fake, sender, send, sweep, clock):
    update_chat_settings(send_retry_min_seconds=10, send_retry_max_seconds=300, send_max_attempts=5)
    fake.queue_failure(429)
    fake.queue_failure(429)
    start = dt.datetime(2025, 6, 10, 15, 0, tzinfo=UTC)

    message = send()

    assert message.status == MessageStatus.QUEUED and message.attempts == 1
    assert message.next_attempt_at == start + dt.timedelta(seconds=10)
    assert message.error_code == "20429"

    clock.shift(9)
    assert sweep() == 0  # not due yet
    assert len(posts(fake)) == 1

    clock.shift(1)
    assert sweep() == 1
    message.refresh_from_db()
    assert message.attempts == 2
    assert message.next_attempt_at == start + dt.timedelta(seconds=10 + 20)

    clock.shift(20)
    assert sweep() == 1
    message.refresh_from_db()
    assert message.attempts == 3
    assert message.next_attempt_at is None
    assert message.provider_sid
    assert message.status == MessageStatus.QUEUED
    assert message.error_code == ""  # a delivered message does not carry an old retry's code
    assert len(posts(fake)) == 3
    assert len(fake.sent_messages) == 1

    clock.shift(3600)
    assert sweep() == 0
    assert len(posts(fake)) == 3


def test_a_server_error_is_retried(fake, sender, send, sweep, clock):
    update_chat_settings(send_retry_min_seconds=5, send_retry_max_seconds=60)
    fake.queue_failure(500)

    message = send()
    assert message.status == MessageStatus.QUEUED and message.error_code == "20500"

    clock.shift(5)
    sweep()

    message.refresh_from_db()
    assert message.provider_sid and message.attempts == 2
    assert len(fake.sent_messages) == 1


def test_after_the_last_try_the_message_fails_with_the_providers_code(fake, sender, send, sweep, clock):
    update_chat_settings(send_retry_min_seconds=10, send_retry_max_seconds=15, send_max_attempts=3)
    for _ in range(5):
        fake.queue_failure(503)

    message = send()
    delays = []
    while message.status == MessageStatus.QUEUED:
        delays.append((message.next_attempt_at - dt.datetime.now(UTC)).total_seconds())
        clock.shift(delays[-1])
        sweep()
        message.refresh_from_db()

    assert delays == [10, 15]
    assert message.status == MessageStatus.FAILED
    assert message.attempts == 3
    assert message.error_code == "20503"
    assert "Service Unavailable" in message.error_message
    assert history(message) == ["queued", "failed"]
    assert len(posts(fake)) == 3 and fake.sent_messages == []

    clock.shift(3600)
    assert sweep() == 0
    assert len(posts(fake)) == 3


def test_an_invalid_to_number_fails_at_once(fake, sender, send, sweep, clock):
    fake.queue_failure(400, 21211, "The 'To' number +1212555 is not a valid phone number.")

    message = send()

    assert message.status == MessageStatus.FAILED
    assert message.attempts == 1 and message.next_attempt_at is None
    assert message.error_code == "21211"
    assert message.error_message == "Twilio error 21211: The 'To' number +1212555 is not a valid phone number."
    assert not DoNotContact.objects.exists()

    clock.shift(3600)
    assert sweep() == 0
    assert len(posts(fake)) == 1


def test_a_network_error_is_retried(fake, sender, send, sweep, clock, settings):
    update_chat_settings(send_retry_min_seconds=3, send_retry_max_seconds=60)
    settings.TWILIO_API_BASE = closed_port_url()

    message = send()

    assert message.status == MessageStatus.QUEUED
    assert message.attempts == 1 and message.next_attempt_at is not None
    assert message.provider_sid is None

    settings.TWILIO_API_BASE = fake.base_url  # Twilio is back
    clock.shift(3)
    sweep()

    message.refresh_from_db()
    assert message.provider_sid and message.attempts == 2
    assert len(fake.sent_messages) == 1


# --- the duplicate limiter ---------------------------------------------------------------------


def test_the_same_agent_text_to_the_same_number_is_refused_inside_the_window(fake, sender, send, clock):
    send(kind="agent", body="Hi, this is Alice.")

    clock.shift(dt.timedelta(minutes=29))
    with pytest.raises(SendRefused) as refused:
        send(kind="agent", body="Hi, this is Alice.")

    assert refused.value.message == "error.platform.message-limiter.duplicate-message-sent"
    assert refused.value.message == DUPLICATE_MESSAGE_ERROR
    assert OutboundMessage.objects.count() == 1
    assert len(fake.sent_messages) == 1


def test_the_same_text_is_accepted_after_the_window(fake, sender, send, clock):
    send(kind="agent", body="Hi, this is Alice.")

    clock.shift(dt.timedelta(minutes=31))
    again = send(kind="agent", body="Hi, this is Alice.")

    assert again.provider_sid
    assert len(fake.sent_messages) == 2


def test_the_window_is_configurable(fake, sender, send, clock):
    update_chat_settings(duplicate_window_minutes=5)
    send(kind="api", body="Your code is 1234")

    clock.shift(dt.timedelta(minutes=4))
    with pytest.raises(SendRefused):
        send(kind="api", body="Your code is 1234")
    clock.shift(dt.timedelta(minutes=2))
    assert send(kind="api", body="Your code is 1234").provider_sid


def test_the_limiter_can_be_switched_off(fake, sender, send):
    update_chat_settings(duplicate_limiter_enabled=False)

    send(kind="agent", body="Hi, this is Alice.")
    send(kind="agent", body="Hi, this is Alice.")

    assert len(fake.sent_messages) == 2


def test_system_replies_are_not_limited(fake, sender, send):
    send(kind="system", body="Reply 1 for Billing, 2 for Tech")
    send(kind="system", body="Reply 1 for Billing, 2 for Tech")

    assert len(fake.sent_messages) == 2


def test_only_the_same_body_to_the_same_number_from_the_same_number_counts(fake, send):
    make_sending_number(SENDER)
    make_sending_number(OTHER_SENDER)
    send(kind="agent", body="Hello")

    send(kind="agent", body="Hello!")
    send(kind="agent", body="Hello", to=OTHER_CONSUMER)
    send(kind="agent", body="Hello", from_number=OTHER_SENDER)

    assert len(fake.sent_messages) == 4


def test_a_message_that_failed_does_not_count_as_sent(fake, sender, send):
    fake.queue_failure(400, 21211)
    assert send(kind="agent", body="Hello").status == MessageStatus.FAILED

    assert send(kind="agent", body="Hello").provider_sid


# --- quiet hours -------------------------------------------------------------------------------


def test_a_proactive_message_at_night_is_held_until_the_window_opens(fake, sender, send, sweep, clock):
    clock.move_to(dt.datetime(2025, 6, 10, 23, 0, tzinfo=NEW_YORK), tick=False)

    message = send(kind="api", proactive=True)

    opens = dt.datetime(2025, 6, 11, 8, 0, tzinfo=NEW_YORK)
    assert message.status == MessageStatus.HELD
    assert message.next_attempt_at == opens
    assert message.expires_at > opens
    assert history(message) == ["held"]
    assert fake.requests == []

    clock.move_to(dt.datetime(2025, 6, 11, 7, 59, tzinfo=NEW_YORK), tick=False)
    assert sweep() == 0
    message.refresh_from_db()
    assert message.status == MessageStatus.HELD and fake.requests == []

    clock.move_to(dt.datetime(2025, 6, 11, 8, 0, 30, tzinfo=NEW_YORK), tick=False)
    assert sweep() == 1
    message.refresh_from_db()
    assert message.provider_sid and message.attempts == 1
    assert history(message) == ["held", "queued"]
    assert fake.sent_messages[0]["To"] == CONSUMER

    assert sweep() == 0
    assert len(posts(fake)) == 1


def test_a_held_message_that_expires_is_never_sent(fake, sender, send, sweep, clock):
    clock.move_to(dt.datetime(2025, 6, 10, 23, 0, tzinfo=NEW_YORK), tick=False)
    message = send(kind="sessionless", proactive=True, expires_at=dt.datetime(2025, 6, 11, 1, 0, tzinfo=NEW_YORK))
    assert message.status == MessageStatus.HELD

    clock.move_to(dt.datetime(2025, 6, 11, 1, 5, tzinfo=NEW_YORK), tick=False)
    sweep()

    message.refresh_from_db()
    assert message.status == MessageStatus.EXPIRED
    assert history(message) == ["held", "expired"]

    clock.move_to(dt.datetime(2025, 6, 11, 9, 0, tzinfo=NEW_YORK), tick=False)
    assert sweep() == 0
    message.refresh_from_db()
    assert message.status == MessageStatus.EXPIRED
    assert fake.requests == []


def test_a_held_message_expires_a_day_after_its_window_by_default(fake, sender, send, sweep, clock):
    clock.move_to(dt.datetime(2025, 6, 10, 23, 0, tzinfo=NEW_YORK), tick=False)
    message = send(kind="api", proactive=True)

    clock.move_to(dt.datetime(2025, 6, 12, 8, 30, tzinfo=NEW_YORK), tick=False)  # the sweeper was down
    sweep()

    message.refresh_from_db()
    assert message.status == MessageStatus.EXPIRED
    assert fake.requests == []


def test_a_non_proactive_message_ignores_quiet_hours(fake, sender, send, clock):
    clock.move_to(dt.datetime(2025, 6, 10, 23, 0, tzinfo=NEW_YORK), tick=False)

    message = send(kind="agent", proactive=False)

    assert message.provider_sid and len(fake.sent_messages) == 1


def test_a_proactive_message_inside_the_window_goes_out_at_once(fake, sender, send, clock):
    clock.move_to(dt.datetime(2025, 6, 10, 10, 0, tzinfo=NEW_YORK), tick=False)

    message = send(kind="api", proactive=True)

    assert message.provider_sid and history(message) == ["queued"]


def test_quiet_hours_use_the_configured_window_and_the_recipients_zone(fake, sender, send, clock):
    update_chat_settings(quiet_hours_start=dt.time(9, 0), quiet_hours_end=dt.time(22, 0))
    # 21:30 in New York is 18:30 in Los Angeles: inside the window there, outside it here.
    clock.move_to(dt.datetime(2025, 6, 10, 21, 30, tzinfo=NEW_YORK), tick=False)

    in_new_york = send(kind="api", proactive=True, to="+12125550123")
    in_los_angeles = send(kind="api", proactive=True, to="+14155550123", body="Other")

    assert in_new_york.status == MessageStatus.QUEUED and in_new_york.provider_sid
    assert in_los_angeles.status == MessageStatus.QUEUED and in_los_angeles.provider_sid

    clock.move_to(dt.datetime(2025, 6, 10, 22, 0, tzinfo=NEW_YORK), tick=False)
    late = send(kind="api", proactive=True, to="+12125550123", body="Late")
    assert late.status == MessageStatus.HELD
    assert late.next_attempt_at == dt.datetime(2025, 6, 11, 9, 0, tzinfo=NEW_YORK)


# --- size limits and segments ------------------------------------------------------------------


def test_a_body_over_1600_characters_is_refused(fake, sender, send):
    with pytest.raises(SendRefused) as refused:
        send(body="a" * 1601)

    assert refused.value.message == "message exceeds maximum number of characters by 1"
    assert not OutboundMessage.objects.exists()
    assert fake.requests == []

    assert send(body="a" * 1600).provider_sid


def test_more_than_ten_media_are_refused(fake, sender, send):
    urls = [f"https://cdn.example.com/{i}.jpg" for i in range(11)]

    with pytest.raises(SendRefused) as refused:
        send(body="pictures", media_urls=urls)

    assert "10" in refused.value.message
    assert not OutboundMessage.objects.exists()
    assert send(body="pictures", media_urls=urls[:10]).provider_sid


def test_an_empty_message_is_refused(fake, sender, send):
    with pytest.raises(SendRefused) as refused:
        send(body="   ")

    assert refused.value.message == "message is required"


def test_the_segment_count_is_stored(fake, sender, send):
    long_gsm = send(body="a" * 161)
    emoji = send(body="Thanks! 🙂")

    assert (long_gsm.encoding, long_gsm.segments) == ("GSM-7", 2)
    assert (emoji.encoding, emoji.segments) == ("UCS-2", 1)


# --- the number's sending limits ---------------------------------------------------------------


def test_the_daily_limit_makes_the_next_message_wait_for_the_next_day(fake, send, sweep, clock):
    make_sending_number(SENDER, messages_per_day=2)

    first = send(body="one")
    second = send(body="two")
    third = send(body="three")

    assert first.provider_sid and second.provider_sid
    assert third.status == MessageStatus.QUEUED
    assert third.provider_sid is None and third.attempts == 0
    assert third.next_attempt_at == dt.datetime(2025, 6, 11, 0, 0, tzinfo=UTC)  # the next day's window
    assert len(posts(fake)) == 2

    clock.shift(dt.timedelta(hours=1))
    assert sweep() == 0
    assert len(posts(fake)) == 2

    clock.move_to(dt.datetime(2025, 6, 11, 0, 0, 1, tzinfo=UTC), tick=False)
    assert sweep() == 1
    third.refresh_from_db()
    assert third.provider_sid and third.attempts == 1
    assert [m["Body"] for m in fake.sent_messages] == ["one", "two", "three"]


def test_a_burst_over_the_per_second_limit_waits_for_the_next_second(fake, send, clock, monkeypatch):
    make_sending_number(SENDER, messages_per_second=1)
    clock.move_to(dt.datetime(2025, 6, 10, 15, 0, 0, 250000, tzinfo=UTC), tick=False)
    slept = []

    def sleep(seconds):  # the worker sleeps; here the clock moves instead
        slept.append(seconds)
        clock.shift(seconds)

    monkeypatch.setattr(sending_limits, "time", SimpleNamespace(sleep=sleep))

    first = send(body="one")
    second = send(body="two")

    assert first.provider_sid and second.provider_sid
    assert slept == [pytest.approx(0.75)]
    assert len(fake.sent_messages) == 2


def test_a_message_waiting_for_the_sending_limit_expires_on_time(fake, send, sweep, clock):
    make_sending_number(SENDER, messages_per_day=1)
    send(body="one")
    waiting = send(kind="sessionless", body="two", expires_at=dt.datetime(2025, 6, 10, 17, 0, tzinfo=UTC))
    assert waiting.status == MessageStatus.QUEUED and waiting.next_attempt_at.date() == dt.date(2025, 6, 11)

    clock.move_to(dt.datetime(2025, 6, 10, 17, 0, 1, tzinfo=UTC), tick=False)
    sweep()

    waiting.refresh_from_db()
    assert waiting.status == MessageStatus.EXPIRED
    assert len(posts(fake)) == 1


def test_the_send_task_does_not_send_a_message_that_expired_in_the_task_queue(fake, sender, clock):
    message = queue_sms(  # the on-commit enqueue never runs: the task waits in the broker
        to=CONSUMER, from_number=SENDER, body="Hi", kind="sessionless",
        expires_at=dt.datetime(2025, 6, 10, 16, 0, tzinfo=UTC),
    )

    clock.move_to(dt.datetime(2025, 6, 10, 16, 0, tzinfo=UTC), tick=False)

    assert send_message(message.pk) == "expired"
    message.refresh_from_db()
    assert message.status == MessageStatus.EXPIRED and fake.requests == []


def test_a_message_that_expired_unsent_does_not_count_as_sent(fake, sender, send, sweep, clock):
    clock.move_to(dt.datetime(2025, 6, 10, 23, 0, tzinfo=NEW_YORK), tick=False)
    expiring = send(kind="api", proactive=True, body="Hello", expires_at=dt.datetime(2025, 6, 10, 23, 10, tzinfo=NEW_YORK))
    with pytest.raises(SendRefused):
        send(kind="api", proactive=True, body="Hello")  # the held one still counts

    clock.shift(dt.timedelta(minutes=11))
    sweep()
    expiring.refresh_from_db()
    assert expiring.status == MessageStatus.EXPIRED

    again = send(kind="api", proactive=True, body="Hello")
    assert again.status == MessageStatus.HELD
