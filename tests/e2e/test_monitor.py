"""The supervisors' monitor in a real browser (issue 13): sam watches a consumer's chat wait in
Billing and Alice take it, live over /ws/monitor/, without a reload. With TERN_SCREENSHOTS=1 it
refreshes docs/screenshots/monitor.png."""
from __future__ import annotations

import os

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]


def supervisor(pages):

    page = pages.new((1440, 900))
    pages.login(page, "sam", next_path="/monitor/")
    expect(page).to_have_url(pages.server.url + "/monitor/")
    expect(page.locator("#connection")).to_have_text("Live")
    return page


def test_sam_watches_a_chat_wait_and_alice_take_it_without_a_reload(pages, consumer, tmp_path):
    alice = pages.agent("alice")
    alice.get_by_role("radio", name="Away").check()
    sam = supervisor(pages)
    billing = sam.locator("#queues-table tr", has_text="Billing")
    alice_row = sam.locator('#agents-table tr[data-agent="alice"]')
    expect(alice_row.locator(".status")).to_have_text("Away")
    expect(billing.locator(".waiting")).to_have_text("0")

    phone = consumer("+15557654321")
    assert phone.text("Hi there") == "menu"
    assert phone.text("1") == "queued"

    # The chat waits: the count and the chat appear on sam's page, pushed, not reloaded.
    expect(billing.locator(".waiting")).to_have_text("1")
    expect(sam.locator("#chats-table tbody tr")).to_have_count(1)
    expect(sam.locator("#chats-table tbody tr").first).to_contain_text("queued")
    expect(sam.locator("#chats-table")).not_to_contain_text("+15557654321")  # masked

    # Alice comes back and is given the chat: her load and the queue change on sam's page.
    alice.get_by_role("radio", name="Available").check()
    expect(alice_row.locator(".status")).to_have_text("Available")
    expect(alice_row.locator(".chats")).to_have_text("1 / 3")
    expect(alice_row.locator(".answered")).to_have_text("1")
    expect(billing.locator(".waiting")).to_have_text("0")
    expect(billing.locator(".in-progress")).to_have_text("1")

    # The chat's transcript, read-only and live: a new consumer text shows up on its own.
    sam.locator("#chats-table tbody tr a").first.click()
    expect(sam.locator("#transcript")).to_contain_text("Hi there")
    expect(sam.locator("#connection")).to_have_text("Live")
    phone.text("My invoice is wrong")
    expect(sam.locator("#transcript")).to_contain_text("My invoice is wrong")
    expect(sam.locator("textarea")).to_have_count(0)

    sam.goto(pages.server.url + "/monitor/")
    out = django_settings.BASE_DIR / "docs" / "screenshots" if os.environ.get("TERN_SCREENSHOTS") else tmp_path
    expect(sam.locator("#connection")).to_have_text("Live")
    sam.screenshot(path=str(out / "monitor.png"), full_page=True)
