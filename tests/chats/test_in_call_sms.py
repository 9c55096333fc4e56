"""In-call SMS (SPEC B2, C7) and app links (B3, C8) from the agent's adapter, through the REST
actions under /apps/api/v1/agent/calls/ as the page calls them: the session, preset messages by
language, custom messages up to 918 characters only when allowed, the non-US rule, the caller's
texts and pictures arriving live, the closing SMS and the after-session auto response."""
from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from chats.calls import lifecycle
from chats.models import Author, Call, ChatStatus, ChatType, FinishReason, Media
from portal.models import CrmEntry, PresetMessage
from sms.models import MessageStatus, OutboundMessage
from sms.pipeline import add_do_not_contact
from tests.chats.calls import AFTER_SESSION, CALLER, CLOSING, IN_CALL, UK_CALLER, WAIT_TIME_SMS, ask, reload
from tests.factories import make_agent

CALLS = "/apps/api/v1/agent/calls"


class Adapter:
    def __init__(self, agent, capture):
        self.client = Client()
        self.capture = capture
        assert self.client.login(username=agent.user.get_username(), password="demo")

    def get(self, path):
        with self.capture(execute=True):
            return self.client.get(CALLS + path)

    def post(self, path, data=None):
        with self.capture(execute=True):
            return self.client.post(CALLS + path, data or {}, content_type="application/json")


@pytest.fixture
def on_call(new_call, alice_agent, committed) -> Call:
    """Alice is on a call from CALLER (no wait-time SMS)."""
    call = new_call()
    return committed(lifecycle.assign_call, call_sid=call.call_sid, agent=alice_agent)


@pytest.fixture
def adapter(alice_agent, django_capture_on_commit_callbacks):
    return Adapter(alice_agent, django_capture_on_commit_callbacks)


@pytest.fixture
def presets(db):
    return {
        "en": PresetMessage.objects.create(language="en", label="Photo", text="Please text us a photo of the item."),
        "es": PresetMessage.objects.create(language="es", label="Foto", text="Envíenos una foto del artículo."),
    }


def sent_to_caller() -> list[str]:
    return list(
        OutboundMessage.objects.filter(to_number=CALLER).exclude(status=MessageStatus.SUPPRESSED)
        .order_by("pk").values_list("body", flat=True)
    )


# --- the agent's calls -------------------------------------------------------------------------------


def test_the_agent_lists_their_calls_with_the_caller_masked(adapter, on_call):
    response = adapter.get("")

    assert response.status_code == 200
    (call,) = response.json()["calls"]
    assert call["id"] == on_call.pk and call["status"] == "assigned"
    assert call["caller_number"] == "+1••••••4999"
    assert call["queue_name"] == "Billing"
    assert call["in_call_sms_available"] is True
    assert call["wait_time_sms"] == {
        "received": False, "message_count": 0, "media_count": 0, "banner": "",
        "messages_url": f"/apps/api/v1/agent/calls/{on_call.pk}/messages",
    }


def test_the_list_keeps_todays_ended_calls_but_not_older_ones(adapter, on_call, committed, clock):
    committed(lifecycle.end_call, call_sid=on_call.call_sid)

    (call,) = adapter.get("").json()["calls"]  # a reload still shows it, ended
    assert call["id"] == on_call.pk and call["status"] == "ended"
    clock.shift(dt.timedelta(days=1))
    assert adapter.get("").json() == {"calls": []}


def test_another_agents_call_is_not_found(on_call, blended, django_capture_on_commit_callbacks):
    bob = make_agent("bob")
    other = Adapter(bob, django_capture_on_commit_callbacks)

    assert other.get(f"/{on_call.pk}").status_code == 404
    assert other.post(f"/{on_call.pk}/sms", {"body": "hi"}).status_code == 404
    assert other.get("").json() == {"calls": []}


def test_the_banner_opens_the_texts_received_while_waiting(new_call, alice_agent, adapter, committed, clock, caller_phone):
    import datetime as dt

    call = new_call()
    clock.shift(dt.timedelta(seconds=60))
    ask(committed, call, digit="1")
    caller_phone.text("The label says XJ-9")
    caller_phone.text("", NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME9", MediaContentType0="image/jpeg")
    media = Media.objects.get()
    media.file.save("m.jpg", ContentFile(b"\xff\xd8jpeg"), save=True)
    committed(lifecycle.assign_call, call_sid=call.call_sid, agent=alice_agent)

    detail = adapter.get(f"/{call.pk}").json()
    messages = adapter.get(f"/{call.pk}/messages").json()["messages"]

    assert detail["wait_time_sms"]["banner"] == "Wait Time SMS Received"
    assert (detail["wait_time_sms"]["message_count"], detail["wait_time_sms"]["media_count"]) == (2, 1)
    assert [(m["author"], m["body"]) for m in messages] == [
        (Author.SYSTEM, WAIT_TIME_SMS), (Author.CONSUMER, "The label says XJ-9"), (Author.CONSUMER, ""),
    ]
    url = messages[2]["media"][0]["url"]
    assert adapter.client.get(url).status_code == 200  # the call's agent may open the picture
    bob = make_agent("bob")
    other = Client()
    other.login(username=bob.user.username, password="demo")
    assert other.get(url).status_code == 404


# --- the session and its messages -------------------------------------------------------------------


def test_opening_the_session_creates_the_in_call_sms_chat(adapter, on_call):
    response = adapter.post(f"/{on_call.pk}/sms-session")

    assert response.status_code == 200, response.content
    assert response.json()["in_call_sms_open"] is True
    call = reload(on_call)
    assert call.chat.chat_type == ChatType.IN_CALL_SMS
    assert call.chat.status == ChatStatus.ASSIGNED and call.chat.portal_number.number == IN_CALL
    assert call.chat.agent is None  # not one of alice's SMS chats


@pytest.mark.parametrize("where", ["global", "queue"])
def test_no_session_when_in_call_sms_is_off(adapter, on_call, in_call_settings, blended, where):
    if where == "global":
        in_call_settings.in_call_sms_enabled = False
        in_call_settings.save()
    else:
        blended.in_call_sms_enabled = False
        blended.save()

    response = adapter.post(f"/{on_call.pk}/sms-session")

    assert response.status_code == 400
    assert response.json()["error"] == "In-call SMS is not enabled for this queue."
    assert reload(on_call).chat is None


def test_a_non_us_caller_only_when_allowed(new_call, alice_agent, adapter, committed, in_call_settings):
    call = new_call(caller=UK_CALLER)
    committed(lifecycle.assign_call, call_sid=call.call_sid, agent=alice_agent)

    refused = adapter.post(f"/{call.pk}/sms-session")
    assert refused.status_code == 400
    assert refused.json()["error"] == "Non US phone number service is not enabled"

    in_call_settings.non_us_in_call_allowed = True
    in_call_settings.save()
    assert adapter.post(f"/{call.pk}/sms-session").status_code == 200


def test_a_caller_who_opted_out_cannot_be_texted(adapter, on_call):
    add_do_not_contact(consumer_number=CALLER, portal_number=IN_CALL, source="stop")

    response = adapter.post(f"/{on_call.pk}/sms-session")

    assert response.status_code == 400 and "opted out" in response.json()["error"]


def test_presets_follow_the_calls_language(new_call, alice_agent, adapter, committed, presets, chat_settings):
    chat_settings.enabled_languages = ["en", "es"]
    chat_settings.save()
    spanish = new_call("CAes", language="es")
    committed(lifecycle.assign_call, call_sid=spanish.call_sid, agent=alice_agent)

    body = adapter.get(f"/{spanish.pk}/presets").json()

    assert [p["label"] for p in body["presets"]] == ["Foto"]
    assert (body["language"], body["language_name"]) == ("es", "Spanish")  # the adapter labels the list
    assert body["custom_allowed"] is False and body["custom_limit"] == 918
    assert body["refusal"] == ""


def test_without_presets_in_its_language_the_default_languages_are_offered(adapter, on_call, presets):
    PresetMessage.objects.filter(language="en").delete()
    PresetMessage.objects.create(language="en", label="Hello", text="Hello from Acme")
    call = Call.objects.get(pk=on_call.pk)
    Call.objects.filter(pk=call.pk).update(language="fr")

    body = adapter.get(f"/{call.pk}/presets").json()
    assert [p["label"] for p in body["presets"]] == ["Hello"]
    assert body["language_name"] == "English"  # what the agent is offered, not the call's French


def test_a_preset_goes_to_the_caller_from_the_in_call_number(adapter, on_call, presets, heard, caller_phone):
    response = adapter.post(f"/{on_call.pk}/sms", {"preset_id": presets["en"].pk})

    assert response.status_code == 201, response.content
    assert response.json()["author"] == "agent" and response.json()["body"] == presets["en"].text
    assert caller_phone.new_texts() == [presets["en"].text]
    sent = OutboundMessage.objects.get(to_number=CALLER)
    assert sent.from_number == IN_CALL
    call = reload(on_call)
    assert call.in_call_sms_open is True  # sending opened the session
    assert CrmEntry.objects.filter(record=call.crm_record, kind="call_sms_sent").exists()
    assert [event["type"] for _, event in heard].count("call.message") == 1


def test_custom_messages_are_refused_unless_allowed(adapter, on_call):
    response = adapter.post(f"/{on_call.pk}/sms", {"body": "Hi, it's Alice from the call."})

    assert response.status_code == 400
    assert response.json()["error"] == "Only the preset messages can be sent; custom messages are off."
    assert sent_to_caller() == []


def test_a_custom_message_of_918_characters_goes_and_919_does_not(adapter, on_call, in_call_settings):
    in_call_settings.custom_messages_allowed = True
    in_call_settings.save()

    too_long = adapter.post(f"/{on_call.pk}/sms", {"body": "x" * 919})
    exact = adapter.post(f"/{on_call.pk}/sms", {"body": "y" * 918})

    assert too_long.status_code == 400
    assert too_long.json()["error"] == "The message has 919 characters; the most is 918."
    assert exact.status_code == 201
    assert sent_to_caller() == ["y" * 918]


def test_an_empty_custom_message_is_refused(adapter, on_call, in_call_settings):
    in_call_settings.custom_messages_allowed = True
    in_call_settings.save()

    response = adapter.post(f"/{on_call.pk}/sms", {"body": "   "})

    assert response.status_code == 400 and response.json()["error"] == "Write a message first."


def test_the_callers_texts_and_videos_arrive_live_during_the_session(adapter, on_call, alice_agent, caller_phone, heard):
    adapter.post(f"/{on_call.pk}/sms-session")
    heard.clear()

    caller_phone.text("Here is a video", NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME5", MediaContentType0="video/mp4")

    live = [event for group, event in heard if group == f"agent.{alice_agent.pk}" and event["type"] == "call.message"]
    assert len(live) == 1
    assert live[0]["message"]["body"] == "Here is a video"
    assert live[0]["message"]["media"][0]["content_type"] == "video/mp4"
    call = reload(on_call)
    assert CrmEntry.objects.get(record=call.crm_record, kind="call_sms").data["media"][0]["content_type"] == "video/mp4"


# --- the session ends with the call -------------------------------------------------------------------


def test_the_session_ends_with_the_call_and_the_closing_sms_is_sent(adapter, on_call, presets, in_call_settings, committed):
    in_call_settings.closing_sms_enabled = True
    in_call_settings.save()
    adapter.post(f"/{on_call.pk}/sms", {"preset_id": presets["en"].pk})

    committed(lifecycle.end_call, call_sid=on_call.call_sid)

    call = reload(on_call)
    assert call.chat.status == ChatStatus.FINISHED and call.chat.finish_reason == FinishReason.CALL_ENDED
    assert sent_to_caller() == [presets["en"].text, CLOSING]
    late = adapter.post(f"/{on_call.pk}/sms", {"preset_id": presets["en"].pk})
    assert late.status_code == 403 and late.json()["error"] == "You are not on this call."


def test_after_the_session_the_caller_gets_the_auto_response(adapter, on_call, presets, in_call_settings, committed, caller_phone):
    in_call_settings.after_session_auto_response_enabled = True
    in_call_settings.save()
    adapter.post(f"/{on_call.pk}/sms-session")
    committed(lifecycle.end_call, call_sid=on_call.call_sid)
    caller_phone.new_texts()

    caller_phone.text("Thanks! One more question")

    assert caller_phone.new_texts() == [AFTER_SESSION]
    assert reload(on_call).chat.messages.filter(body="Thanks! One more question").count() == 0


def test_no_auto_response_when_it_is_off(adapter, on_call, committed, caller_phone, chat_settings):
    adapter.post(f"/{on_call.pk}/sms-session")
    committed(lifecycle.end_call, call_sid=on_call.call_sid)
    caller_phone.new_texts()

    caller_phone.text("Hello?")

    assert caller_phone.new_texts() == [chat_settings.do_not_reply_message]


def test_the_wait_time_chat_becomes_the_session(new_call, alice_agent, adapter, committed, clock, presets):
    import datetime as dt

    call = new_call()
    clock.shift(dt.timedelta(seconds=60))
    ask(committed, call, digit="1")
    committed(lifecycle.assign_call, call_sid=call.call_sid, agent=alice_agent)
    chat_id = reload(call).chat_id

    adapter.post(f"/{call.pk}/sms", {"preset_id": presets["en"].pk})

    assert reload(call).chat_id == chat_id  # one conversation with the caller per call
    assert sent_to_caller() == [WAIT_TIME_SMS, presets["en"].text]


# --- app links (B3) -------------------------------------------------------------------------------------


@pytest.fixture
def app_links(operation_settings):
    operation_settings.app_links_enabled = True
    operation_settings.ios_app_store_url = "https://apps.apple.com/app/acme/id123"
    operation_settings.ios_open_url = "acme://open"
    operation_settings.google_play_url = "https://play.google.com/store/apps/details?id=com.acme"
    operation_settings.android_open_url = ""
    operation_settings.save()
    return operation_settings


@pytest.mark.parametrize(
    "platform, link, text",
    [
        ("ios", "download", "Download our app here: https://apps.apple.com/app/acme/id123"),
        ("ios", "launch", "Open our app here: acme://open"),
        ("android", "download", "Download our app here: https://play.google.com/store/apps/details?id=com.acme"),
    ],
)
def test_one_click_sends_the_app_link(adapter, on_call, app_links, in_call_settings, platform, link, text):
    in_call_settings.in_call_sms_enabled = False  # app links do not need in-call SMS
    in_call_settings.save()

    response = adapter.post(f"/{on_call.pk}/app-link", {"platform": platform, "link": link})

    assert response.status_code == 201, response.content
    assert sent_to_caller() == [text]
    assert reload(on_call).chat.events.filter(kind="app_link.sent").exists()


def test_the_presets_answer_offers_the_configured_app_links(adapter, on_call, app_links):
    links = adapter.get(f"/{on_call.pk}/presets").json()["app_links"]

    assert links == [
        {"platform": "ios", "link": "download"},
        {"platform": "ios", "link": "launch"},
        {"platform": "android", "link": "download"},
    ]


def test_a_link_that_is_not_set_up_is_refused(adapter, on_call, app_links):
    response = adapter.post(f"/{on_call.pk}/app-link", {"platform": "android", "link": "launch"})

    assert response.status_code == 400
    assert response.json()["error"] == "No Android launch link is set up in the operation settings."


def test_app_links_off_refuses(adapter, on_call, operation_settings):
    response = adapter.post(f"/{on_call.pk}/app-link", {"platform": "ios", "link": "download"})

    assert response.status_code == 400
    assert response.json()["error"] == "Sending app links is turned off."
    assert adapter.get(f"/{on_call.pk}/presets").json()["app_links"] == []


def test_a_wrong_platform_is_refused(adapter, on_call, app_links):
    response = adapter.post(f"/{on_call.pk}/app-link", {"platform": "windows", "link": "download"})

    assert response.status_code == 400
    assert response.json()["error"].startswith("platform")
