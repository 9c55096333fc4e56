"""The supervisors' monitor in a real browser (issue 13): sam watches a consumer's chat wait in
Billing and Alice take it, live over /ws/monitor/, without a reload. With TERN_SCREENSHOTS=1 it
refreshes docs/screenshots/monitor.png."""
from __future__ import annotations

import os
import re

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


def test_sam_reads_a_report_changes_the_range_opens_a_bar_and_downloads_the_csv(pages, live, tmp_path):
    import datetime as dt
    import re

    from django.utils import timezone

    from chats.demo_history import seed_history
    from chats.management.commands.seed_demo import INCOMING_NUMBER, OUTBOUND_NUMBER

    seed_history(incoming=INCOMING_NUMBER, outbound=OUTBOUND_NUMBER)
    today = timezone.localdate()
    sam = pages.new((1440, 1000))
    pages.login(sam, "sam", next_path="/reports/queues/")
    expect(sam.locator("h1")).to_have_text("Queues")

    sam.fill('input[name="start"]', (today - dt.timedelta(days=7)).isoformat())
    sam.fill('input[name="end"]', (today - dt.timedelta(days=1)).isoformat())
    sam.get_by_role("button", name="Show").click()
    expect(sam).to_have_url(re.compile(r"start=" + (today - dt.timedelta(days=7)).isoformat()))
    expect(sam.locator("#report-table tbody tr")).to_have_count(2)
    expect(sam.locator("#report-table")).to_contain_text("Support › Billing")

    # The Billing bar opens the chats behind it: Individual Chat History narrowed to Billing.
    sam.locator('#report-chart a.bar[data-label="Support › Billing"]').click()
    expect(sam).to_have_url(re.compile(r"/reports/chat-history/\?.*queue=\d+"))
    rows = sam.locator("#report-table tbody tr")
    expect(rows.first).to_contain_text("Support › Billing")
    assert "Support › Tech" not in sam.locator("#report-table").inner_text()

    with sam.expect_download() as download:
        sam.locator("#csv-link").click()
    assert re.fullmatch(r"tern-chat-history-\d{4}-\d\d-\d\d-to-\d{4}-\d\d-\d\d\.csv", download.value.suggested_filename)
    lines = open(download.value.path(), encoding="utf-8-sig").read().splitlines()
    assert lines[0].startswith("Chat,Started,Consumer") and len(lines) > 1

    sam.goto(pages.server.url + "/reports/calls-chats/?" + f"start={(today - dt.timedelta(days=7)).isoformat()}")
    expect(sam.locator("#heatmap")).to_be_visible()
    out = django_settings.BASE_DIR / "docs" / "screenshots" if os.environ.get("TERN_SCREENSHOTS") else tmp_path
    sam.screenshot(path=str(out / "report.png"), full_page=True)


def test_a_click_on_a_chat_held_while_the_table_is_read_again_opens_the_chat(pages, consumer):
    """The monitor reads its tables again whenever something changes. A click on a chat's link
    pressed before such a read and released after it opens the chat: the row under the pointer
    is changed in place, not replaced (the browser drops a click released on another element)."""
    alice = pages.agent("alice")
    alice.get_by_role("radio", name="Away").check()
    sam = supervisor(pages)
    phone = consumer("+15557654321")
    assert phone.text("Hi there") == "menu"
    assert phone.text("1") == "queued"
    row = sam.locator("#chats-table tbody tr").first
    expect(row).to_contain_text("queued")

    row.locator("a").hover()
    sam.mouse.down()
    alice.get_by_role("radio", name="Available").check()  # she is given the chat: the row changes
    expect(row).not_to_contain_text("queued")
    sam.mouse.up()
    expect(sam).to_have_url(re.compile(r"/monitor/chats/\d+/$"))
    expect(sam.locator("#transcript")).to_contain_text("Hi there")
