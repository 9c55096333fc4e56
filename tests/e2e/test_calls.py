"""The call side of the agent adapter in a real browser (SPEC B1–B3, issue 5): an IVR drives the
wait-time SMS flow through the JSON IVR API over HTTP, the caller texts the in-call number while
waiting, the call reaches alice, whose page shows the call and the green "Wait Time SMS Received"
banner live; the banner opens the texts and pictures; alice opens an in-call SMS session, sends a
preset, a custom text (the 918-character limit enforced on the page) and an app link; the caller's
texts arrive live, also across a reconnect; the call ends and the page shows the session closed.
Every wait is one of Playwright's auto-waiting `expect` assertions."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from chats.models import Call, CallStatus, Chat, ChatStatus, ChatType, FinishReason, Message
from portal.credentials import create_api_credential
from portal.models import InCallSmsSettings, OperationSettings, PresetMessage
from queues.models import Queue
from sms.models import MessageStatus, OutboundMessage
from tests.e2e.conftest import Consumer

pytestmark = [
    pytest.mark.e2e,
    # Django's ASGI handler says so for every static file and media FileResponse it streams.
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]

CALLER = "+15557654999"
IN_CALL = "+15550100003"  # the demo's in-call SMS number
MASKED = re.compile(r"^\+1•+4999$")
IOS_STORE = "https://apps.apple.com/app/tern/id123456"
PNG = bytes.fromhex(  # a 1×1 PNG: the caller's MMS picture, as the provider would return it
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)


class Ivr:
    """An IVR that is not Twilio's, reporting to /apps/api/v1/ivr/calls over HTTP with an API
    credential, as chats/calls/ivr_api.py documents."""

    def __init__(self, base_url: str):
        credential, secret = create_api_credential(name="e2e IVR")
        token = base64.b64encode(f"{credential.key}:{secret}".encode()).decode()
        self.base = base_url + "/apps/api/v1/ivr/calls"
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json", "Accept": "application/json"}

    def post(self, path: str = "", data: dict | None = None, expect_status: int = 200) -> dict:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(data or {}).encode(), headers=self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        assert status == expect_status, body
        return json.loads(body)

    def caller_waits_and_allows_sms(self, call_id: str, queue: Queue) -> Call:
        """The caller enters the queue, hears the consent prompt at the announcement interval and
        presses 1: the wait-time SMS goes to their phone."""
        self.post("", {"call_id": call_id, "caller_number": CALLER, "queue_id": queue.pk}, expect_status=201)
        # The announcement interval has passed since the caller was queued.
        Call.objects.filter(call_sid=call_id).update(queued_at=timezone.now() - dt.timedelta(minutes=1))
        assert self.post(f"/{call_id}/wait")["action"] == "consent"
        assert self.post(f"/{call_id}/digit", {"digit": "1"})["outcome"] == "allowed"
        return Call.objects.get(call_sid=call_id)


@pytest.fixture
def ivr(live):
    return Ivr(live.url)


@pytest.fixture
def caller(live):
    """The caller's phone, texting the in-call SMS number (the number the wait-time SMS came from)."""
    return Consumer(live, CALLER, portal_number=IN_CALL)


@pytest.fixture
def pictures(monkeypatch):
    from sms.providers.base import FetchedMedia
    from sms.providers.local import LocalProvider

    monkeypatch.setattr(LocalProvider, "fetch_media", lambda self, url: FetchedMedia(content=PNG, content_type="image/png"))


def billing() -> Queue:
    return Queue.objects.get(name="Billing")


def sent_to_caller(body: str) -> OutboundMessage:
    return OutboundMessage.objects.get(to_number=CALLER, body=body)


@pytest.mark.e2e
def test_wait_time_sms_banner_in_call_session_and_the_end(pages, ivr, caller, pictures):
    in_call = InCallSmsSettings.load()
    in_call.closing_sms_enabled = True
    in_call.save()
    operation = OperationSettings.load()
    operation.app_links_enabled = True
    operation.ios_app_store_url = IOS_STORE
    operation.save()
    alice = pages.agent("alice")
    view = alice.locator("#call-view")

    # The caller waits in Billing, says yes to wait-time SMS and texts while waiting.
    call = ivr.caller_waits_and_allows_sms("e2e-call-1", billing())
    assert sent_to_caller(in_call.messages.get(language="en").wait_time_sms_text).from_number == IN_CALL
    assert caller.text('<b>Model</b> XJ-9, it rattles <img src=x onerror="window.pwned=1">') == "call_sms"
    caller.text("", media=[{"url": "https://media.example/ME1", "content_type": "image/png"}])
    expect(alice.locator("#call-list .call-card")).to_have_count(0)  # still waiting: not alice's yet

    # The IVR connects the call to alice: her page shows it live, the caller masked, and the
    # green banner with what was received.
    ivr.post("/e2e-call-1/assigned", {"agent_email": "alice@example.com"})
    card = alice.locator("#call-list .call-card")
    expect(card).to_have_count(1)
    expect(card.locator(".ci-number")).to_have_text(MASKED)
    expect(card.locator(".ci-queue")).to_have_text("Billing")
    expect(card.locator(".call-status")).to_contain_text("On call")
    expect(view).to_be_visible()  # nothing else was open: the call opens by itself
    expect(alice.locator("#call-title")).to_have_text(MASKED)
    expect(alice.locator("#call-state")).to_contain_text("On call")
    banner = alice.locator("#call-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Wait Time SMS Received")
    expect(banner).to_contain_text("2 messages · 1 with a picture")
    expect(card.locator(".wts-banner")).to_have_text("Wait Time SMS Received")
    expect(alice.locator("#call-sms")).to_be_hidden()

    # The banner opens the texts: as text, never markup, and the picture inline.
    banner.click()
    transcript = alice.locator("#call-transcript")
    expect(transcript).to_be_visible()
    expect(transcript.locator(".msg-system").first).to_contain_text("Reply to this message with details")
    expect(transcript.locator(".msg-consumer").first).to_contain_text('<b>Model</b> XJ-9, it rattles <img src=x onerror="window.pwned=1">')
    picture = transcript.locator(".msg-consumer .media img")
    expect(picture).to_have_count(1)
    expect(picture).to_have_attribute("src", re.compile(r"^/agent/media/\d+/$"))
    alice.wait_for_function("() => { const i = document.querySelector('#call-transcript .media img'); return i && i.complete && i.naturalWidth === 1; }")
    expect(transcript.locator("b")).to_have_count(0)

    # In-call SMS: the session opens from the call; presets in the call's language.
    alice.get_by_role("button", name="Start SMS session").click()
    composer = alice.locator("#call-composer")
    expect(composer).to_be_visible()
    expect(alice.locator("#call-presets-title")).to_have_text("Preset messages · English")
    presets = alice.locator("#call-presets .preset")
    expect(presets).to_have_count(PresetMessage.objects.filter(language="en").count())
    photo = PresetMessage.objects.get(language="en", label="Photo request")
    presets.filter(has_text="Photo request").click()
    mine = transcript.locator(".msg-agent", has_text=photo.text)
    expect(mine).to_have_count(1)
    expect(mine.locator(".msg-status")).to_have_text("Delivered")  # live, from the local provider
    sent = sent_to_caller(photo.text)
    assert (sent.from_number, sent.status, sent.kind) == (IN_CALL, MessageStatus.DELIVERED, "blending")
    assert sent.provider_sid.startswith("SMlocal")
    assert Call.objects.get(pk=call.pk).in_call_sms_open

    # A custom text: the counter shows the 918-character limit and the page holds back a longer one.
    box = alice.locator("#call-input")
    send = alice.locator("#call-send")
    counter = alice.locator("#call-counter")
    expect(counter).to_contain_text("0 / 918")
    box.fill("a" * 918)
    expect(counter).to_contain_text("918 / 918")
    expect(send).to_be_enabled()
    box.fill("a" * 919)
    expect(counter).to_contain_text("919 / 918")
    expect(alice.locator("#call-warning")).to_have_text("Too long: 1 character over the 918 limit. Shorten it to send.")
    expect(send).to_be_disabled()
    box.press("Enter")
    expect(alice.locator("#call-warning")).to_contain_text("918 limit")
    assert not OutboundMessage.objects.filter(to_number=CALLER, body="a" * 919).exists()
    box.fill("Thanks! Which store did you buy it in?")
    expect(alice.locator("#call-warning")).to_have_text("")
    expect(send).to_be_in_viewport()  # the whole composer fits at 1280×800
    send.click()
    expect(transcript.locator(".msg-agent", has_text="Which store")).to_have_count(1)
    expect(box).to_have_value("")

    # The caller's texts arrive live during the session.
    caller.text("The one on Main Street")
    expect(transcript.locator(".msg-consumer", has_text="The one on Main Street")).to_have_count(1)

    # One click sends the app link (SPEC B3); only the links set up are offered.
    links = alice.locator("#call-app-link-buttons button")
    expect(links).to_have_count(1)
    links.first.click()
    expect(transcript.locator(".msg-agent", has_text=f"Download our app here: {IOS_STORE}")).to_have_count(1)
    assert sent_to_caller(f"Download our app here: {IOS_STORE}").from_number == IN_CALL
    if os.environ.get("TERN_SCREENSHOTS"):  # the README's picture of the call view
        expect(transcript.locator(".msg-agent .msg-status").last).to_have_text("Delivered")
        alice.screenshot(path=str(settings.BASE_DIR / "docs" / "screenshots" / "call.png"))

    # The websocket drops; what the caller sends meanwhile is fetched on reconnect, once.
    alice.evaluate("window.tern.socket.pause()")
    expect(alice.locator("#connection")).to_have_text("Disconnected")
    caller.text("Sent while you were away")
    alice.evaluate("window.tern.socket.resume()")
    expect(alice.locator("#connection")).to_have_text("Live")
    expect(transcript.locator(".msg", has_text="Sent while you were away")).to_have_count(1)
    chat = Chat.objects.get(pk=Call.objects.get(pk=call.pk).chat_id)
    expect(transcript.locator(".msg")).to_have_count(Message.objects.filter(chat=chat).count())

    # The call ends: the session closes with it (the closing SMS is its last message) and the
    # page says so; nothing can be sent any more.
    ivr.post("/e2e-call-1/ended")
    expect(alice.locator("#call-state")).to_contain_text("Ended")
    expect(alice.locator("#call-ended")).to_contain_text("The SMS session with the caller is closed.")
    expect(card.locator(".call-status")).to_contain_text("Ended")
    expect(composer).to_be_hidden()
    expect(alice.locator("#call-actions")).to_be_hidden()
    expect(transcript.locator(".msg").last).to_contain_text(in_call.messages.get(language="en").closing_sms)
    chat.refresh_from_db()
    assert (chat.status, chat.finish_reason, chat.chat_type) == (ChatStatus.FINISHED, FinishReason.CALL_ENDED, ChatType.WAIT_TIME_SMS)
    assert Call.objects.get(pk=call.pk).status == CallStatus.ENDED
    alice.get_by_role("button", name="Close").click()
    expect(card).to_have_count(0)
    expect(alice.locator("#no-chat")).to_be_visible()

    # The caller's number never reached the page, in the page or in what the socket pushed.
    assert CALLER not in alice.content()
    assert not any(CALLER in frame for frame in alice.ws_frames)
    assert alice.evaluate("window.pwned === undefined")


@pytest.mark.e2e
def test_presets_only_a_refused_session_and_a_reload(pages, ivr, consumer):
    in_call = InCallSmsSettings.load()
    in_call.custom_messages_allowed = False
    in_call.save()
    Queue.objects.filter(name="Tech").update(in_call_sms_enabled=False)
    alice = pages.agent("alice")

    # An SMS chat is open when a call arrives: the chat stays, the call waits in the list.
    phone = consumer("+15557654321")
    assert phone.text("Hi") == "menu"
    assert phone.text("1") == "queued"
    alice.locator("#chat-list .chat-item").first.click()
    expect(alice.locator("#chat-view")).to_be_visible()
    ivr.post("", {"call_id": "e2e-call-2", "caller_number": CALLER, "queue_id": billing().pk}, expect_status=201)
    ivr.post("/e2e-call-2/assigned", {"agent_email": "alice@example.com"})
    card = alice.locator("#call-list .call-card")
    expect(card).to_have_count(1)
    expect(alice.locator("#chat-view")).to_be_visible()
    expect(card.locator(".wts-banner")).to_have_count(0)  # the caller sent nothing while waiting

    # Opening the call puts the chat away; presets only, since custom messages are off.
    card.locator(".call-item").click()
    expect(alice.locator("#call-view")).to_be_visible()
    expect(alice.locator("#chat-view")).to_be_hidden()
    expect(alice.locator("#call-banner")).to_be_hidden()
    alice.get_by_role("button", name="Start SMS session").click()
    expect(alice.locator("#call-composer")).to_be_visible()
    expect(alice.locator("#call-custom-off")).to_be_visible()
    expect(alice.locator("#call-input")).to_be_hidden()
    expect(alice.locator("#call-app-links")).to_be_hidden()  # app links are off (SPEC C8)
    alice.locator("#call-presets .preset").filter(has_text="Account number").click()
    expect(alice.locator("#call-transcript .msg-agent .msg-status")).to_have_text(["Delivered"])

    # A reload finds the call and its open session again (REST), and the chat is still there.
    alice.reload()
    expect(alice.locator("#connection")).to_have_text("Live")
    expect(card).to_have_count(1)
    expect(alice.locator("#call-view")).to_be_visible()
    expect(alice.locator("#call-transcript .msg-agent")).to_contain_text(["Please reply with your account number"])
    expect(alice.locator("#chat-list .chat-item")).to_have_count(1)

    # A call from a queue without in-call SMS: the session is refused with the reason.
    ivr.post("", {"call_id": "e2e-call-3", "caller_number": "+15557654888", "queue_id": Queue.objects.get(name="Tech").pk}, expect_status=201)
    ivr.post("/e2e-call-3/assigned", {"agent_email": "alice@example.com"})
    expect(card).to_have_count(2)
    card.nth(1).locator(".call-item").click()
    expect(alice.locator("#call-title")).to_have_text(re.compile(r"4888$"))
    expect(alice.get_by_role("button", name="Start SMS session")).to_be_disabled()
    expect(alice.locator("#call-session-note")).to_have_text("In-call SMS is not enabled for this queue.")

    # Back to the chat from the list: the call view gives way.
    alice.locator("#chat-list .chat-item").first.click()
    expect(alice.locator("#chat-view")).to_be_visible()
    expect(alice.locator("#call-view")).to_be_hidden()

    # An ended call stays listed after a reload (today's ended calls), until the agent closes it.
    ivr.post("/e2e-call-3/ended")
    expect(card.nth(1).locator(".call-status")).to_contain_text("Ended")
    alice.reload()
    expect(alice.locator("#connection")).to_have_text("Live")
    expect(card).to_have_count(2)
    expect(card.nth(1).locator(".call-status")).to_contain_text("Ended")
    card.nth(1).locator(".call-item").click()
    expect(alice.locator("#call-ended")).to_contain_text("The call ended")
    alice.get_by_role("button", name="Close").click()
    expect(card).to_have_count(1)
    alice.reload()
    expect(alice.locator("#connection")).to_have_text("Live")
    expect(card).to_have_count(1)  # closed stays closed


@pytest.mark.e2e
def test_a_waiting_caller_deflected_to_sms_reaches_the_agent(pages, ivr, caller):
    """SPEC B4: the IVR offers "press 3", the caller presses it, the IVR hangs up, and alice's
    adapter receives the SMS chat, marked as coming from a call, which she answers by text."""
    queue = billing()
    queue.deflection_enabled = True
    queue.deflection_min_wait_seconds = 1  # offered whatever the estimate (it depends on earlier calls' history)
    queue.save()
    alice = pages.agent("alice")
    alice.locator("#status-switch .st-away").click()  # not free yet: the chat will wait for her
    expect(alice.locator('#status-switch input[value="away"]')).to_be_checked()

    ivr.post("", {"call_id": "e2e-deflect", "caller_number": CALLER, "queue_id": queue.pk}, expect_status=201)
    offer = ivr.post("/e2e-deflect/wait")
    assert offer["action"] == "deflect" and "press 3" in offer["prompts"][0]["text"]
    answer = ivr.post("/e2e-deflect/digit", {"digit": "3"})
    assert (answer["outcome"], answer["then"], answer["call"]["status"]) == ("deflected", "hangup", "deflected")
    chat = Call.objects.get(call_sid="e2e-deflect").deflected_chat
    assert chat.status == ChatStatus.QUEUED and chat.queued_at == Call.objects.get(call_sid="e2e-deflect").queued_at

    alice.locator("#status-switch .st-available").click()
    item = alice.locator("#chat-list .chat-item")
    expect(item).to_have_count(1)
    expect(item.locator(".tag")).to_have_text("From a call")
    item.first.click()
    alice.locator("#composer-input").fill("Hi! Thanks for switching to text. How can I help?")
    alice.locator("#composer-input").press("Enter")
    expect(alice.locator("#transcript .msg-agent", has_text="switching to text")).to_have_count(1)
    assert caller.text("My bill is wrong") == "message"
    expect(alice.locator("#transcript .msg-consumer", has_text="My bill is wrong")).to_have_count(1)
