"""The audit trail (SPEC R4, issue 15 part 4): a change made in the admin is recorded with who,
when and the fields (old → new), secrets never shown, presence not recorded; supervisors and
admins browse and filter it at /monitor/audit/, agents may not."""
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from portal.models import AgentStatus, ChatSettings, EventWebhook
from portal.presence import set_agent_status
from tests.factories import admin_page_data, make_agent, make_queue

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss(db):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def change(client, page, **fields):
    data = admin_page_data(client, page)
    data.update(fields)
    response = client.post(page, data)
    assert response.status_code == 302, response.content.decode()[:2000]


def audit(client, **params) -> str:
    response = client.get("/monitor/audit/", params)
    assert response.status_code == 200
    return re.sub(r"\s+", " ", response.content.decode())


def test_a_settings_change_is_recorded_with_who_and_old_and_new(boss, sam):
    ChatSettings.load()
    change(boss, reverse("admin:portal_chatsettings_change", args=[1]), quiet_hours_end="20:00")

    page = audit(sam)

    assert "boss" in page and "Chat settings" in page
    assert "<code>quiet_hours_end</code>: 21:00:00 → 20:00" in page


def test_a_webhooks_secret_is_never_shown(boss, sam):
    change(boss, reverse("admin:portal_eventwebhook_add"), url="https://hooks.example.com/tern", event_types=["chat.created"], is_active="on")
    hook = EventWebhook.objects.get()
    change(boss, reverse("admin:portal_eventwebhook_change", args=[hook.pk]), url="https://hooks.example.com/v2")

    page = audit(sam)

    assert "https://hooks.example.com/tern → https://hooks.example.com/v2" in page
    assert hook.signing_secret[-8:] not in page and hook.signing_secret[:8] not in page
    assert "(secret, not shown)" in page


def test_queues_and_agents_are_audited_but_presence_is_not(boss, sam):
    agent = make_agent("alice")
    queue = make_queue("Billing")
    change(boss, reverse("admin:queues_queue_change", args=[queue.pk]), name="Billing & invoices")
    set_agent_status(agent=agent, status=AgentStatus.AVAILABLE)

    page = audit(sam)

    assert "Billing → Billing &amp; invoices" in page
    assert "status_changed_at" not in page and "<code>status</code>" not in page


def test_the_trail_filters_by_what_and_who(boss, sam):
    queue = make_queue("Tech")
    change(boss, reverse("admin:queues_queue_change", args=[queue.pk]), position="3")
    ChatSettings.load()
    change(boss, reverse("admin:portal_chatsettings_change", args=[1]), duplicate_window_minutes="15")
    from django.contrib.contenttypes.models import ContentType

    queues_only = audit(sam, model=ContentType.objects.get(app_label="queues", model="queue").pk)
    nobody = audit(sam, actor="nobody")
    searched = audit(sam, q="duplicate_window")

    assert "<code>position</code>" in queues_only and "duplicate_window_minutes" not in queues_only
    assert "No change matches." in nobody
    assert "duplicate_window_minutes" in searched and "<code>position</code>" not in searched


def test_agents_may_not_read_the_trail(client):
    agent = make_agent("bob")
    client.force_login(agent.user)

    assert client.get("/monitor/audit/").status_code == 403
