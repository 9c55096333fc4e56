"""The JSON IVR API (SPEC B1) under /apps/api/v1/ivr/: an IVR that is not Twilio's reports the call
queued, asks what to play while the caller holds, reports the digit, the agent and the end; the
portal answers the same way the Twilio Voice webhooks do, and times the 10-second no-answer
itself (the sweeper). API credentials as for the rest of /apps/api/v1/."""
from __future__ import annotations

import datetime as dt

import pytest

from chats import sweepers
from chats.models import Call, CallSource, CallStatus, ChatStatus, WaitTimeSmsStatus
from portal.models import AgentStatus, BlendingMessages, CrmRecord
from tests.api_client import basic, make_api
from tests.chats.calls import CALLER, CONSENT, IN_CALL, INCORRECT, SMS_SENT, WAIT_TIME_SMS, reload
from tests.factories import make_agent

IVR = "/apps/api/v1/ivr/calls"


@pytest.fixture
def api(client, django_capture_on_commit_callbacks, blended):
    return make_api(client, django_capture_on_commit_callbacks, name="IVR")


@pytest.fixture
def queued(api, blended, clock):
    """A caller in Billing, reported by the IVR; the clock a minute later (the prompt is due)."""
    response = api.post(IVR, {"call_id": "ivr-0001", "caller_number": CALLER, "queue_id": blended.pk})
    assert response.status_code == 201, response.content
    clock.shift(dt.timedelta(seconds=60))
    return Call.objects.get(call_sid="ivr-0001")


def wait(api, call_id="ivr-0001"):
    response = api.post(f"{IVR}/{call_id}/wait", {})
    assert response.status_code == 200, response.content
    return response.json()


def press(api, digit, call_id="ivr-0001"):
    response = api.post(f"{IVR}/{call_id}/digit", {"digit": digit})
    assert response.status_code == 200, response.content
    return response.json()


# --- authentication and errors -------------------------------------------------------------------


@pytest.mark.parametrize("authorization", ["", basic("tk_nobody", "wrong")])
def test_without_a_valid_api_credential_the_ivr_api_answers_401(api, blended, authorization):
    response = api.post(IVR, {"call_id": "x", "caller_number": CALLER, "queue_id": blended.pk}, authorization=authorization)

    assert response.status_code == 401
    assert "error" in response.json()
    assert not Call.objects.exists()


def test_the_agent_adapters_session_is_not_enough(client, blended, django_user_model):
    django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    client.login(username="ops", password="pw")

    assert client.post(IVR, {}, content_type="application/json").status_code == 401


def test_an_unknown_queue_is_refused(api):
    response = api.post(IVR, {"call_id": "ivr-1", "caller_number": CALLER, "queue_id": 999999})

    assert response.status_code == 400
    assert response.json() == {"error": "queue_id is not found"}


def test_a_missing_field_is_named(api, blended):
    response = api.post(IVR, {"caller_number": CALLER, "queue_id": blended.pk})

    assert response.status_code == 400
    assert response.json()["error"].startswith("call_id")


@pytest.mark.parametrize("caller", ["(L¾Þ", "5557654321", "+1555", "anonymous"])
def test_a_caller_number_that_is_not_e164_is_refused_and_no_call_is_made(api, blended, caller):
    response = api.post(IVR, {"call_id": "ivr-bad", "caller_number": caller, "queue_id": blended.pk})

    assert response.status_code == 400
    assert response.json() == {"error": "caller_number is invalid"}
    assert not Call.objects.filter(call_sid="ivr-bad").exists()


def test_an_unknown_call_is_404(api):
    for path in ("", "/wait", "/digit", "/assigned", "/ended"):
        method = api.get if not path else api.post
        response = method(f"{IVR}/nope{path}", {}) if path else method(f"{IVR}/nope")
        assert response.status_code == 404, path
        assert response.json() == {"error": "There is no call nope."}


def test_paths_answer_with_and_without_the_trailing_slash(api, queued):
    assert api.get(f"{IVR}/ivr-0001").status_code == 200
    assert api.get(f"{IVR}/ivr-0001/").status_code == 200
    assert api.post(f"{IVR}/ivr-0001/wait/", {}).status_code == 200


# --- the flow --------------------------------------------------------------------------------------


def test_a_reported_call_is_queued_and_described(api, blended, clock):
    response = api.post(
        IVR + "/", {"call_id": "ivr-0001", "caller_number": CALLER, "queue_id": blended.pk, "language": "en"}
    )

    assert response.status_code == 201
    body = response.json()
    assert body["call_sid"] == "ivr-0001" and body["status"] == "queued"
    assert body["wait_time_sms_status"] == "none" and body["queue_id"] == blended.pk
    call = Call.objects.get()
    assert call.source == CallSource.IVR_API and call.sms_number.number == IN_CALL
    detail = api.get(f"{IVR}/ivr-0001").json()
    assert detail["estimated_wait_seconds"] == 300
    assert detail["wait_time_sms"] == {"received": False, "message_count": 0, "media_count": 0}


def test_before_the_interval_the_ivr_is_told_to_hold(api, blended, clock):
    api.post(IVR, {"call_id": "ivr-0001", "caller_number": CALLER, "queue_id": blended.pk})

    answer = wait(api)

    assert answer["action"] == "hold"
    assert answer["check_again_in_seconds"] == 30
    assert "announcement interval" in answer["reason"]


def test_at_the_interval_the_ivr_plays_the_consent_prompt_and_gathers_10_seconds(api, queued):
    answer = wait(api)

    assert answer["action"] == "consent"
    assert answer["timeout_seconds"] == 10
    assert answer["prompts"] == [{"kind": "consent", "text": CONSENT, "language": "en", "audio_url": None}]
    assert answer["call"]["prompt_plays"] == 1


def test_a_recording_is_given_as_an_audio_url(api, queued, in_call_settings):
    from django.core.files.base import ContentFile

    row = BlendingMessages.objects.get(settings=in_call_settings, language="en")
    row.consent_prompt_audio.save("consent.wav", ContentFile(b"RIFF"), save=True)

    prompt = wait(api)["prompts"][0]

    assert prompt["audio_url"] == "http://testserver/sms/twilio/voice/prompt/en/consent/"


def test_digit_1_sends_the_wait_time_sms(api, queued, caller_phone):
    wait(api)

    answer = press(api, "1")

    assert answer["outcome"] == "allowed" and answer["then"] == "wait"
    assert [p["text"] for p in answer["prompts"]] == [SMS_SENT]
    assert answer["call"]["wait_time_sms_status"] == "allowed"
    assert caller_phone.new_texts() == [WAIT_TIME_SMS]


def test_digit_2_denies(api, queued, clock):
    wait(api)

    assert press(api, "2")["outcome"] == "denied"
    clock.shift(dt.timedelta(minutes=5))
    assert wait(api)["action"] == "hold"


def test_another_digit_asks_again_with_a_fresh_10_seconds(api, queued):
    wait(api)

    answer = press(api, "#")

    assert answer["outcome"] == "incorrect" and answer["then"] == "gather"
    assert [p["text"] for p in answer["prompts"]] == [INCORRECT, CONSENT]
    assert answer["timeout_seconds"] == 10
    assert reload(queued).consent_deadline_at is not None


def test_no_digit_in_10_seconds_is_no_response_without_the_ivr_saying_so(api, queued, clock, committed):
    wait(api)

    clock.shift(dt.timedelta(seconds=9))
    committed(sweepers.run_sweepers)
    assert reload(queued).wait_time_sms_status == WaitTimeSmsStatus.NONE
    clock.shift(dt.timedelta(seconds=1))
    assert committed(sweepers.run_sweepers)["calls"] == 1

    assert api.get(f"{IVR}/ivr-0001").json()["wait_time_sms_status"] == "no_response"
    clock.shift(dt.timedelta(seconds=50))  # the next interval after the prompt
    assert wait(api)["action"] == "consent"


def test_an_empty_digit_reported_by_the_ivr_is_no_response(api, queued):
    wait(api)

    assert press(api, "")["outcome"] == "no_response"


def test_assigned_by_email_raises_the_banner_and_ended_closes_it(api, queued, caller_phone, blended, heard):
    alice = make_agent("alice", status=AgentStatus.AVAILABLE)
    alice.user.email = "alice@acme.example"
    alice.user.save()
    wait(api)
    press(api, "1")
    caller_phone.text("It is the blue one")

    assigned = api.post(f"{IVR}/ivr-0001/assigned", {"agent_email": "ALICE@acme.example"})

    assert assigned.status_code == 200, assigned.content
    assert assigned.json()["status"] == "assigned" and assigned.json()["agent_id"] == alice.pk
    assert [event["banner"] for _, event in heard if event["type"] == "call.banner"] == ["Wait Time SMS Received"]
    assert CrmRecord.objects.get().entries.filter(kind="wait_time_sms", text__contains="blue one").exists()

    ended = api.post(f"{IVR}/ivr-0001/ended", {})

    assert ended.json()["status"] == "ended"
    assert reload(queued).chat.status == ChatStatus.FINISHED


def test_assigned_needs_exactly_one_known_agent(api, queued):
    alice = make_agent("alice")

    both = api.post(f"{IVR}/ivr-0001/assigned", {"agent_id": alice.pk, "agent_email": "alice@example.com"})
    neither = api.post(f"{IVR}/ivr-0001/assigned", {})
    unknown = api.post(f"{IVR}/ivr-0001/assigned", {"agent_id": 999999})

    assert both.status_code == neither.status_code == unknown.status_code == 400
    assert both.json() == {"error": "Give one of agent_id or agent_email."}
    assert unknown.json() == {"error": "Agent is not found"}
    assert api.post(f"{IVR}/ivr-0001/assigned", {"agent_id": alice.pk}).status_code == 200


def test_an_ended_call_cannot_be_assigned(api, queued):
    alice = make_agent("alice")
    api.post(f"{IVR}/ivr-0001/ended", {})

    response = api.post(f"{IVR}/ivr-0001/assigned", {"agent_id": alice.pk})

    assert response.status_code == 409
    assert reload(queued).status == CallStatus.ABANDONED


def test_an_abandoned_ivr_call_with_texts_gets_its_ticket(api, queued, caller_phone, operation_settings):
    operation_settings.abandoned_call_ticket = True
    operation_settings.save()
    wait(api)
    press(api, "1")
    caller_phone.text("Account 555")

    ended = api.post(f"{IVR}/ivr-0001/ended", {})

    assert ended.json()["status"] == "abandoned"
    assert CrmRecord.objects.get(reference=f"call:{queued.pk}").entries.filter(kind="abandoned_call").exists()


# --- Schemathesis: no generated request makes the IVR API fail ---------------------------------

IVR_OPERATIONS = [
    "POST /apps/api/v1/ivr/calls/",
    "GET /apps/api/v1/ivr/calls/{call_id}/",
    "POST /apps/api/v1/ivr/calls/{call_id}/wait/",
    "POST /apps/api/v1/ivr/calls/{call_id}/digit/",
    "POST /apps/api/v1/ivr/calls/{call_id}/assigned/",
    "POST /apps/api/v1/ivr/calls/{call_id}/ended/",
]


@pytest.fixture
def fuzz_world(api, blended, settings, committed):
    """A known call ("ivr-0001") and agent (id 1 or so) for the generated requests to hit."""
    from chats.calls import lifecycle

    settings.API_RATE_LIMIT = "1000000/minute"
    make_agent("alice")
    committed(lifecycle.queue_call, call_sid="ivr-0001", caller_number=CALLER, queue=blended, source=CallSource.IVR_API)
    return {"Authorization": api.authorization}


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("label", IVR_OPERATIONS)
def test_no_generated_request_makes_the_ivr_api_fail(label, negative, fuzz_world, wsgi_app, django_capture_on_commit_callbacks):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

    schema = schemathesis.openapi.from_wsgi("/apps/api/v1/schema/?format=json", wsgi_app)
    operation = schema.find_operation_by_label(label)
    mode = GenerationMode.NEGATIVE if negative else GenerationMode.POSITIVE

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=15, deadline=None, database=None, derandomize=True,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )
    def run(case):
        with django_capture_on_commit_callbacks(execute=True):
            response = case.call(headers=fuzz_world)
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance])

    run()
