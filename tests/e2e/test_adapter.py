"""The agent adapter in a real browser (issue 4): two agents, a simulated consumer, live updates
over the websocket. Every wait is one of Playwright's auto-waiting `expect` assertions."""
from __future__ import annotations

import json
import os
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from chats.models import Chat, ChatStatus, Message
from portal.models import AgentProfile, ChatShortcut
from queues.models import AnswerType, Queue

pytestmark = [
    pytest.mark.e2e,
    # Django's ASGI handler says so for every static file and media FileResponse it streams.
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]

ALICE_CONSUMER = "+15557654321"
OTHER_CONSUMER = "+15557650042"
MASKED = re.compile(r"^\+1•+4321$")


def optin_text() -> str:
    return ChatShortcut.objects.get(keyword="optin").text


def chat_items(page):
    return page.locator("#chat-list .chat-item")


def billing_waiting(page):
    return page.locator("#queues li", has_text="Billing").locator(".q-waiting")


def start_conversation(consumer, text="Hi there"):
    """Greeting and menu, then "1" for Billing: the chat is queued and routed."""
    assert consumer.text(text) == "menu"
    assert consumer.text("1") == "queued"


@pytest.mark.e2e
def test_conversation_live_for_its_agent_only(pages, consumer):
    alice = pages.agent("alice")
    bob = pages.agent("bob")
    # Bob steps away (the status switch): every chat goes to Alice, while Bob's page still hears
    # the events of both queues.
    bob.get_by_role("radio", name="Away").check()
    expect(bob.locator('#status-switch input[value="away"]')).to_be_checked()
    assert_status(bob, "away")

    phone = consumer(ALICE_CONSUMER)
    start_conversation(phone)

    # The assigned chat appears in Alice's list without a reload, masked, with its unread count.
    item = chat_items(alice).first
    expect(chat_items(alice)).to_have_count(1)
    expect(item.locator(".ci-number")).to_have_text(MASKED)
    expect(item.locator(".ci-queue")).to_have_text("Billing")
    expect(item.locator(".badge")).to_have_text("2")  # "Hi there" and "1"
    expect(item.locator(".ci-wait")).to_contain_text("Waiting")
    assert ALICE_CONSUMER not in alice.content()

    # Opening it shows the whole transcript and clears the badge.
    item.click()
    expect(alice.locator("#chat-title")).to_have_text(MASKED)
    transcript = alice.locator("#transcript")
    expect(transcript.locator(".msg-consumer").first).to_contain_text("Hi there")
    expect(transcript.locator(".msg-system", has_text="Reply 1 for Billing")).to_have_count(1)
    expect(transcript.locator(".msg-system", has_text="Alice has joined")).to_have_count(1)
    expect(item.locator(".badge")).to_have_count(0)

    # While the tab is hidden, a new message counts in the title and stays unread until the
    # agent looks again.
    alice.evaluate("Object.defineProperty(document, 'hidden', {value: true, configurable: true})")
    phone.text("Hello? Are you there?")
    expect(alice).to_have_title(re.compile(r"^\(1\) "))
    expect(item.locator(".badge")).to_have_text("1")
    alice.evaluate("delete document.hidden; document.dispatchEvent(new Event('visibilitychange'))")
    expect(alice).to_have_title("Agent · Tern")
    expect(item.locator(".badge")).to_have_count(0)

    # A consumer text arrives live, as text (never markup).
    phone.text('<img src=x onerror="window.pwned=1">My invoice is wrong')
    expect(transcript.locator(".msg-consumer").last).to_contain_text('<img src=x onerror="window.pwned=1">My invoice is wrong')
    expect(transcript.locator("img")).to_have_count(0)

    # Alice replies; the status moves to delivered live (local provider).
    composer = alice.locator("#composer-input")
    composer.fill("Sorry about that, let me check your invoice.")
    composer.press("Enter")
    mine = transcript.locator(".msg-agent").last
    expect(mine).to_contain_text("Sorry about that, let me check your invoice.")
    expect(mine.locator(".msg-status")).to_have_text("Delivered")
    expect(composer).to_have_value("")

    # Shortcuts: "/" and the keyword, arrows to pick, Enter to insert.
    composer.press_sequentially("/opt")
    menu = alice.locator("#shortcut-menu")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("option")).to_have_count(1)
    expect(menu.get_by_role("option").first).to_contain_text("/optin")
    composer.press("ArrowDown")
    composer.press("Enter")
    expect(menu).to_be_hidden()
    expect(composer).to_have_value(optin_text())

    # The counter: GSM-7 and UCS-2 segments, and the 1,600-character warning.
    composer.fill("a" * 160)
    expect(alice.locator("#segment-count")).to_have_text("1 segment")
    composer.fill("a" * 161)
    expect(alice.locator("#segment-count")).to_have_text("2 segments")
    expect(alice.locator("#encoding")).to_have_text("GSM-7")
    composer.fill("Thanks 😀")
    expect(alice.locator("#encoding")).to_have_text("UCS-2")
    expect(alice.locator("#segment-count")).to_have_text("1 segment")
    composer.fill("é" * 1601)
    expect(alice.locator("#composer-warning")).to_contain_text("1,600")
    expect(alice.locator("#send-button")).to_be_disabled()
    composer.fill("")
    expect(alice.locator("#composer-warning")).to_have_text("")

    # A second consumer: a second chat, whose unread badge grows live while the first is open.
    other = consumer(OTHER_CONSUMER)
    start_conversation(other, "Hello?")
    expect(chat_items(alice)).to_have_count(2)
    second = chat_items(alice).nth(1)
    expect(second.locator(".badge")).to_have_text("2")
    other.text("Anyone there?")
    expect(second.locator(".badge")).to_have_text("3")
    expect(second.locator(".ci-preview")).to_have_text("Anyone there?")

    # Ending the open chat removes it from the list.
    alice.get_by_role("button", name="End chat").click()
    alice.locator("#end-confirm").click()
    expect(chat_items(alice)).to_have_count(1)
    expect(chat_items(alice).first.locator(".ci-number")).to_have_text(re.compile(r"0042$"))
    expect(alice.locator("#no-chat")).to_be_visible()
    assert Chat.objects.get(consumer_number=ALICE_CONSUMER).status == ChatStatus.FINISHED
    expect(alice.locator("#stat-you-answered")).to_have_text("2")

    # Bob never saw either chat, though he was connected all along.
    expect(chat_items(bob)).to_have_count(0)
    expect(bob.locator("#no-chats")).to_be_visible()
    assert "4321" not in bob.content() and "0042" not in bob.content()
    assert bob.evaluate("window.tern.state.chats.size") == 0
    assert alice.evaluate("window.pwned === undefined")
    # The websocket pushes carry masked numbers too (SPEC C1), never the full ones.
    pushed = [json.loads(frame) for frame in alice.ws_frames + bob.ws_frames]
    numbers = {event["chat"]["consumer_number"] for event in pushed if "chat" in event}
    assert numbers == {"+1••••••4321", "+1••••••0042"}
    assert not any(ALICE_CONSUMER in frame or OTHER_CONSUMER in frame for frame in alice.ws_frames + bob.ws_frames)


def assert_status(page, status):
    expect(page.locator(f'#status-switch input[value="{status}"]')).to_be_checked()
    expect(page.locator("#app")).to_have_attribute("data-status", status)  # the server said so
    username = page.evaluate("document.querySelector('.who').title").rsplit(" ", 1)[-1]
    assert AgentProfile.objects.get(user__username=username).status == status


@pytest.mark.e2e
def test_a_click_held_while_the_list_redraws_still_opens_the_chat(pages, consumer):
    """The chat list redraws whenever a text arrives. A click pressed on a chat before such a
    redraw and released after it opens that chat: the row under the pointer is kept and changed,
    not replaced (a replaced row takes the release, and the browser drops the click)."""
    alice = pages.agent("alice")
    start_conversation(consumer(ALICE_CONSUMER))
    other = consumer(OTHER_CONSUMER)
    start_conversation(other)
    pressed = chat_items(alice).filter(has_text="0042")
    expect(chat_items(alice)).to_have_count(2)
    expect(pressed.locator(".badge")).to_have_text("2")

    pressed.hover()
    alice.mouse.down()
    other.text("Still there?")  # the very row under the pointer changes: its badge, its preview
    expect(pressed.locator(".badge")).to_have_text("3")
    alice.mouse.up()
    expect(alice.locator("#chat-title")).to_have_text(re.compile(r"0042$"))
    expect(pressed.locator(".badge")).to_have_count(0)


@pytest.mark.e2e
def test_media_reconnect_and_failure_reason(pages, consumer, monkeypatch):
    from sms.providers.base import FetchedMedia, ProviderError
    from sms.providers.local import LocalProvider

    # A 1×1 PNG stands in for the consumer's MMS picture the provider would return.
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
    )
    monkeypatch.setattr(LocalProvider, "fetch_media", lambda self, url: FetchedMedia(content=png, content_type="image/png"))

    alice = pages.agent("alice")
    phone = consumer(ALICE_CONSUMER)
    start_conversation(phone)
    chat_items(alice).first.click()
    transcript = alice.locator("#transcript")
    expect(transcript.locator(".msg-system", has_text="Alice has joined")).to_have_count(1)

    # A picture arrives inline (stored from the provider, served to the chat's agent only).
    phone.text("Here is the screen", media=[{"url": "https://media.example/ME1", "content_type": "image/png"}])
    picture = transcript.locator(".msg-consumer .media img")
    expect(picture).to_have_count(1)
    expect(picture).to_have_attribute("src", re.compile(r"^/agent/media/\d+/$"))
    alice.wait_for_function("() => { const i = document.querySelector('#transcript .media img'); return i && i.complete && i.naturalWidth === 1; }")

    # The websocket drops; texts sent meanwhile are fetched on reconnect, each shown once.
    alice.evaluate("window.tern.socket.pause()")
    expect(alice.locator("#connection")).to_have_text("Disconnected")
    phone.text("Sent while you were away")
    phone.text("And another one")
    alice.evaluate("window.tern.socket.resume()")
    expect(alice.locator("#connection")).to_have_text("Live")
    expect(transcript.locator(".msg", has_text="Sent while you were away")).to_have_count(1)
    expect(transcript.locator(".msg", has_text="And another one")).to_have_count(1)
    chat = Chat.objects.get(consumer_number=ALICE_CONSUMER)
    expect(transcript.locator(".msg")).to_have_count(Message.objects.filter(chat=chat).count())

    # Events after the reconnect still arrive live, once.
    phone.text("Still there?")
    expect(transcript.locator(".msg", has_text="Still there?")).to_have_count(1)
    expect(transcript.locator(".msg")).to_have_count(Message.objects.filter(chat=chat).count())

    # A message the provider refuses shows as failed, with the provider's code and reason.
    def refuse(self, message):
        raise ProviderError("The carrier blocked this message.", code="30007", status=400)

    monkeypatch.setattr(LocalProvider, "send", refuse)
    alice.locator("#composer-input").fill("Will this one arrive?")
    alice.locator("#composer-input").press("Enter")
    failed = transcript.locator(".msg-agent", has_text="Will this one arrive?")
    expect(failed.locator(".msg-status")).to_have_text("Failed — 30007: The carrier blocked this message.")
    expect(failed).to_have_attribute("data-status", "failed")


@pytest.mark.e2e
def test_manual_answer_offer_accept_and_transfer(pages, consumer):
    Queue.objects.filter(name="Billing").update(answer_type=AnswerType.MANUAL)
    alice = pages.agent("alice")
    bob = pages.agent("bob")

    start_conversation(consumer(ALICE_CONSUMER))
    for page in (alice, bob):
        offer = page.locator("#offers .offer")
        expect(offer).to_have_count(1)
        expect(offer.locator(".ci-number")).to_have_text(MASKED)
        # The queues panel counts it live (queue.chat events; the page loaded before it waited).
        expect(billing_waiting(page)).to_have_text("1 waiting")

    alice.locator("#offers .offer").get_by_role("button", name="Accept").click()
    expect(chat_items(alice)).to_have_count(1)
    expect(alice.locator("#chat-title")).to_have_text(MASKED)  # opened at once
    expect(alice.locator("#offers-section")).to_be_hidden()
    # Bob's offer goes away live; he never gets the chat.
    expect(bob.locator("#offers .offer")).to_have_count(0)
    expect(chat_items(bob)).to_have_count(0)
    for page in (alice, bob):
        expect(billing_waiting(page)).to_have_text("none waiting")

    # Transfer to Bob: the chat leaves Alice's list and appears in Bob's.
    alice.get_by_role("button", name="Transfer").click()
    dialog = alice.locator("#transfer-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Bob").check()
    dialog.get_by_role("button", name="Transfer").click()
    expect(dialog).to_be_hidden()
    expect(chat_items(alice)).to_have_count(0)
    expect(chat_items(bob)).to_have_count(1)
    expect(chat_items(bob).first.locator(".ci-number")).to_have_text(MASKED)
    assert Chat.objects.get(consumer_number=ALICE_CONSUMER).agent.display_name == "Bob"


@pytest.mark.e2e
def test_crm_panel_picks_among_several_contacts(pages, consumer):
    from portal.models import CrmContact

    CrmContact.objects.create(phone_number=ALICE_CONSUMER, name="Dana Whitfield", email="dana@example.com")
    CrmContact.objects.create(phone_number=ALICE_CONSUMER, name="Dan Whitfield")
    alice = pages.agent("alice")
    start_conversation(consumer(ALICE_CONSUMER))
    chat_items(alice).first.click()
    panel = alice.locator("#crm")
    expect(panel.locator(".crm-note")).to_contain_text("2 contacts share this number")
    panel.get_by_label("Dan Whitfield").check()
    panel.get_by_role("button", name="Save contact").click()
    expect(panel.locator(".contact-name")).to_have_text("Dan Whitfield")
    expect(panel.locator(".contact-sub").first).to_have_text(MASKED)
    chat = Chat.objects.get(consumer_number=ALICE_CONSUMER)
    assert chat.crm_record.contact.name == "Dan Whitfield" and not chat.crm_needs_choice

    # Where Dan is, for his quiet hours (SPEC R1): the agent picks his zone; the consent panel
    # says nothing was recorded yet.
    with alice.expect_response(lambda r: r.url.endswith("/contact") and r.request.method == "POST") as saved:
        panel.get_by_label("The contact's time zone").select_option("America/Chicago")
    assert saved.value.status == 200
    expect(panel.get_by_label("The contact's time zone")).to_have_value("America/Chicago")
    expect(panel.locator(".consent")).to_have_count(0)
    expect(panel).to_contain_text("No opt-out or opt-in recorded.")
    assert CrmContact.objects.get(name="Dan Whitfield").time_zone == "America/Chicago"


@pytest.mark.e2e
def test_outbound_chat_suggests_the_optin_first(pages):
    alice = pages.agent("alice")
    alice.locator("#new-outbound").click()
    dialog = alice.locator("#outbound-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#optin-keyword")).to_have_text("/optin")
    expect(dialog.locator("#outbound-body")).to_have_value(optin_text())

    dialog.locator("#outbound-number").fill("+15557651234")
    dialog.get_by_role("button", name="Start chat").click()
    expect(dialog).to_be_hidden()
    expect(chat_items(alice)).to_have_count(1)
    expect(chat_items(alice).first.locator(".tag")).to_have_text("Outbound")
    first = alice.locator("#transcript .msg-agent").first
    expect(first).to_contain_text("Msg & data rates may apply")
    expect(first.locator(".msg-status")).to_have_text("Delivered")
    chat = Chat.objects.get(consumer_number="+15557651234")
    assert chat.start_type == "outbound" and chat.agent.display_name == "Alice"

    # The same consumer again: refused with the server's sentence.
    alice.locator("#new-outbound").click()
    dialog.locator("#outbound-number").fill("+15557651234")
    dialog.get_by_role("button", name="Start chat").click()
    expect(dialog.locator("#outbound-error")).to_contain_text("already an active chat")


@pytest.mark.e2e
def test_access_anonymous_and_non_agent(pages, live, django_user_model):
    django_user_model.objects.create_user("carol", "carol@example.com", "demo")
    page = pages.new()
    # Anonymous: sent to the Tern sign-in page, then back to the adapter.
    response = page.goto(live.url + "/agent/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/agent/$"))
    assert response.ok
    expect(page.locator("#id_username")).to_be_visible()
    expect(page.locator('input[name="next"]')).to_have_value("/agent/")

    # A user without an agent profile: the "not an agent" page, 403.
    page.fill("#id_username", "carol")
    page.fill("#id_password", "demo")
    with page.expect_response(lambda r: r.url == live.url + "/agent/") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="This account is not an agent")).to_be_visible()
    api = page.request.get(live.url + "/apps/api/v1/agent/state")
    assert api.status == 403

    # A wrong password stays on the sign-in page with a sentence.
    other = pages.new()
    pages.login(other, "alice", "wrong")
    expect(other.locator(".login-error")).to_be_visible()


# --- a busy day at both screen sizes; with TERN_SCREENSHOTS=1 it refreshes docs/screenshots -------


@pytest.mark.e2e
@pytest.mark.parametrize("width,height,name", [(1280, 800, "adapter.png"), (1920, 1080, "adapter-1920.png")])
def test_a_busy_adapter_fits_the_screen(pages, consumer, monkeypatch, tmp_path, width, height, name):
    from django.conf import settings as django_settings

    from portal.models import CrmContact
    from sms.providers.base import FetchedMedia
    from sms.providers.local import LocalProvider

    out = django_settings.BASE_DIR / "docs" / "screenshots" if os.environ.get("TERN_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    # The consumer's MMS picture: a card statement, drawn by the browser itself.
    drawing = pages.new(viewport=(520, 300))
    drawing.set_content(STATEMENT_HTML)
    picture = drawing.locator(".statement").screenshot()
    monkeypatch.setattr(LocalProvider, "fetch_media", lambda self, url: FetchedMedia(content=picture, content_type="image/png"))
    CrmContact.objects.create(phone_number=ALICE_CONSUMER, name="Dana Whitfield", email="dana.whitfield@example.com")
    AgentProfile.objects.filter(user__username="bob").update(status="away")
    # Earlier, finished chats today: Dana's history in the CRM panel, and figures for the stats.
    from sms.models import PhoneNumber

    now = timezone.now()
    today = now.replace(hour=0, minute=5) if now.hour >= 1 else now
    for agent_name, number, queue, minutes in [("alice", ALICE_CONSUMER, "Tech", 7), ("bob", "+15557650099", "Billing", 11), ("alice", "+15557650098", "Billing", 4)]:
        chat = Chat.objects.create(
            consumer_number=number,
            portal_number=PhoneNumber.objects.get(number="+15550100001"),
            queue=Queue.objects.get(name=queue),
            agent=AgentProfile.objects.get(user__username=agent_name),
            status=ChatStatus.FINISHED,
            finish_reason="agent_ended",
            disconnected_by="agent",
            start_type="auto_answer",
        )
        Chat.objects.filter(pk=chat.pk).update(
            assigned_at=today, ends_at=today + timezone.timedelta(minutes=minutes, seconds=23)
        )

    alice = pages.agent("alice", viewport=(width, height))
    dana = consumer(ALICE_CONSUMER)
    dana.text("Hi, I was charged twice for my March invoice")
    dana.text("1")
    chat_items(alice).first.click()
    expect(alice.locator("#transcript .msg-system", has_text="joined")).to_have_count(1)
    composer = alice.locator("#composer-input")
    composer.fill("Hi Dana, I'm sorry about that. Could you send me a photo of the charge on your statement?")
    composer.press("Enter")
    expect(alice.locator("#transcript .msg-agent .msg-status")).to_have_text(["Delivered"])
    media = [{"url": "https://media.example/ME1", "content_type": "image/png"}]
    dana.text("Sure, here it is. The second one on the 14th.", media=media)
    expect(alice.locator("#transcript .msg-consumer").last).to_contain_text("14th")
    alice.wait_for_function("() => { const i = document.querySelector('#transcript .media img'); return i && i.complete && i.naturalWidth > 1; }")
    composer.fill("Thanks! I can see the duplicate charge of $42.50. I've started the refund; it takes 3-5 business days.")
    composer.press("Enter")
    expect(alice.locator("#transcript .msg-agent .msg-status")).to_have_text(["Delivered", "Delivered"])
    dana.text("Great, thank you so much!")
    for number, texts in [("+15557650042", ["Hello, is my order shipped?", "2"]), ("+15557650077", ["Hi", "1", "Can I change my plan?"])]:
        other = consumer(number)
        for text in texts:
            other.text(text)
    expect(chat_items(alice)).to_have_count(3)
    expect(chat_items(alice).nth(2).locator(".badge")).to_have_text("3")  # the full rows are in
    expect(chat_items(alice).nth(1).locator(".ci-preview")).to_have_text("Alice has joined the chat.")
    composer.fill("Is there anything else I can help you with today?")
    # Nothing scrolls sideways and the composer, the stats and the contact stay on screen.
    assert alice.evaluate("document.scrollingElement.scrollWidth") <= width
    for part in ("#composer-input", "#chat-list", "#transcript"):
        box = alice.locator(part).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width and box["y"] + box["height"] <= height, part
    expect(alice.get_by_text("Dana Whitfield", exact=True)).to_be_visible()
    alice.screenshot(path=str(out / name))


STATEMENT_HTML = """
<style>
  body { margin: 0; font: 15px system-ui, sans-serif; background: #fff; }
  .statement { width: 440px; padding: 18px 22px; background: #fffdf7; color: #333; }
  h1 { font-size: 15px; margin: 0 0 10px; letter-spacing: .06em; color: #555; }
  table { width: 100%; border-collapse: collapse; }
  td { padding: 7px 0; border-top: 1px solid #e6e1d3; }
  td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
  .dup td { background: #ffe9a8; font-weight: 600; }
</style>
<div class="statement">
  <h1>CARD STATEMENT · MARCH</h1>
  <table>
    <tr><td>Mar 12</td><td>Coffee Corner</td><td>$4.20</td></tr>
    <tr><td>Mar 14</td><td>TERN SUPPORT PLAN</td><td>$42.50</td></tr>
    <tr class="dup"><td>Mar 14</td><td>TERN SUPPORT PLAN</td><td>$42.50</td></tr>
    <tr><td>Mar 15</td><td>Grocery Mart</td><td>$61.08</td></tr>
  </table>
</div>
"""
