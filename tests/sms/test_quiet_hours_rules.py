"""Quiet hours as the portal applies them (SPEC R1): the seeded state rules, the admin's checks,
a proactive text held with when and why, and the CRM contact's zone."""
import datetime as dt
import zoneinfo

import pytest
from django.urls import reverse

from portal.models import CrmContact
from portal.singletons import cached_singletons
from sms.models import MessageStatus, QuietHoursRule
from sms.pipeline import queue_sms
from tests.factories import admin_page_data, make_number, page_text

pytestmark = pytest.mark.django_db

CHICAGO = zoneinfo.ZoneInfo("America/Chicago")
TEXAS_NUMBER = "+15125550123"
FROM = "+15550100002"


@pytest.fixture
def number(db):
    return make_number(FROM, messages_per_second=100)


def test_the_spec_states_are_seeded():
    rules = {(r.state, r.days, f"{r.start:%H:%M}–{r.end:%H:%M}") for r in QuietHoursRule.objects.all()}

    assert rules == {
        ("FL", "all", "08:00–20:00"), ("OK", "all", "08:00–20:00"), ("MD", "all", "08:00–20:00"),
        ("MS", "all", "08:00–20:00"), ("NJ", "all", "08:00–20:00"), ("CT", "all", "09:00–20:00"),
        ("RI", "mon_fri", "09:00–18:00"), ("RI", "sat_sun", "10:00–17:00"),
        ("TX", "mon_sat", "09:00–21:00"), ("TX", "sun", "12:00–21:00"),
    }  # fmt: skip


def test_a_rule_that_ends_before_it_starts_is_a_form_error(admin_client):
    url = reverse("admin:sms_quiethoursrule_add")
    response = admin_client.post(url, admin_page_data(admin_client, url, state="CA", days="all", start="20:00", end="09:00"))

    assert response.status_code == 200
    assert "The window must end after it starts" in page_text(response)
    assert not QuietHoursRule.objects.filter(state="CA").exists()


def test_an_unknown_zone_is_a_form_error(admin_client):
    url = reverse("admin:portal_chatsettings_change", args=[1])
    response = admin_client.post(url, admin_page_data(admin_client, url, default_time_zone="Mars/Olympus_Mons"))

    assert response.status_code == 200
    assert "Select a valid choice" in page_text(response)


def test_a_texas_sunday_morning_text_is_held_until_noon_and_says_why(number, time_machine):
    time_machine.move_to(dt.datetime(2030, 3, 3, 11, 0, tzinfo=CHICAGO), tick=False)  # a Sunday

    with cached_singletons():
        message = queue_sms(to=TEXAS_NUMBER, from_number=FROM, body="Your order shipped.", kind="api", proactive=True)

    message.refresh_from_db()
    assert message.status == MessageStatus.HELD
    assert message.next_attempt_at == dt.datetime(2030, 3, 3, 12, 0, tzinfo=CHICAGO)
    assert message.error_message == (
        "Quiet hours in America/Chicago (the number's area code; TX Sunday 12:00–21:00): goes out at 2030-03-03T18:00:00+00:00."
    )
    assert message.status_events.get(status=MessageStatus.HELD).detail == message.error_message


def test_the_contacts_zone_decides_before_the_area_code(number, time_machine):
    time_machine.move_to(dt.datetime(2030, 3, 4, 22, 0, tzinfo=zoneinfo.ZoneInfo("America/New_York")), tick=False)
    CrmContact.objects.create(name="Lee", phone_number="+12125550123", time_zone="America/Los_Angeles")

    message = queue_sms(to="+12125550123", from_number=FROM, body="Hello Lee", kind="api", proactive=True)

    assert message.status == MessageStatus.QUEUED  # 19:00 in Los Angeles, where Lee is
