"""Wait-time SMS (SPEC B1, C7, C8) through chats.calls, the functions both the Twilio Voice
webhooks and the JSON IVR API call: when the consent prompt plays (interval, play limit,
estimated-wait window, switches, non-US rule), each digit branch, the caller's texts attaching to
the call, the banner when the call reaches an agent, the CRM posts and the abandoned-call ticket."""
from __future__ import annotations

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chats import events, sweepers
from chats.calls import consent, lifecycle
from chats.models import (
    Author,
    Call,
    CallSource,
    CallStatus,
    Chat,
    ChatStatus,
    ChatType,
    FinishReason,
    Media,
    Message,
    Participant,
    ParticipantType,
    WaitTimeSmsStatus,
)
from portal.models import AgentStatus, CrmEntry, CrmRecord
from queues.models import QueueBlendingMessages
from sms.models import MessageStatus, OutboundMessage
from sms.pipeline import add_do_not_contact
from tests.chats.calls import (
    AFTER_SESSION,
    CALLER,
    CLOSING,
    CONSENT,
    IN_CALL,
    INCORRECT,
    OTHER_CALLER,
    SMS_SENT,
    UK_CALLER,
    WAIT_TIME_SMS,
    ask,
    open_agent_socket,
    reload,
)
from tests.chats.conftest import CONSUMER, PORTAL
from tests.factories import make_agent, make_number

SECOND = dt.timedelta(seconds=1)


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def texts_to(number: str) -> list[str]:
    return list(
        OutboundMessage.objects.filter(to_number=number)
        .exclude(status=MessageStatus.SUPPRESSED)
        .order_by("pk")
        .values_list("body", flat=True)
    )


def step(committed, call):
    return committed(consent.wait_step, call_sid=call.call_sid)[1]


# --- when the consent prompt plays ------------------------------------------------------------------


def test_the_consent_prompt_plays_at_the_announcement_interval_and_not_before(new_call, committed, clock):
    call = new_call()

    assert step(committed, call).action == "hold"
    clock.shift(seconds(60) - SECOND)
    held = step(committed, call)
    assert held.action == "hold"
    assert held.hold_seconds == 5  # one second to go; never shorter than five
    assert reload(call).prompt_plays == 0

    clock.shift(SECOND)
    prompt = step(committed, call)

    assert prompt.action == "consent"
    assert prompt.prompt.text == CONSENT and prompt.prompt.language == "en"
    call = reload(call)
    assert call.prompt_plays == 1 and call.last_prompt_at == timezone.now()
    assert call.wait_time_sms_status == WaitTimeSmsStatus.NONE
    assert call.consent_deadline_at is None  # Twilio's <Gather> times the 10 s itself


def test_the_hold_lasts_until_the_next_prompt_is_due(new_call, committed, clock):
    call = new_call()
    clock.shift(seconds(40))

    assert step(committed, call).hold_seconds == 20


def test_the_queue_interval_beats_the_global_interval(blended, new_call, committed, clock):
    blended.announcement_interval_seconds = 20
    blended.save()
    call = new_call()

    clock.shift(seconds(20))
    assert step(committed, call).action == "consent"


def test_digit_1_allows_sends_the_wait_time_sms_and_keeps_the_call_queued(new_call, committed, clock):
    call = new_call()
    clock.shift(seconds(60))

    _, result = ask(committed, call, digit="1")

    assert result.outcome == "allowed"
    assert [p.text for p in result.prompts] == [SMS_SENT]
    assert result.ask_again is False
    call = reload(call)
    assert call.wait_time_sms_status == WaitTimeSmsStatus.ALLOWED
    assert call.status == CallStatus.QUEUED
    sent = OutboundMessage.objects.get(to_number=CALLER)
    assert (sent.from_number, sent.body, sent.kind) == (IN_CALL, WAIT_TIME_SMS, "blending")
    chat = call.chat
    assert chat.chat_type == ChatType.WAIT_TIME_SMS
    assert chat.status == ChatStatus.QUEUED and chat.queue is None and chat.agent is None
    assert chat.deadline_at is None
    assert list(chat.messages.values_list("author", "body")) == [(Author.SYSTEM, WAIT_TIME_SMS)]


def test_after_allowing_the_caller_is_never_asked_again(new_call, committed, clock):
    call = new_call()
    clock.shift(seconds(60))
    ask(committed, call, digit="1")

    clock.shift(dt.timedelta(minutes=30))
    later = step(committed, call)

    assert later.action == "hold" and "already answered" in later.reason
    assert reload(call).prompt_plays == 1


def test_digit_2_denies_and_the_caller_is_never_asked_again(new_call, committed, clock):
    call = new_call()
    clock.shift(seconds(60))

    _, result = ask(committed, call, digit="2")

    assert result.outcome == "denied" and result.prompts == []
    assert reload(call).wait_time_sms_status == WaitTimeSmsStatus.DENIED
    assert texts_to(CALLER) == []
    clock.shift(dt.timedelta(minutes=30))
    assert step(committed, call).action == "hold"
    assert reload(call).status == CallStatus.QUEUED


def test_another_digit_plays_the_incorrect_selection_prompt_and_asks_again(new_call, committed, clock):
    call = new_call()
    clock.shift(seconds(60))

    _, result = ask(committed, call, digit="7")

    assert result.outcome == "incorrect"
    assert [p.text for p in result.prompts] == [INCORRECT, CONSENT]
    assert result.ask_again is True
    call = reload(call)
    assert call.wait_time_sms_status == WaitTimeSmsStatus.NONE
    assert call.prompt_plays == 1  # the same offer, asked again

    _, then = committed(consent.apply_digit, call_sid=call.call_sid, digit="1")
    assert then.outcome == "allowed"
    assert texts_to(CALLER) == [WAIT_TIME_SMS]


def test_no_digit_is_no_response_and_the_prompt_comes_again_at_the_next_interval(new_call, committed, clock):
    call = new_call()
    clock.shift(seconds(60))

    _, result = ask(committed, call, digit="")

    assert result.outcome == "no_response"
    assert reload(call).wait_time_sms_status == WaitTimeSmsStatus.NO_RESPONSE
    clock.shift(seconds(59))
    assert step(committed, call).action == "hold"
    clock.shift(SECOND)
    assert step(committed, call).action == "consent"
    assert reload(call).prompt_plays == 2


def test_a_digit_nobody_asked_for_or_a_retried_digit_changes_nothing(new_call, committed, clock):
    call = new_call()
    _, early = committed(consent.apply_digit, call_sid=call.call_sid, digit="1")
    assert early.outcome == "ignored"

    clock.shift(seconds(60))
    ask(committed, call, digit="1")
    _, retried = committed(consent.apply_digit, call_sid=call.call_sid, digit="1")

    assert retried.outcome == "ignored"
    assert texts_to(CALLER) == [WAIT_TIME_SMS]  # one SMS


def test_the_play_limit_stops_the_prompt(in_call_settings, new_call, committed, clock):
    in_call_settings.consent_play_limit = 2
    in_call_settings.save()
    call = new_call()
    for _ in range(2):
        clock.shift(seconds(60))
        ask(committed, call, digit="")

    clock.shift(seconds(60))
    held = step(committed, call)

    assert held.action == "hold" and "as often as allowed" in held.reason
    assert reload(call).prompt_plays == 2


def test_the_queue_play_limit_beats_the_global_limit(in_call_settings, blended, new_call, committed, clock):
    in_call_settings.consent_play_limit = 5
    in_call_settings.save()
    blended.consent_play_limit = 1
    blended.save()
    call = new_call()
    clock.shift(seconds(60))
    ask(committed, call, digit="")

    clock.shift(seconds(60))
    assert step(committed, call).action == "hold"


@pytest.mark.parametrize(
    "where, reason",
    [("global", "Wait-time SMS is off"), ("queue", "Wait-time SMS is off")],
)
def test_not_offered_when_wait_time_sms_is_off(in_call_settings, blended, new_call, committed, clock, where, reason):
    if where == "global":
        in_call_settings.wait_time_sms_enabled = False
        in_call_settings.save()
    else:
        blended.wait_time_sms_enabled = False
        blended.save()
    call = new_call()
    clock.shift(seconds(60))

    held = step(committed, call)

    assert held.action == "hold" and reason in held.reason


def test_not_offered_to_a_non_us_caller_unless_allowed(in_call_settings, new_call, committed, clock):
    call = new_call(caller=UK_CALLER)
    clock.shift(seconds(60))
    assert step(committed, call).reason == "Non US phone number service is not enabled"

    in_call_settings.non_us_wait_time_allowed = True
    in_call_settings.save()
    assert step(committed, call).action == "consent"


@pytest.mark.parametrize("caller", ["anonymous", "+266696687", "+442079460000"])
def test_not_offered_to_a_number_that_cannot_receive_texts(in_call_settings, new_call, committed, clock, caller):
    in_call_settings.non_us_wait_time_allowed = True
    in_call_settings.save()
    call = new_call(caller=caller)  # withheld, a bogus number, a UK landline
    clock.shift(seconds(60))

    assert step(committed, call).reason == "The caller's number cannot receive text messages."


def test_not_offered_to_a_caller_who_opted_out(new_call, committed, clock):
    add_do_not_contact(consumer_number=CALLER, portal_number=IN_CALL, source="stop")
    call = new_call()
    clock.shift(seconds(60))

    assert "opted out" in step(committed, call).reason


def test_not_offered_without_an_in_call_sms_number(blended, committed, clock, support):
    call = committed(lifecycle.queue_call, call_sid="CA9", caller_number=CALLER, queue=blended)
    Call.objects.filter(pk=call.pk).update(sms_number=None)
    clock.shift(seconds(60))

    assert step(committed, call).reason == "No in-call SMS number is set up."


def test_the_dialed_number_is_the_sms_number_when_it_is_an_in_call_number(blended, in_call_number, committed):
    from sms.models import NumberUsage

    other = make_number("+15550100009", usage=NumberUsage.IN_CALL)
    call = committed(
        lifecycle.queue_call, call_sid="CA10", caller_number=CALLER, queue=blended, dialed_number=other.number
    )
    assert call.sms_number == other
    fallback = committed(lifecycle.queue_call, call_sid="CA11", caller_number=CALLER, queue=blended, dialed_number="+1555")
    assert fallback.sms_number == in_call_number


def test_a_repeated_call_queued_report_is_the_same_call(new_call):
    first = new_call("CA42")
    again = new_call("CA42")

    assert first.pk == again.pk
    assert Call.objects.count() == 1


# --- the estimated wait time ------------------------------------------------------------------------


def test_the_estimated_wait_follows_the_formula(blended, new_call, committed, clock, support):
    alice = make_agent("alice", status=AgentStatus.AVAILABLE)
    bob = make_agent("bob", status=AgentStatus.AWAY)
    blended.agents.add(alice, bob)
    # Three answered calls of the last week, handled in 100, 200 and 300 seconds: AHT 200 s.
    for index, handled in enumerate([100, 200, 300]):
        ended = timezone.now() - dt.timedelta(hours=index + 1)
        Call.objects.create(
            call_sid=f"CAold{index}", caller_number=OTHER_CALLER, queue=blended, status=CallStatus.ENDED,
            queued_at=ended - dt.timedelta(seconds=handled + 60),
            assigned_at=ended - dt.timedelta(seconds=handled), ended_at=ended,
        )
    first = new_call("CA1", caller=OTHER_CALLER)
    clock.shift(SECOND)
    second = new_call("CA2")

    assert consent.average_handle_seconds(blended) == 200
    assert consent.estimated_wait_seconds(first) == 200  # (0 ahead + 1) × 200 ÷ 1 agent
    assert consent.estimated_wait_seconds(second) == 400  # (1 ahead + 1) × 200 ÷ 1 agent

    bob.status = AgentStatus.AVAILABLE
    bob.save()
    assert consent.estimated_wait_seconds(second) == 200  # ÷ 2 agents


def test_without_history_the_handle_time_is_the_default(blended, new_call):
    call = new_call()

    assert consent.estimated_wait_seconds(call) == consent.DEFAULT_HANDLE_SECONDS


def test_the_prompt_plays_only_inside_the_estimated_wait_window(in_call_settings, new_call, committed, clock):
    in_call_settings.min_estimated_wait_seconds = 500  # the default AHT alone is 300 s
    in_call_settings.max_estimated_wait_seconds = 700
    in_call_settings.save()
    ahead = new_call("CA1", caller=OTHER_CALLER)
    clock.shift(SECOND)
    call = new_call("CA2")
    clock.shift(seconds(60))

    assert consent.estimated_wait_seconds(call) == 600
    assert step(committed, call).action == "consent"

    committed(lifecycle.end_call, call_sid=ahead.call_sid)  # now 300 s: below the minimum
    clock.shift(seconds(60))
    below = step(committed, call)
    assert below.action == "hold" and "below the minimum" in below.reason

    for index in range(2):  # two more callers before it would give 900 s: above the maximum
        Call.objects.create(
            call_sid=f"CAx{index}", caller_number=OTHER_CALLER, queue=call.queue,
            queued_at=call.queued_at - dt.timedelta(minutes=1),
        )
    above = step(committed, call)
    assert above.action == "hold" and "above the maximum" in above.reason


def test_the_queue_wait_window_beats_the_global_one(in_call_settings, blended, new_call, committed, clock):
    in_call_settings.min_estimated_wait_seconds = 1000
    in_call_settings.save()
    blended.min_estimated_wait_seconds = 100
    blended.save()
    call = new_call()
    clock.shift(seconds(60))

    assert step(committed, call).action == "consent"


# --- the 10-second no-answer of IVR API calls -----------------------------------------------------


def test_an_ivr_api_call_without_a_digit_in_10_seconds_is_no_response(new_call, committed, clock):
    call = new_call(source=CallSource.IVR_API)
    clock.shift(seconds(60))
    ask(committed, call)
    assert reload(call).consent_deadline_at == timezone.now() + seconds(10)

    clock.shift(seconds(10) - SECOND)
    assert committed(consent.sweep_calls) == 0
    assert reload(call).wait_time_sms_status == WaitTimeSmsStatus.NONE
    clock.shift(SECOND)
    assert committed(sweepers.run_sweepers)["calls"] == 1

    call = reload(call)
    assert call.wait_time_sms_status == WaitTimeSmsStatus.NO_RESPONSE
    assert call.consent_deadline_at is None
    assert committed(consent.sweep_calls) == 0


def test_an_ivr_api_digit_in_time_clears_the_deadline(new_call, committed, clock):
    call = new_call(source=CallSource.IVR_API)
    clock.shift(seconds(60))
    ask(committed, call, digit="2")
    clock.shift(seconds(30))

    assert committed(consent.sweep_calls) == 0
    assert reload(call).wait_time_sms_status == WaitTimeSmsStatus.DENIED


def test_while_the_ivr_is_asking_the_prompt_is_not_offered_twice(new_call, committed, clock, blended):
    blended.announcement_interval_seconds = 10
    blended.save()
    call = new_call(source=CallSource.IVR_API)
    clock.shift(seconds(10))
    ask(committed, call)
    clock.shift(seconds(5))

    assert step(committed, call).reason == "The caller is being asked right now."


# --- the caller's texts attach to the call ------------------------------------------------------------


@pytest.fixture
def allowed_call(new_call, committed, clock):
    call = new_call()
    clock.shift(seconds(60))
    ask(committed, call, digit="1")
    return reload(call)


def test_the_callers_texts_and_pictures_attach_to_the_call(allowed_call, caller_phone):
    caller_phone.new_texts()

    caller_phone.text("My router shows a red light")
    caller_phone.text("", NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME1", MediaContentType0="image/jpeg")

    chat = reload(allowed_call).chat
    assert [(m.author, m.body) for m in chat.messages.order_by("pk")][1:] == [
        (Author.CONSUMER, "My router shows a red light"),
        (Author.CONSUMER, ""),
    ]
    assert Media.objects.get(message__chat=chat).content_type == "image/jpeg"
    assert Chat.objects.count() == 1  # no SMS chat started
    assert caller_phone.new_texts() == []  # no menu, no do-not-reply
    assert chat.deadline_at is None


def test_a_text_from_another_number_is_not_attached(allowed_call, make_phone, chat_settings):
    stranger = make_phone(OTHER_CALLER, portal=IN_CALL)

    stranger.text("Hello?")

    assert reload(allowed_call).chat.messages.count() == 1
    assert stranger.new_texts() == [chat_settings.do_not_reply_message]


def test_the_caller_texting_the_sms_chat_number_starts_an_ordinary_chat(allowed_call, make_phone):
    phone = make_phone(CALLER, portal=PORTAL)

    phone.text("Hi")

    chat = phone.chat()
    assert chat.chat_type == ChatType.SMS and chat.status == ChatStatus.SELECTING
    assert reload(allowed_call).chat.messages.count() == 1


def test_a_caller_who_ended_the_sms_side_with_exit_is_attached_again(allowed_call, caller_phone):
    caller_phone.text("EXIT")
    assert reload(allowed_call).chat.status == ChatStatus.FINISHED

    caller_phone.text("Sorry, here is the photo")

    call = reload(allowed_call)
    assert call.chat.is_active and call.chat.chat_type == ChatType.WAIT_TIME_SMS
    assert call.chat.messages.get().body == "Sorry, here is the photo"


def test_stop_from_the_caller_ends_the_sms_side_and_nothing_more_is_sent(allowed_call, caller_phone, committed):
    caller_phone.text("STOP")

    call = reload(allowed_call)
    assert call.chat.status == ChatStatus.FINISHED and call.chat.finish_reason == FinishReason.END_USER_STOPPED
    caller_phone.new_texts()
    caller_phone.text("one more thing")
    assert caller_phone.new_texts() == []


# --- the call reaches an agent: the banner and the CRM record -------------------------------------


def test_on_assignment_the_agent_hears_the_banner_and_the_texts_go_to_the_crm(
    allowed_call, caller_phone, alice_agent, committed, heard
):
    caller_phone.text("Order 1234 arrived broken")
    caller_phone.text("", NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME2", MediaContentType0="image/png")
    heard.clear()

    call = committed(lifecycle.assign_call, call_sid=allowed_call.call_sid, agent=alice_agent)

    call = reload(call)
    assert call.status == CallStatus.ASSIGNED and call.agent == alice_agent
    assert call.chat.status == ChatStatus.ASSIGNED and call.chat.agent is None
    assert Participant.objects.get(chat=call.chat, type=ParticipantType.AGENT).agent == alice_agent
    assert Chat.objects.held_by(alice_agent).count() == 0  # SMS chat capacity untouched

    to_alice = [event for group, event in heard if group == events.agent_group(alice_agent.pk)]
    assert [event["type"] for event in to_alice] == ["call.updated", "call.banner"]
    banner = to_alice[1]
    assert banner["banner"] == "Wait Time SMS Received"
    assert (banner["message_count"], banner["media_count"]) == (2, 1)
    assert banner["chat_id"] == call.chat_id
    assert banner["messages_url"] == f"/apps/api/v1/agent/calls/{call.pk}/messages"

    record = call.crm_record
    assert record.reference == f"call:{call.pk}" and record.phone_number == CALLER
    entry = CrmEntry.objects.get(record=record, kind="wait_time_sms")
    assert "Order 1234 arrived broken" in entry.text and "<image/png>" in entry.text
    assert call.chat.crm_record == record


def test_no_banner_when_the_caller_sent_nothing(allowed_call, alice_agent, committed, heard):
    committed(lifecycle.assign_call, call_sid=allowed_call.call_sid, agent=alice_agent)

    assert [event["type"] for _, event in heard].count("call.banner") == 0
    assert not CrmEntry.objects.filter(kind="wait_time_sms").exists()


def test_texts_after_assignment_reach_the_agent_live_and_the_crm(allowed_call, caller_phone, alice_agent, committed, heard):
    committed(lifecycle.assign_call, call_sid=allowed_call.call_sid, agent=alice_agent)
    heard.clear()

    caller_phone.text("Here is the serial number: X1")

    to_alice = [event for group, event in heard if group == events.agent_group(alice_agent.pk)]
    assert [event["type"] for event in to_alice] == ["call.message", "call.banner"]
    assert to_alice[0]["message"]["body"] == "Here is the serial number: X1"
    call = reload(allowed_call)
    assert CrmEntry.objects.filter(record=call.crm_record, kind="call_sms", text="Here is the serial number: X1").exists()


def test_assigning_twice_to_the_same_agent_is_harmless_and_to_another_is_refused(allowed_call, alice_agent, committed):
    from chats.errors import ChatActionError

    committed(lifecycle.assign_call, call_sid=allowed_call.call_sid, agent=alice_agent)
    committed(lifecycle.assign_call, call_sid=allowed_call.call_sid, agent=alice_agent)
    bob = make_agent("bob")

    with pytest.raises(ChatActionError):
        committed(lifecycle.assign_call, call_sid=allowed_call.call_sid, agent=bob)
    assert CrmRecord.objects.count() == 1




@pytest.mark.django_db(transaction=True)
async def test_the_banner_reaches_the_agents_socket(settings):
    """Through the whole ASGI stack: alice's adapter is open when her call arrives."""
    import copy
    import secrets

    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if settings.REDIS_URL:  # a prefix of its own: other suites publish to the same group names
        layers["default"]["CONFIG"]["prefix"] = f"tern-test-{secrets.token_hex(6)}"
    settings.CHANNEL_LAYERS = layers
    setup = await database_sync_to_async(_banner_setup)()
    socket = await open_agent_socket("alice")
    try:
        await database_sync_to_async(_assign)(setup)
        received = []
        while not await socket.receive_nothing(timeout=0.5):
            received.append(await socket.receive_json_from(timeout=1))
    finally:
        await socket.disconnect()

    banners = [event for event in received if event["type"] == "call.banner"]
    assert len(banners) == 1
    assert banners[0]["banner"] == "Wait Time SMS Received"
    assert banners[0]["message_count"] == 1
    assert banners[0]["call"]["caller_number"] == "+1••••••4999"  # masked like chat numbers
    assert any(event["type"] == "call.updated" and event["call"]["status"] == "assigned" for event in received)


def _banner_setup():
    from chats.intake import receive_sms
    from portal.models import InCallSmsSettings
    from queues.models import Queue
    from sms.models import NumberUsage
    from tests.webhooks import new_sid

    make_number(IN_CALL, usage=NumberUsage.IN_CALL, messages_per_second=100)
    settings_row = InCallSmsSettings.load()
    settings_row.wait_time_sms_enabled = True
    settings_row.save()
    queue = Queue.objects.create(name="Billing", wait_time_sms_enabled=True, announcement_interval_seconds=10)
    agent = make_agent("alice", display_name="Alice")
    queue.agents.add(agent)
    call = lifecycle.queue_call(call_sid="CAsock", caller_number=CALLER, queue=queue)
    Call.objects.filter(pk=call.pk).update(queued_at=timezone.now() - dt.timedelta(seconds=30))
    consent.wait_step(call_sid="CAsock")
    consent.apply_digit(call_sid="CAsock", digit="1")
    receive_sms(message_sid=new_sid(), from_number=CALLER, to_number=IN_CALL, body="Photo coming", media=[])
    return {"agent": agent}


def _assign(setup):
    lifecycle.assign_call(call_sid="CAsock", agent=setup["agent"])


# --- the call ends -------------------------------------------------------------------------------------


def test_when_the_call_ends_the_sms_side_ends_with_the_closing_sms(
    allowed_call, alice_agent, caller_phone, committed, in_call_settings
):
    in_call_settings.closing_sms_enabled = True
    in_call_settings.save()
    committed(lifecycle.assign_call, call_sid=allowed_call.call_sid, agent=alice_agent)
    caller_phone.new_texts()

    call = committed(lifecycle.end_call, call_sid=allowed_call.call_sid)

    call = reload(call)
    assert call.status == CallStatus.ENDED and call.ended_at is not None
    assert call.chat.status == ChatStatus.FINISHED
    assert call.chat.finish_reason == FinishReason.CALL_ENDED
    assert caller_phone.new_texts() == [CLOSING]
    assert CrmEntry.objects.filter(record=call.crm_record, kind="transcript").exists()


# --- per-queue texts (seed 001: queue messages override the general ones) ------------------------------


@pytest.fixture
def billing_texts(blended):
    """Billing's own English texts: the consent prompt, the wait-time SMS and the closing SMS; the
    other fields are empty, so the in-call SMS settings' texts apply."""
    return QueueBlendingMessages.objects.create(
        queue=blended,
        language="en",
        consent_prompt="Billing here. Press 1 to text us your invoice, 2 to keep waiting.",
        wait_time_sms_text="Billing: reply with a photo of your invoice.",
        closing_sms="Billing: thanks, this text session has ended.",
    )


def test_a_queues_own_texts_override_the_general_ones_and_the_rest_stay_general(
    billing_texts, new_call, alice_agent, caller_phone, committed, clock, in_call_settings
):
    in_call_settings.closing_sms_enabled = True
    in_call_settings.after_session_auto_response_enabled = True
    in_call_settings.save()
    call = new_call()
    clock.shift(seconds(60))

    step, result = ask(committed, call, digit="1")

    assert step.prompt.text == billing_texts.consent_prompt and step.prompt.audio is False
    assert [p.text for p in result.prompts] == [SMS_SENT]  # Billing did not set it: the general one
    assert caller_phone.new_texts() == ["Billing: reply with a photo of your invoice."]
    committed(lifecycle.assign_call, call_sid=call.call_sid, agent=alice_agent)
    committed(lifecycle.end_call, call_sid=call.call_sid)
    assert caller_phone.new_texts() == ["Billing: thanks, this text session has ended."]
    caller_phone.text("Hello?")
    assert caller_phone.new_texts() == [AFTER_SESSION]


def test_a_queues_texts_in_another_language_leave_this_language_general(billing_texts, new_call, committed, clock):
    billing_texts.language = "es"
    billing_texts.save()
    call = new_call()
    clock.shift(seconds(60))

    step, _ = ask(committed, call, digit="1")

    assert step.prompt.text == CONSENT
    assert texts_to(CALLER) == [WAIT_TIME_SMS]


def test_no_closing_sms_when_it_is_off(allowed_call, caller_phone, committed):
    caller_phone.new_texts()

    committed(lifecycle.end_call, call_sid=allowed_call.call_sid)

    assert caller_phone.new_texts() == []


def test_after_the_call_a_text_gets_the_after_session_auto_response(allowed_call, caller_phone, committed, in_call_settings):
    in_call_settings.after_session_auto_response_enabled = True
    in_call_settings.save()
    committed(lifecycle.end_call, call_sid=allowed_call.call_sid)
    caller_phone.new_texts()

    caller_phone.text("Hello? Is anyone there?")

    assert caller_phone.new_texts() == [AFTER_SESSION]
    assert Chat.objects.count() == 1  # no new chat
    caller_phone.text("Hello??")
    assert caller_phone.new_texts() == []  # not again within the duplicate window


def test_after_the_call_without_the_auto_response_the_do_not_reply_message_answers(
    allowed_call, caller_phone, committed, chat_settings
):
    committed(lifecycle.end_call, call_sid=allowed_call.call_sid)
    caller_phone.new_texts()

    caller_phone.text("Hello?")

    assert caller_phone.new_texts() == [chat_settings.do_not_reply_message]


def test_ending_twice_changes_nothing(allowed_call, committed):
    committed(lifecycle.end_call, call_sid=allowed_call.call_sid)
    ended_at = reload(allowed_call).ended_at

    committed(lifecycle.end_call, call_sid=allowed_call.call_sid)

    assert reload(allowed_call).ended_at == ended_at


# --- the abandoned call (C8) -------------------------------------------------------------------------


def test_an_abandoned_call_with_sms_data_gets_a_crm_ticket(allowed_call, caller_phone, committed, operation_settings):
    operation_settings.abandoned_call_ticket = True
    operation_settings.abandoned_ticket_only_with_sms = True
    operation_settings.save()
    caller_phone.text("I cannot wait any longer, here is my order number: 9876")

    call = committed(lifecycle.end_call, call_sid=allowed_call.call_sid)

    call = reload(call)
    assert call.status == CallStatus.ABANDONED
    record = call.crm_record
    assert record is not None and record.reference == f"call:{call.pk}"
    kinds = list(CrmEntry.objects.filter(record=record).values_list("kind", flat=True))
    assert kinds[:3] == ["opened", "abandoned_call", "wait_time_sms"]
    assert "order number: 9876" in CrmEntry.objects.get(record=record, kind="wait_time_sms").text
    assert call.chat.finish_reason == FinishReason.CALL_ENDED


def test_an_abandoned_call_without_sms_gets_no_ticket_when_only_with_sms(allowed_call, committed, operation_settings):
    operation_settings.abandoned_call_ticket = True
    operation_settings.abandoned_ticket_only_with_sms = True
    operation_settings.save()

    call = committed(lifecycle.end_call, call_sid=allowed_call.call_sid)

    assert reload(call).crm_record is None
    assert not CrmRecord.objects.exists()


def test_an_abandoned_call_gets_a_ticket_for_every_abandoned_call_when_so_set(new_call, committed, operation_settings):
    operation_settings.abandoned_call_ticket = True
    operation_settings.abandoned_ticket_only_with_sms = False
    operation_settings.save()
    call = new_call()

    committed(lifecycle.end_call, call_sid=call.call_sid)

    assert reload(call).crm_record.entries.filter(kind="abandoned_call").exists()


def test_no_abandoned_call_ticket_when_the_setting_is_off(allowed_call, caller_phone, committed, operation_settings):
    assert operation_settings.abandoned_call_ticket is False
    caller_phone.text("hello")

    committed(lifecycle.end_call, call_sid=allowed_call.call_sid)

    assert not CrmRecord.objects.exists()


def test_an_earlier_calls_open_sms_side_is_closed_when_a_new_one_opens(allowed_call, new_call, committed, clock):
    Call.objects.filter(pk=allowed_call.pk).update(status=CallStatus.ENDED)  # its end never reported
    second = new_call("CA0002")
    clock.shift(dt.timedelta(minutes=31))  # past the duplicate window of the wait-time SMS

    ask(committed, second, digit="1")

    first_chat = reload(allowed_call).chat
    assert first_chat.status == ChatStatus.FINISHED and first_chat.finish_reason == FinishReason.CALL_ENDED
    assert reload(second).chat.is_active
    assert Message.objects.filter(chat=reload(second).chat, body=WAIT_TIME_SMS).exists()


def test_the_banner_payload_never_carries_an_sms_chat_to_the_sms_adapter(allowed_call, alice_agent, committed, heard):
    """The SMS side's chat.updated events never reach an agent's group (no agent on the chat), so
    the adapter's chat list does not show it as an SMS chat."""
    committed(lifecycle.assign_call, call_sid=allowed_call.call_sid, agent=alice_agent)

    chat_events = [(group, event) for group, event in heard if event["type"] == "chat.updated"]
    assert chat_events
    assert all(not group.startswith("agent.") and not group.startswith("queue.") for group, _ in chat_events)
    assert CONSUMER != CALLER
