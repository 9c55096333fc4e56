"""Wait-time SMS over Twilio Voice (SPEC B1): the signed webhooks under /sms/twilio/voice/, driven
as Twilio drives them — the call comes in and is enqueued, Twilio fetches the wait URL while the
caller holds, the <Gather> posts the digit, the agent's <Dial><Queue url> connects, the status
callback ends the call. Every voice webhook refuses a request Twilio did not sign."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from django.core.files.base import ContentFile

from chats.models import Call, CallSource, CallStatus, ChatStatus, WaitTimeSmsStatus
from chats.calls.voice import twilio_queue_name
from portal.models import BlendingMessages, CrmRecord
from sms.models import OutboundMessage
from tests.chats.calls import CALLER, CONSENT, IN_CALL, INCORRECT, SMS_SENT, WAIT_TIME_SMS
from tests.factories import make_agent
from tests.webhooks import new_sid, post_signed

VOICE = "/sms/twilio/voice/"
VOICE_NUMBER = "+15550100099"


class TwilioVoice:
    """Twilio's side of one call: every request signed, every answer parsed as TwiML."""

    def __init__(self, client, capture, call_sid: str, caller: str = CALLER):
        self.client = client
        self.capture = capture
        self.call_sid = call_sid
        self.caller = caller

    def post(self, path: str, status: int = 200, **params) -> ET.Element | None:
        base = {"CallSid": self.call_sid, "AccountSid": "AC" + "1" * 32, "From": self.caller, "To": VOICE_NUMBER}
        with self.capture(execute=True):
            response = post_signed(self.client, VOICE + path, {**base, **params})
        assert response.status_code == status, response.content
        if status != 200:
            return None
        assert response["Content-Type"].startswith("text/xml")
        return ET.fromstring(response.content)

    def incoming(self, query: str = "", **params):
        return self.post("incoming/" + (f"?{query}" if query else ""), CallStatus="ringing", **params)

    def wait(self):
        return self.post("wait/", QueuePosition="1", QueueTime="30", AvgQueueTime="60", CurrentQueueSize="1")

    def press(self, digits: str):
        return self.post("consent/", Digits=digits)

    def call(self) -> Call:
        return Call.objects.get(call_sid=self.call_sid)


@pytest.fixture
def twilio(client, django_capture_on_commit_callbacks, blended, auth_token):
    return TwilioVoice(client, django_capture_on_commit_callbacks, call_sid=new_sid("CA"))


@pytest.fixture
def at_the_prompt(twilio, clock):
    """The call came in and, a minute later, heard the consent prompt: Twilio is gathering the digit."""
    twilio.incoming()
    clock.shift(dt.timedelta(seconds=60))
    twilio.wait()
    return twilio


def verbs(twiml: ET.Element) -> list[str]:
    return [child.tag for child in twiml]


def gather_of(twiml: ET.Element) -> ET.Element:
    gather = twiml.find("Gather")
    assert gather is not None, ET.tostring(twiml)
    return gather


# --- the call comes in -------------------------------------------------------------------------------


def test_an_incoming_call_is_enqueued_with_the_portals_wait_url(twilio, blended):
    twiml = twilio.incoming(f"queue={blended.pk}")

    enqueue = twiml.find("Enqueue")
    assert enqueue.text == twilio_queue_name(blended) == f"tern-queue-{blended.pk}"
    assert enqueue.get("waitUrl") == "/sms/twilio/voice/wait/"
    assert enqueue.get("waitUrlMethod") == "POST"
    assert enqueue.get("action") == "/sms/twilio/voice/dequeued/"
    call = twilio.call()
    assert (call.caller_number, call.dialed_number, call.queue, call.source) == (
        CALLER, VOICE_NUMBER, blended, CallSource.TWILIO,
    )
    assert call.status == CallStatus.QUEUED and call.sms_number.number == IN_CALL


def test_the_queue_can_be_named_and_the_language_chosen(twilio, blended, chat_settings):
    chat_settings.enabled_languages = ["en", "es"]
    chat_settings.save()

    twilio.incoming("queue=billing&lang=es")

    call = twilio.call()
    assert call.queue == blended and call.language == "es"


def test_without_a_queue_parameter_the_first_wait_time_queue_takes_the_call(twilio, blended):
    twilio.incoming()

    assert twilio.call().queue == blended


def test_an_unknown_queue_is_told_politely_and_hangs_up(twilio):
    twiml = twilio.incoming("queue=nowhere")

    assert verbs(twiml) == ["Say", "Hangup"]
    assert not Call.objects.exists()


def test_a_retried_incoming_webhook_is_the_same_call(twilio):
    twilio.incoming()
    twilio.incoming()

    assert Call.objects.count() == 1


# --- signatures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["incoming/", "wait/", "consent/", "connect/?agent=1", "dequeued/", "status/"])
def test_every_voice_webhook_refuses_an_unsigned_request(client, blended, auth_token, path):
    response = client.post(VOICE + path, {"CallSid": "CA1", "From": CALLER, "Digits": "1"})

    assert response.status_code == 403
    assert not Call.objects.exists()


@pytest.mark.parametrize("path", ["incoming/", "wait/", "consent/"])
def test_a_signature_for_other_parameters_or_another_token_is_refused(client, blended, auth_token, path):
    forged = post_signed(client, VOICE + path, {"CallSid": "CA1", "From": CALLER}, signature="bm90IGEgc2lnbmF0dXJl")
    other = post_signed(client, VOICE + path, {"CallSid": "CA1", "From": CALLER}, token="another-token")

    assert forged.status_code == 403 and other.status_code == 403
    assert not Call.objects.exists()


def test_a_get_is_not_allowed(client, blended, auth_token):
    assert client.get(VOICE + "incoming/").status_code == 405


# --- the wait URL and the consent prompt ---------------------------------------------------------------


def test_before_the_interval_the_caller_holds_and_is_sent_back_to_the_wait_url(twilio, clock):
    twilio.incoming()

    twiml = twilio.wait()

    assert verbs(twiml) == ["Pause", "Redirect"]
    assert int(twiml.find("Pause").get("length")) == 30
    assert twiml.find("Redirect").text == "/sms/twilio/voice/wait/"


def test_hold_music_plays_when_configured(twilio, clock, settings):
    settings.VOICE_HOLD_MUSIC_URL = "https://example.com/hold.mp3"
    twilio.incoming()

    twiml = twilio.wait()

    assert verbs(twiml) == ["Play", "Redirect"]
    assert twiml.find("Play").text == "https://example.com/hold.mp3"


def test_at_the_interval_the_consent_prompt_is_gathered(twilio, clock):
    twilio.incoming()
    clock.shift(dt.timedelta(seconds=60))

    twiml = twilio.wait()

    gather = gather_of(twiml)
    assert gather.get("numDigits") == "1" and gather.get("timeout") == "10"
    assert gather.get("action") == "/sms/twilio/voice/consent/"
    assert gather.get("actionOnEmptyResult") == "true"
    say = gather.find("Say")
    assert say.text == CONSENT and say.get("language") == "en-US"
    assert twilio.call().prompt_plays == 1


def test_an_uploaded_consent_recording_is_played_instead(twilio, clock, in_call_settings, client):
    row = BlendingMessages.objects.get(settings=in_call_settings, language="en")
    row.consent_prompt_audio.save("consent.mp3", ContentFile(b"ID3 fake mp3"), save=True)
    twilio.incoming()
    clock.shift(dt.timedelta(seconds=60))

    gather = gather_of(twilio.wait())

    assert gather.find("Say") is None
    url = gather.find("Play").text
    assert url == "http://testserver/sms/twilio/voice/prompt/en/consent/"
    audio = client.get("/sms/twilio/voice/prompt/en/consent/")
    assert audio.status_code == 200 and b"".join(audio.streaming_content) == b"ID3 fake mp3"
    assert client.get("/sms/twilio/voice/prompt/fr/consent/").status_code == 404


def test_spanish_callers_hear_the_spanish_prompt(twilio, clock, in_call_settings, chat_settings):
    chat_settings.enabled_languages = ["en", "es"]
    chat_settings.save()
    BlendingMessages.objects.create(
        settings=in_call_settings, language="es", consent_prompt="Para enviarnos detalles por SMS, marque 1."
    )
    twilio.incoming("lang=es")
    clock.shift(dt.timedelta(seconds=60))

    say = gather_of(twilio.wait()).find("Say")

    assert say.text == "Para enviarnos detalles por SMS, marque 1." and say.get("language") == "es-US"


def test_digit_1_plays_sms_sent_sends_the_sms_and_goes_back_to_waiting(twilio, at_the_prompt, caller_phone):
    twiml = twilio.press("1")

    assert verbs(twiml) == ["Say", "Redirect"]
    assert twiml.find("Say").text == SMS_SENT
    assert twiml.find("Redirect").text == "/sms/twilio/voice/wait/"
    assert twilio.call().wait_time_sms_status == WaitTimeSmsStatus.ALLOWED
    assert caller_phone.new_texts() == [WAIT_TIME_SMS]
    assert OutboundMessage.objects.get().from_number == IN_CALL


def test_digit_2_goes_back_to_waiting_and_is_never_asked_again(twilio, clock, at_the_prompt):
    twiml = twilio.press("2")

    assert verbs(twiml) == ["Redirect"]
    assert twilio.call().wait_time_sms_status == WaitTimeSmsStatus.DENIED
    clock.shift(dt.timedelta(minutes=10))
    assert verbs(twilio.wait()) == ["Pause", "Redirect"]


def test_another_digit_says_so_and_asks_again(twilio, at_the_prompt):
    twiml = twilio.press("9")

    assert verbs(twiml) == ["Say", "Gather"]
    assert twiml.find("Say").text == INCORRECT
    assert gather_of(twiml).find("Say").text == CONSENT
    assert twilio.call().wait_time_sms_status == WaitTimeSmsStatus.NONE


def test_no_digit_is_no_response_and_back_to_waiting(twilio, at_the_prompt):
    twiml = twilio.press("")

    assert verbs(twiml) == ["Redirect"]
    assert twilio.call().wait_time_sms_status == WaitTimeSmsStatus.NO_RESPONSE


def test_the_wait_url_of_a_call_the_portal_does_not_know_just_holds(twilio):
    twiml = twilio.wait()

    assert verbs(twiml) == ["Pause", "Redirect"]


# --- the agent takes the call; the call ends ------------------------------------------------------------


def test_the_agent_side_connecting_assigns_the_call_and_raises_the_banner(
    twilio, alice_agent, at_the_prompt, caller_phone, heard
):
    twilio.press("1")
    caller_phone.text("The screen says E42")

    twiml = twilio.post("connect/?agent=alice", QueueSid="QU1", DequeingCallSid="CAagent")

    assert verbs(twiml) == []
    call = twilio.call()
    assert call.status == CallStatus.ASSIGNED and call.agent == alice_agent
    assert call.chat.status == ChatStatus.ASSIGNED
    banners = [event for _, event in heard if event["type"] == "call.banner"]
    assert len(banners) == 1 and banners[0]["message_count"] == 1


def test_the_agent_can_be_named_by_id(twilio):
    alice = make_agent("alice")
    twilio.incoming()

    twilio.post(f"connect/?agent={alice.pk}")

    assert twilio.call().agent == alice


def test_a_caller_hanging_up_in_the_queue_abandons_the_call(twilio, operation_settings, at_the_prompt, caller_phone):
    operation_settings.abandoned_call_ticket = True
    operation_settings.save()
    twilio.press("1")
    caller_phone.text("Here is a photo of the damage")

    twiml = twilio.post("dequeued/", QueueResult="hangup", QueueTime="95")

    assert verbs(twiml) == []
    call = twilio.call()
    assert call.status == CallStatus.ABANDONED
    assert call.crm_record is not None
    assert CrmRecord.objects.get().entries.filter(kind="abandoned_call").exists()
    assert call.chat.status == ChatStatus.FINISHED


def test_a_bridged_call_is_not_abandoned_when_it_leaves_the_queue(twilio):
    alice = make_agent("alice")
    twilio.incoming()
    twilio.post("connect/?agent=alice")

    twilio.post("dequeued/", QueueResult="bridged")

    assert twilio.call().status == CallStatus.ASSIGNED
    assert twilio.call().agent == alice


def test_the_status_callback_ends_an_answered_call(twilio):
    make_agent("alice")
    twilio.incoming()
    twilio.post("connect/?agent=alice")

    response = post_signed(twilio.client, VOICE + "status/", {"CallSid": twilio.call_sid, "CallStatus": "completed"})

    assert response.status_code == 204
    call = twilio.call()
    assert call.status == CallStatus.ENDED and call.ended_at is not None


def test_a_status_for_an_unknown_call_is_ignored(client, blended, auth_token):
    response = post_signed(client, VOICE + "status/", {"CallSid": "CAunknown", "CallStatus": "completed"})

    assert response.status_code == 204


def test_behind_a_proxy_the_public_url_is_signed(client, django_capture_on_commit_callbacks, blended, auth_token, settings):
    settings.PUBLIC_BASE_URL = "https://tern.example.com"
    voice = TwilioVoice(client, django_capture_on_commit_callbacks, call_sid="CAproxy")

    twiml = voice.incoming("queue=billing")

    assert twiml.find("Enqueue") is not None
    assert Call.objects.filter(call_sid="CAproxy").exists()


def test_a_queue_that_is_a_menu_cannot_take_calls(twilio, support):
    twiml = twilio.incoming(f"queue={support.menu.pk}")

    assert verbs(twiml) == ["Say", "Hangup"]
    assert not Call.objects.exists()
