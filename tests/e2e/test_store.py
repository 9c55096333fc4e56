"""The adapter's store (static/js/agent/store.js) in a real browser: events that arrive late or
out of order never undo newer ones, as the agent sees it on the page. The events are handed to
`window.tern.store.apply`, the same entry point the websocket's events take."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chats.models import Chat
from queues.models import Queue

from .test_adapter import ALICE_CONSUMER, billing_waiting, chat_items, start_conversation

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]


def apply(page, *events):
    page.evaluate("(events) => events.forEach((e) => window.tern.store.apply(e))", list(events))


def chat_event(chat, **changes):
    row = page_chat(chat)
    row.update(changes)
    return {"type": "chat.updated", "chat": row}


def page_chat(chat):
    return {
        "id": chat.pk, "status": chat.status, "agent_id": chat.agent_id, "queue_id": chat.queue_id,
        "queue_name": chat.queue.name, "consumer_number": "+1••••••4321", "version": chat.version,
        "assigned_at": chat.assigned_at.isoformat() if chat.assigned_at else None, "finish_reason": "",
    }


@pytest.mark.e2e
def test_late_events_never_undo_newer_ones(pages, consumer):
    alice = pages.agent("alice")
    start_conversation(consumer(ALICE_CONSUMER))
    expect(chat_items(alice)).to_have_count(1)
    chat = Chat.objects.select_related("queue").get(consumer_number=ALICE_CONSUMER)
    chat_items(alice).first.click()
    expect(alice.locator("#transcript .msg-consumer").first).to_contain_text("Hi there")

    # An older version of the chat (still waiting in the queue, nobody's) comes late: ignored.
    apply(alice, chat_event(chat, status="queued", agent_id=None, version=chat.version - 1))
    expect(chat_items(alice)).to_have_count(1)
    expect(alice.locator("#chat-view")).to_be_visible()

    # A delivery status that overtook its message is kept until the message comes, and an older
    # status after it does not take it back.
    sent = {
        "id": 10_000_001, "chat_id": chat.pk, "author": "agent", "agent_id": chat.agent_id,
        "body": "Checking your invoice now.", "created_at": "2030-01-01T10:00:00Z",
        "outbound_id": 20_000_001, "status": "queued", "media": [],
    }
    apply(
        alice,
        {"type": "message.status", "outbound_id": 20_000_001, "status": "delivered"},
        {"type": "message.created", "message": sent},
        {"type": "message.status", "outbound_id": 20_000_001, "status": "sent"},
    )
    mine = alice.locator("#transcript .msg-agent", has_text="Checking your invoice now.")
    expect(mine.locator(".msg-status")).to_have_text("Delivered")

    # Waiting counts follow each chat's newest version, whatever order queue.chat comes in.
    billing = Queue.objects.get(name="Billing").pk
    apply(
        alice,
        {"type": "queue.chat", "chat_id": 9_000_001, "queue_id": billing, "status": "queued", "version": 2},
        {"type": "queue.chats", "chats": [
            {"chat_id": 9_000_002, "queue_id": billing, "status": "queued", "version": 1},
            {"chat_id": 9_000_001, "queue_id": billing, "status": "assigned", "version": 4},
        ]},
        {"type": "queue.chat", "chat_id": 9_000_001, "queue_id": billing, "status": "queued", "version": 3},
    )
    expect(billing_waiting(alice)).to_have_text("1 waiting")

    # The chat ends by the timer (a newer version): it leaves the list and the agent is told why.
    apply(alice, chat_event(chat, status="finished", finish_reason="expired_unanswered", version=chat.version + 5))
    expect(chat_items(alice)).to_have_count(0)
    expect(alice.locator("#no-chat")).to_be_visible()
    expect(alice.locator(".toast")).to_contain_text("ended: Expired unanswered")
