"""Pre-session SMS deflection (SPEC B4, issue 14 item 8): a caller waiting in an IVR queue with
deflection on is offered once, past the queue's estimated-wait threshold, to continue by text; on
3 the IVR is told to hang up and an SMS chat starts in the chosen queue, already queued with the
caller's place, chat type SMS and start type Deflection — through the same functions the Twilio
Voice webhooks and the JSON IVR API call, and through both of them."""
from __future__ import annotations

import datetime as dt

import pytest

from chats.calls import consent, deflection
from chats.models import Call, CallStatus, Chat, ChatStatus, ChatType, StartType, WaitTimeSmsStatus
from portal.models import CrmEntry
from queues.models import QueueBlendingMessages
from tests.chats.calls import CALLER, IN_CALL, reload
from tests.chats.conftest import BILLING_QUEUED, queued_in_billing
from tests.chats.test_voice import TwilioVoice, verbs
from tests.webhooks import new_sid


@pytest.fixture
def deflecting(blended):
    """Billing offers deflection from an estimated wait of two minutes (a caller alone in the
    queue, with no history, is estimated at 300 s)."""
    blended.deflection_enabled = True
    blended.deflection_min_wait_seconds = 120
    blended.save()
    return blended


def wait(committed, call):
    return committed(consent.wait_step, call_sid=call.call_sid)[1]


def press(committed, call, digit):
    return committed(consent.apply_digit, call_sid=call.call_sid, digit=digit)[1]


def test_the_offer_comes_once_then_the_wait_time_sms_prompt_as_before(deflecting, new_call, committed, clock):
    call = new_call()

    first = wait(committed, call)

    assert first.action == "deflect" and first.prompt.text == deflection.DEFAULT_PROMPT
    assert press(committed, call, "").outcome == "ignored"  # no digit: the caller keeps waiting
    clock.shift(dt.timedelta(seconds=60))
    assert wait(committed, call).action == "consent"  # offered once; the wait-time SMS goes on


def test_pressing_3_ends_the_call_and_starts_a_queued_sms_chat_keeping_the_place(
    deflecting, new_call, committed, clock, make_phone, caller_phone
):
    call = new_call()
    clock.shift(dt.timedelta(seconds=90))
    earlier_texter = make_phone("+15557650077")
    queued_in_billing(earlier_texter)  # queued in Billing after the call entered it
    wait(committed, call)

    result = press(committed, call, "3")

    assert (result.outcome, result.hang_up) == ("deflected", True)
    assert [p.text for p in result.prompts] == [deflection.DEFAULT_GOODBYE]
    call = reload(call)
    chat = call.deflected_chat
    assert call.status == CallStatus.DEFLECTED and call.ended_at is not None
    assert (chat.chat_type, chat.start_type, chat.status, chat.queue) == (ChatType.SMS, StartType.DEFLECTION, ChatStatus.QUEUED, deflecting)
    assert chat.queued_at == call.queued_at  # the caller's place is kept
    assert chat.portal_number.number == IN_CALL and chat.consumer_number == CALLER
    assert caller_phone.new_texts() == [BILLING_QUEUED]
    ahead = Chat.objects.filter(queue=deflecting, status=ChatStatus.QUEUED).order_by("queued_at", "pk")
    assert list(ahead)[0] == chat  # ahead of the texter who queued after the call did
    entries = list(CrmEntry.objects.filter(record=call.crm_record).values_list("kind", flat=True))
    assert entries[-2:] == ["deflection_offered", "deflected"] and chat.crm_record == call.crm_record
    # The caller's texts now go to the chat, like any SMS chat's.
    caller_phone.text("My order number is 1234")
    assert chat.messages.filter(body="My order number is 1234").exists()
    # The call is over: the IVR's later "ended" changes nothing.
    assert press(committed, call, "3").outcome == "ignored"


def test_the_chat_goes_to_the_chosen_queue_and_an_agent_takes_it_first(
    deflecting, support, new_call, committed, alice, go_online, make_phone
):
    deflecting.deflection_queue = support.tech
    deflecting.save()
    support.tech.agents.add(alice)
    call = new_call()
    wait(committed, call)

    press(committed, call, "3")
    go_online(alice)

    chat = reload(call).deflected_chat
    chat.refresh_from_db()
    assert chat.queue == support.tech and chat.status == ChatStatus.ASSIGNED and chat.agent == alice


def test_not_offered_below_the_threshold(deflecting, new_call, committed):
    deflecting.deflection_min_wait_seconds = 301
    deflecting.save()
    call = new_call()

    assert wait(committed, call).action != "deflect"
    assert press(committed, call, "3").outcome == "ignored"  # 3 without the offer does nothing
    assert reload(call).status == CallStatus.QUEUED


@pytest.mark.parametrize("caller", ["anonymous", "+442079460000"])
def test_not_offered_to_a_number_that_cannot_receive_texts(deflecting, new_call, committed, caller):
    call = new_call(caller=caller)

    refusal = deflection.offer_refusal(reload(call), lambda: 999)

    assert refusal == "The caller's number cannot receive text messages."
    assert wait(committed, call).action != "deflect"


def test_not_offered_when_off_or_when_the_caller_already_has_a_chat_there(deflecting, new_call, in_call_number):
    Chat.objects.create(consumer_number=CALLER, portal_number=in_call_number, status=ChatStatus.QUEUED)
    call = new_call()

    assert deflection.offer_refusal(reload(call), lambda: 999) == "The caller already has a chat on that number."
    deflecting.deflection_enabled = False
    deflecting.save()
    assert deflection.offer_refusal(reload(call), lambda: 999) == "Deflection is off for this queue."


def test_the_queues_own_words_are_read(deflecting, new_call, committed):
    QueueBlendingMessages.objects.create(
        queue=deflecting, language="en", deflection_prompt="Press 3 to chat by text.", deflection_goodbye="Texting you. Bye!"
    )
    call = new_call()

    assert wait(committed, call).prompt.text == "Press 3 to chat by text."
    assert [p.text for p in press(committed, call, "3").prompts] == ["Texting you. Bye!"]


# --- through Twilio Voice and the JSON IVR API ------------------------------------------------------


def test_twilio_voice_gathers_3_and_hangs_up(deflecting, client, django_capture_on_commit_callbacks, auth_token):
    twilio = TwilioVoice(client, django_capture_on_commit_callbacks, call_sid=new_sid("CA"))
    twilio.incoming()

    offer = twilio.wait()
    gather = offer.find("Gather")
    assert gather is not None and gather.find("Say").text == deflection.DEFAULT_PROMPT

    bye = twilio.press("3")

    assert verbs(bye) == ["Say", "Hangup"]
    assert twilio.call().status == CallStatus.DEFLECTED
    twilio.post("status/", status=204, CallStatus="completed")  # Twilio's callback after the hangup changes nothing
    assert twilio.call().status == CallStatus.DEFLECTED and twilio.call().deflected_chat.status == ChatStatus.QUEUED


def test_the_ivr_api_offers_and_says_hang_up(deflecting, client, django_capture_on_commit_callbacks):
    from tests.api_client import make_api

    api = make_api(client, django_capture_on_commit_callbacks, name="IVR")
    url = "/apps/api/v1/ivr/calls"
    assert api.post(url, {"call_id": "ivr-1", "caller_number": CALLER, "queue_id": deflecting.pk}).status_code == 201

    offer = api.post(f"{url}/ivr-1/wait", {}).json()
    answer = api.post(f"{url}/ivr-1/digit", {"digit": "3"}).json()

    assert offer["action"] == "deflect" and offer["prompts"][0]["kind"] == "deflection"
    assert (answer["outcome"], answer["then"]) == ("deflected", "hangup")
    assert answer["call"]["status"] == "deflected"
    assert Call.objects.get(call_sid="ivr-1").wait_time_sms_status == WaitTimeSmsStatus.NONE
