"""The phone simulator in a real browser (issue 14, item 7): a consumer's picture sent from the
simulator is kept by the local provider under a media URL, fetched by the same task as Twilio's
MMS, shown in the simulator's thread and inline in the agent's adapter."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chats.models import Chat, Media

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]

CONSUMER = "+15555550123"  # the simulator's default consumer
# A 1×1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)


def send(sim, text: str, *, picture: bool = False):
    if picture:
        sim.locator("#media").set_input_files(files=[{"name": "receipt.png", "mimeType": "image/png", "buffer": PNG}])
        expect(sim.locator("#attached")).to_have_text("Attached: receipt.png (1 KB)")
    sim.locator("#body").fill(text)
    sim.get_by_role("button", name="Send").click()
    expect(sim.locator("#thread .bubble.in", has_text=text)).to_have_count(1)


def test_a_picture_from_the_simulator_reaches_the_agent_inline(pages):
    alice = pages.agent("alice")
    sim = pages.new()
    pages.login(sim, "admin", "admin", next_path="/monitor/")
    expect(sim).to_have_url(re.compile(r"/monitor/$"))
    sim.goto(pages.server.url + "/simulator/")
    expect(sim.locator("h1")).to_have_text("Phone simulator")

    send(sim, "Hi")
    expect(sim.locator("#thread .bubble.out", has_text="Reply 1 for Billing")).to_have_count(1)
    send(sim, "1")
    expect(alice.locator("#chat-list .chat-item")).to_have_count(1)
    alice.locator("#chat-list .chat-item").first.click()

    send(sim, "My receipt", picture=True)

    # The simulator shows the picture it sent, from its media URL.
    sent = sim.locator("#thread .bubble.in", has_text="My receipt").locator("img")
    expect(sent).to_have_attribute("src", re.compile(r"^/simulator/media/[0-9a-f]{32}\.png$"))
    sim.wait_for_function("() => { const i = document.querySelector('#thread .bubble.in img'); return i && i.complete && i.naturalWidth === 1; }")
    # Alice sees it inline, stored with the chat and served from the portal.
    picture = alice.locator("#transcript .msg-consumer", has_text="My receipt").locator(".media img")
    expect(picture).to_have_attribute("src", re.compile(r"^/agent/media/\d+/$"))
    alice.wait_for_function("() => { const i = document.querySelector('#transcript .media img'); return i && i.complete && i.naturalWidth === 1; }")
    media = Media.objects.get(message__chat=Chat.objects.get(consumer_number=CONSUMER))
    assert media.content_type == "image/png" and media.error == "" and media.size == len(PNG)

    # A file that is not a picture or a video is refused with a sentence, and nothing is sent.
    sim.locator("#media").set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    sim.locator("#body").fill("And my notes")
    sim.get_by_role("button", name="Send").click()
    expect(sim.locator("#error")).to_have_text("Attach a picture or a video (JPEG, PNG, GIF, MP4 …).")
    expect(sim.locator("#thread .bubble.in", has_text="And my notes")).to_have_count(0)
