"""Retention and erasure (SPEC R3, issue 15 part 3): after erasing a number, no row or file
anywhere holds its texts — every text column of every model is searched — while the chats stay
counted in the reports and the do-not-contact list and consent ledger stay; retention erases
by age in batches."""
import datetime as dt

import pytest
from django.apps import apps
from django.db import models
from django.urls import reverse

from chats import erasure, services
from chats.models import Chat, ChatStatus, DisconnectedBy, Erasure, FinishReason, Media
from portal.models import CrmContact, EventWebhook, WebhookEvent
from sms.models import ConsentEvent, DoNotContact, SessionlessRequest
from sms.pipeline import add_do_not_contact
from tests.api_client import make_api
from tests.chats.conftest import CONSUMER, OTHER_CONSUMER, PORTAL, queued_in_billing
from tests.chats.test_media import JPEG
from tests.factories import update_chat_settings

SECRET = "My card number ends in 4242 zebra"
OTHER_TEXT = "Another consumer's text stays"


def rows_holding(text: str) -> list[str]:
    """Every row of every model whose text, char or JSON column holds `text`."""
    found = []
    for model in apps.get_models():
        fields = [f.name for f in model._meta.concrete_fields if isinstance(f, (models.TextField, models.CharField, models.JSONField))]
        for row in model.objects.values("pk", *fields):
            for name in fields:
                if text in str(row[name]):
                    found.append(f"{model._meta.label}.{name} #{row['pk']}")
    return found


def files_holding(root, content: bytes) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and content in path.read_bytes()]


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def history(phone, make_phone, alice, go_online, committed, twilio_settings, media_root):
    """The consumer wrote a secret and a picture in a finished chat, has an active chat now, a
    CRM contact, a session-less text, a webhook log of their chat and a STOP on another number;
    another consumer wrote too."""
    EventWebhook.objects.create(url="https://hooks.example.com/x", event_types=[WebhookEvent.CHAT_FINISHED])
    go_online(alice)
    chat = queued_in_billing(phone)
    phone.text(SECRET)
    phone.text("receipt", media=[(twilio_settings.add_media("r.jpg", JPEG, "image/jpeg"), "image/jpeg")])
    committed(services.send_agent_message, agent=alice, chat=chat, body=f"Noted: {SECRET}")
    committed(services.end_chat, chat=chat, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED, agent=alice)
    CrmContact.objects.filter(phone_number=CONSUMER).update(name="Dana Scully", email="dana@example.com")
    phone.text("Hello again")  # an active chat now
    SessionlessRequest.objects.create(
        request_id="slr_1", from_number=PORTAL, to_numbers=[CONSUMER], messages=[SECRET], expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    )
    add_do_not_contact(consumer_number=CONSUMER, portal_number="+15550100009", source="stop", text="STOP")
    other = make_phone(OTHER_CONSUMER)
    other.text(OTHER_TEXT)
    return chat


def test_after_erasure_nothing_anywhere_holds_the_consumers_texts(history, media_root):
    assert rows_holding(SECRET) and files_holding(media_root, JPEG)

    done = erasure.erase_consumer(CONSUMER, reason="Asked by email")

    assert rows_holding(SECRET) == []
    assert rows_holding("Dana Scully") == [] and rows_holding("dana@example.com") == []
    assert files_holding(media_root, JPEG) == [] and not Media.objects.exists()
    assert rows_holding(OTHER_TEXT)  # another consumer's texts are untouched
    # The chats stay, counted; the active one ended first; the proof stays.
    chats = Chat.objects.filter(consumer_number=CONSUMER)
    assert chats.count() == 2 and not chats.filter(status__in=["selecting", "queued", "assigned", "dismissed"]).exists()
    assert chats.filter(finish_reason=FinishReason.ERASED).count() == 1
    assert all(chat.content_erased_at for chat in chats)
    assert DoNotContact.objects.filter(consumer_number=CONSUMER).exists()
    assert ConsentEvent.objects.filter(consumer_number=CONSUMER).exists()
    assert done.counts["messages"] >= 3 and done.counts["media"] == 1 and done.counts["crm_contacts"] == 1
    assert done.counts["sessionless_requests"] == 1 and done.counts["webhook_payloads"] >= 1
    assert SessionlessRequest.objects.get().messages == []


def test_erasure_is_idempotent(history):
    erasure.erase_consumer(CONSUMER)

    again = erasure.erase_consumer(CONSUMER)

    assert {k: v for k, v in again.counts.items() if k != "chats"} == {k: 0 for k in again.counts if k != "chats"}
    assert Erasure.objects.count() == 2


def test_reports_still_count_the_erased_chats(history, client, django_capture_on_commit_callbacks):
    api = make_api(client, django_capture_on_commit_callbacks)
    today = dt.date.today().isoformat()
    before = api.get("/apps/api/v1/reports/calls-chats", {"start": today, "end": today}).json()["rows"]

    erasure.erase_consumer(CONSUMER)

    after = api.get("/apps/api/v1/reports/calls-chats", {"start": today, "end": today}).json()["rows"]
    assert [row["chats"] for row in after] == [row["chats"] for row in before]


def test_the_api_erases_and_refuses_a_bad_number(history, client, django_capture_on_commit_callbacks):
    api = make_api(client, django_capture_on_commit_callbacks, name="Privacy desk")

    response = api.post("/apps/api/v1/consumers/erase", {"number": CONSUMER, "reason": "GDPR request 17"})

    assert response.status_code == 200, response.content
    assert response.json()["number"] == CONSUMER and response.json()["counts"]["media"] == 1
    assert Erasure.objects.get().by_name == "API: Privacy desk"
    assert api.post("/apps/api/v1/consumers/erase", {"number": "12"}).json() == {"error": "number is invalid"}
    assert api.post("/apps/api/v1/consumers/erase", {}).json() == {"error": "number is required"}


def test_the_admins_erase_consumer_page(history, admin_client):
    url = reverse("admin:chats_erasure_add")
    unconfirmed = admin_client.post(url, {"number": CONSUMER, "reason": "Phone call"})
    assert unconfirmed.status_code == 200 and "This field is required" in unconfirmed.content.decode()
    assert rows_holding(SECRET)

    done = admin_client.post(url, {"number": CONSUMER, "reason": "Phone call", "confirm": "on"}, follow=True)

    assert done.status_code == 200
    assert rows_holding(SECRET) == []
    assert Erasure.objects.get().by_name == "admin"


def test_retention_erases_chats_ended_long_enough_ago_in_batches(phone, alice, go_online, committed, time_machine, media_root):
    update_chat_settings(retention_days=30)
    go_online(alice)
    chat = queued_in_billing(phone)
    phone.text(SECRET)
    committed(services.end_chat, chat=chat, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED, agent=alice)
    ended = Chat.objects.get(pk=chat.pk).ends_at

    time_machine.move_to(ended + dt.timedelta(days=29), tick=False)
    assert committed(erasure.sweep_retention) == 0 and rows_holding(SECRET)
    time_machine.move_to(ended + dt.timedelta(days=31), tick=False)
    assert committed(erasure.sweep_retention) == 1

    assert rows_holding(SECRET) == []
    assert Chat.objects.get(pk=chat.pk).status == ChatStatus.FINISHED
    assert committed(erasure.sweep_retention) == 0  # done once


def test_a_retention_of_zero_days_is_a_form_error(admin_client):
    from tests.factories import admin_page_data, page_text

    url = reverse("admin:portal_chatsettings_change", args=[1])
    response = admin_client.post(url, admin_page_data(admin_client, url, retention_days="0"))

    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in page_text(response)


def test_retention_reaches_old_session_less_texts_batch_after_batch(db, time_machine, monkeypatch):
    from sms.models import OutboundMessage

    update_chat_settings(retention_days=30)
    monkeypatch.setattr(erasure, "RETENTION_BATCH", 2)
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    time_machine.move_to(start, tick=False)
    for n in range(5):
        OutboundMessage.objects.create(to_number=f"+1555765000{n}", from_number=PORTAL, body=f"{SECRET} {n}", kind="sessionless")
    time_machine.move_to(start + dt.timedelta(days=31), tick=False)

    for _ in range(3):
        erasure.sweep_retention()

    assert rows_holding(SECRET) == []
