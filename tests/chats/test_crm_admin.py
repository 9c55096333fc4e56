"""The CRM and the do-not-contact list in the admin (issue 14, item 1): the API's
`out_ticket_url` opens the chat's record with what was posted to it; contacts are found by name
and number with their conversations; an opt-out is found and cleared only with a reason, and the
consent ledger keeps both."""
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from chats import services
from chats.models import DisconnectedBy, FinishReason
from portal.models import CrmContact
from sms.models import ConsentEvent, DoNotContact
from tests.api_client import make_api
from tests.chats.conftest import CONSUMER, PORTAL
from tests.chats.test_media import JPEG


@pytest.fixture
def staff(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


def test_the_api_ticket_url_opens_the_record_with_transcript_media_and_chat(
    phone, alice, go_online, twilio_settings, settings, tmp_path, client, django_capture_on_commit_callbacks, staff
):
    settings.MEDIA_ROOT = tmp_path
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    url = twilio_settings.add_media("receipt.jpg", JPEG, "image/jpeg")
    phone.text("My receipt", media=[(url, "image/jpeg")])
    chat = phone.chat()
    with django_capture_on_commit_callbacks(execute=True):
        services.end_chat(chat=chat, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED, agent=alice)
    api = make_api(client, django_capture_on_commit_callbacks)
    ticket_url = api.get(f"/apps/api/v1/chats/{chat.pk}").json()["out_ticket_url"]

    page = client.get(ticket_url)

    assert page.status_code == 200
    body = page.content.decode()
    assert f"chat:{chat.pk}" in body
    assert "[consumer] My receipt &lt;image/jpeg" in body  # the transcript as posted
    media = chat.messages.get(body="My receipt").media.get()
    assert reverse("agent-media", args=[media.pk]) in body
    assert reverse("admin:chats_chat_change", args=[chat.pk]) in body
    assert 'name="_save"' not in body  # read-only
    assert b"".join(client.get(reverse("agent-media", args=[media.pk])).streaming_content) == JPEG


def test_contacts_are_found_by_name_and_number_and_list_their_conversations(phone, alice, go_online, client, staff):
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    record = phone.chat().crm_record
    contact = record.contact
    contact.name = "Dana Scully"
    contact.save()

    by_name = client.get(reverse("admin:portal_crmcontact_changelist"), {"q": "Scully"}).content.decode()
    by_number = client.get(reverse("admin:portal_crmcontact_changelist"), {"q": CONSUMER}).content.decode()
    page = client.get(reverse("admin:portal_crmcontact_change", args=[contact.pk])).content.decode()

    assert "Dana Scully" in by_name and "Dana Scully" in by_number
    assert "0 results" in client.get(reverse("admin:portal_crmcontact_changelist"), {"q": "Mulder"}).content.decode()
    assert reverse("admin:portal_crmrecord_change", args=[record.pk]) in page
    assert reverse("admin:chats_chat_change", args=[phone.chat().pk]) in page


def test_a_contact_needs_a_name_in_the_admin(client, staff):
    response = client.post(
        reverse("admin:portal_crmcontact_add"), {"name": "  ", "phone_number": CONSUMER, "email": "", **empty_inline()}
    )

    assert response.status_code == 200
    assert "Enter the contact&#x27;s name" in response.content.decode()
    assert not CrmContact.objects.exists()


def empty_inline() -> dict:
    return {"records-TOTAL_FORMS": "0", "records-INITIAL_FORMS": "0"}


def test_an_opt_out_is_found_and_cleared_only_with_a_reason(phone, client, staff):
    phone.text("STOP")
    entry = DoNotContact.objects.get()
    changelist = reverse("admin:sms_donotcontact_changelist")
    assert CONSUMER in client.get(changelist, {"q": CONSUMER[-4:]}).content.decode()

    asked = client.post(changelist, {"action": "clear_entries", "_selected_action": [entry.pk]})
    assert asked.status_code == 200 and "Reason" in asked.content.decode()
    without_reason = client.post(changelist, {"action": "clear_entries", "_selected_action": [entry.pk], "reason": " "})
    assert "This field is required" in without_reason.content.decode()
    assert DoNotContact.objects.filter(pk=entry.pk).exists()
    assert client.post(reverse("admin:sms_donotcontact_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403

    done = client.post(
        changelist,
        {"action": "clear_entries", "_selected_action": [entry.pk], "reason": "Opted in again by phone, ticket 88"},
        follow=True,
    )

    assert "1 entry cleared" in done.content.decode()
    assert not DoNotContact.objects.exists()
    ledger = list(ConsentEvent.objects.order_by("pk").values_list("kind", "source", "text", "by_name", "reason"))
    assert ledger == [
        ("opt_out", "stop", "STOP", "", ""),
        ("opt_in", "admin", "", "root", "Opted in again by phone, ticket 88"),
    ]
    assert "Opted in again by phone" in client.get(reverse("admin:sms_consentevent_changelist"), {"q": CONSUMER}).content.decode()
    phone.text("Hello")
    assert phone.chat() is not None  # the consumer is served again


def test_an_admin_adds_an_opt_out_with_a_reason(phone, client, staff):
    response = client.post(
        reverse("admin:sms_donotcontact_add"),
        {"consumer_number": CONSUMER, "portal_number": PORTAL, "reason": "Asked by letter"},
    )

    assert response.status_code == 302, response.content.decode()
    assert DoNotContact.objects.get().source == "admin"
    event = ConsentEvent.objects.get()
    assert (event.kind, event.source, event.by_name, event.reason) == ("opt_out", "admin", "root", "Asked by letter")
    phone.text("Hello")
    assert phone.new_texts() == []  # nothing is sent to an opted-out consumer


def test_a_consumers_stop_and_start_are_in_the_ledger_with_their_message_sid(phone):
    phone.text("stop")
    phone.text("Start")

    events = list(ConsentEvent.objects.order_by("pk"))
    assert [(e.kind, e.text) for e in events] == [("opt_out", "stop"), ("opt_in", "Start")]
    assert all(e.message_sid.startswith("SM") for e in events)
