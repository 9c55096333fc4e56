"""The consent ledger (SPEC R2, issue 15 part 2): opt-out phrases said in words are STOP; an
agent's "Do not contact"; the wait-time SMS answers; the ledger per contact in the adapter, as CSV
in the admin and in the public API."""
import csv
import datetime as dt
import io

import pytest
from django.urls import reverse

from chats.calls import consent as call_consent
from chats.models import Chat, ChatStatus, FinishReason
from sms.models import ConsentEvent, DoNotContact
from tests.api_client import make_api
from tests.chats.calls import CALLER, IN_CALL
from tests.chats.conftest import CONSUMER, PORTAL, queued_in_billing
from tests.chats.test_agent_api import Adapter, error_of
from tests.factories import page_text, update_chat_settings

STOP_CONFIRMATION = "You have been unsubscribed and will receive no more messages. Reply START to resubscribe."


def ledger():
    return list(ConsentEvent.objects.order_by("pk").values_list("kind", "source", "text", "by_name"))


@pytest.mark.parametrize("words", ["Please stop texting me!", "STOP TEXTING ME", "remove me from this list.", "Don't text me"])
def test_an_opt_out_phrase_is_stop(phone, words):
    phone.text(words)

    assert DoNotContact.objects.filter(consumer_number=CONSUMER, portal_number=PORTAL).exists()
    assert ledger() == [("opt_out", "stop", words, "")]
    assert phone.new_texts() == [STOP_CONFIRMATION]


def test_a_phrase_inside_a_longer_message_is_not_stop(phone):
    phone.text("Could you stop texting me at night?")

    assert not DoNotContact.objects.exists()
    assert phone.chat() is not None


def test_a_phrase_ends_an_active_chat_like_stop(phone, alice, go_online):
    go_online(alice)
    chat = queued_in_billing(phone)

    phone.text("unsubscribe me")

    chat.refresh_from_db()
    assert (chat.status, chat.finish_reason) == (ChatStatus.FINISHED, FinishReason.END_USER_STOPPED)


def test_phrases_are_configurable_and_may_not_be_a_menu_keyword(phone, admin_client, support):
    update_chat_settings(opt_out_phrases="leave me alone")
    phone.text("Leave me alone.")
    assert DoNotContact.objects.exists()

    from tests.factories import admin_page_data

    url = reverse("admin:portal_chatsettings_change", args=[1])
    response = admin_client.post(url, admin_page_data(admin_client, url, opt_out_phrases="stop texting me\nInvoice"))
    assert response.status_code == 200
    assert "“invoice” is a menu keyword of Support › Billing; an opt-out phrase must be something else." in page_text(response)


def test_an_agent_marks_do_not_contact_and_the_chat_ends(phone, alice, go_online, django_capture_on_commit_callbacks):
    go_online(alice)
    chat = queued_in_billing(phone)
    browser = Adapter(alice.user, django_capture_on_commit_callbacks)

    response = browser.post(f"chats/{chat.pk}/do-not-contact")

    assert response.status_code == 200, response.content
    chat.refresh_from_db()
    assert (chat.status, chat.finish_reason, chat.disconnected_by) == (ChatStatus.FINISHED, "end_user_stopped", "agent")
    assert DoNotContact.objects.get().source == "agent"
    assert ledger() == [("opt_out", "agent", f"Marked do not contact by Alice in chat {chat.pk}", "alice")]
    assert phone.new_texts() == [STOP_CONFIRMATION]  # the one text after the opt-out
    assert Chat.objects.get(pk=chat.pk).survey_sent_at is None
    # A second click (another tab) is refused with a sentence; the contact panel shows the ledger.
    assert error_of(browser.post(f"chats/{chat.pk}/do-not-contact"), 409) == "This chat has ended."
    consent = browser.get(f"chats/{chat.pk}/contact").json()["consent"]
    assert [(c["kind_label"], c["source_label"], c["by"]) for c in consent] == [("Opt-out", "Agent", "alice")]


def test_the_wait_time_sms_answers_are_in_the_ledger(new_call, committed, clock):
    allowed, denied = new_call("CA1"), new_call("CA2", caller="+15557650001")
    clock.shift(dt.timedelta(seconds=60))
    for call, digit in ((allowed, "1"), (denied, "2")):
        committed(call_consent.wait_step, call_sid=call.call_sid)
        committed(call_consent.apply_digit, call_sid=call.call_sid, digit=digit)

    rows = list(ConsentEvent.objects.order_by("pk").values_list("consumer_number", "portal_number", "kind", "source"))
    assert rows == [(CALLER, IN_CALL, "wait_sms_allowed", "ivr"), ("+15557650001", IN_CALL, "wait_sms_denied", "ivr")]


def test_the_api_answers_a_numbers_consent(phone, client, django_capture_on_commit_callbacks):
    phone.text("STOP")
    phone.text("START")
    phone.text("stop")
    api = make_api(client, django_capture_on_commit_callbacks)

    body = api.get("/apps/api/v1/consent", {"number": CONSUMER}).json()

    assert body["number"] == CONSUMER
    assert [d["portal_number"] for d in body["do_not_contact"]] == [PORTAL]
    assert [(e["kind"], e["text"]) for e in body["events"]] == [("opt_out", "stop"), ("opt_in", "START"), ("opt_out", "STOP")]
    assert all(e["message_sid"].startswith("SM") for e in body["events"])
    assert api.get("/apps/api/v1/consent", {"number": "555-1234"}).json() == {"error": "number is invalid"}
    assert api.get("/apps/api/v1/consent").json() == {"error": "number is required"}


def test_the_ledger_downloads_as_csv(phone, admin_client):
    phone.text("STOP")
    event = ConsentEvent.objects.get()

    response = admin_client.post(
        reverse("admin:sms_consentevent_changelist"), {"action": "download_csv", "_selected_action": [event.pk]}
    )

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    (row,) = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert (row["consumer_number"], row["portal_number"], row["kind"], row["source"], row["text"]) == (
        CONSUMER, PORTAL, "opt_out", "stop", "STOP",
    )
