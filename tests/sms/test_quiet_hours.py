"""SPEC S11 step 3 and R1: quiet hours for proactive messages, in the recipient's local time and
state — the contact's zone, else every zone the number may be in, else the portal's default —
with the state rules at their edges, across a daylight-saving change, and as a property."""
import datetime as dt
import zoneinfo

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from sms.quiet_hours import FALLBACK_ZONE, StateRule, decide, next_send_time, number_state, number_zones

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
LOS_ANGELES = zoneinfo.ZoneInfo("America/Los_Angeles")
LONDON = zoneinfo.ZoneInfo("Europe/London")
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
UTC = dt.timezone.utc

NY_NUMBER = "+12125550123"
LA_NUMBER = "+14155550123"
LONDON_NUMBER = "+442071234567"
TOKYO_NUMBER = "+81312345678"
START, END = dt.time(8, 0), dt.time(21, 0)


def ny(*args):
    return dt.datetime(*args, tzinfo=NEW_YORK)


# --- where the recipient is (SPEC R1) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "zone"),
    [
        (NY_NUMBER, "America/New_York"),
        (LA_NUMBER, "America/Los_Angeles"),
        ("+13125550100", "America/Chicago"),
        ("+18085550123", "Pacific/Honolulu"),
        (LONDON_NUMBER, "Europe/London"),
        (TOKYO_NUMBER, "Asia/Tokyo"),
        ("+61212345678", "Australia/Sydney"),
    ],
)
def test_the_zone_comes_from_the_number(number, zone):
    assert number_zones(number) == [zone]


def test_a_number_spanning_zones_waits_for_every_one_of_them():
    # Alaska's area code covers Anchorage and, an hour further west, Adak.
    assert number_zones("+19075550123") == ["America/Adak", "America/Anchorage"]
    anchorage = zoneinfo.ZoneInfo("America/Anchorage")
    adak = zoneinfo.ZoneInfo("America/Adak")
    morning = dt.datetime(2025, 6, 10, 8, 30, tzinfo=anchorage)  # 07:30 in Adak: not yet
    evening = dt.datetime(2025, 6, 10, 20, 30, tzinfo=adak)  # 21:30 in Anchorage: no more

    assert next_send_time("+19075550123", morning.astimezone(UTC), START, END) == dt.datetime(2025, 6, 10, 8, 0, tzinfo=adak)
    assert next_send_time("+19075550123", evening.astimezone(UTC), START, END) == dt.datetime(2025, 6, 11, 8, 0, tzinfo=adak)


def test_a_non_geographic_number_uses_the_portals_default_zone():
    # +1 500 lists ~40 zones from Pago Pago to Guam: where its owner is, nobody knows. 03:00 in New York.
    now = dt.datetime(2025, 6, 10, 7, 0, tzinfo=UTC)

    decision = decide("+15005550123", now, window=(START, END), default_zone="America/Chicago")

    assert decision.place.source == "default" and decision.place.zones == ("America/Chicago",)
    assert decision.at == dt.datetime(2025, 6, 10, 8, 0, tzinfo=zoneinfo.ZoneInfo("America/Chicago"))
    assert decision.reason.startswith("Quiet hours in America/Chicago (the portal's default zone; 08:00–21:00): goes out at")


@pytest.mark.parametrize("number", ["+15550100001", "not a number", "", "55123"])
def test_a_number_without_a_known_zone_uses_the_default_zone(number):
    assert decide(number, dt.datetime(2025, 6, 10, 16, 0, tzinfo=UTC), window=(START, END)).place.zones == (FALLBACK_ZONE,)


def test_the_contacts_own_zone_wins():
    now = ny(2025, 6, 10, 22, 0).astimezone(UTC)  # 19:00 in Los Angeles

    decision = decide(NY_NUMBER, now, window=(START, END), contact_zone="America/Los_Angeles")

    assert decision.at == now and decision.place.source == "contact"


# --- state rules (SPEC R1) --------------------------------------------------------------------------

RULES = (
    StateRule("FL", frozenset(range(7)), dt.time(8), dt.time(20), "FL Every day 08:00–20:00"),
    StateRule("TX", frozenset(range(6)), dt.time(9), dt.time(21), "TX Monday to Saturday 09:00–21:00"),
    StateRule("TX", frozenset({6}), dt.time(12), dt.time(21), "TX Sunday 12:00–21:00"),
    StateRule("RI", frozenset(range(5)), dt.time(9), dt.time(18), "RI Monday to Friday 09:00–18:00"),
    StateRule("RI", frozenset({5, 6}), dt.time(10), dt.time(17), "RI Saturday and Sunday 10:00–17:00"),
)
CHICAGO = zoneinfo.ZoneInfo("America/Chicago")
TEXAS_NUMBER, FLORIDA_NUMBER, RHODE_ISLAND_NUMBER = "+15125550123", "+13055550123", "+14015550123"


def at(number, local, zone=NEW_YORK, **place):
    return decide(number, local.replace(tzinfo=zone).astimezone(UTC), window=(START, END), rules=RULES, **place)


def test_the_state_comes_from_the_area_code():
    assert (number_state(TEXAS_NUMBER), number_state(NY_NUMBER), number_state(LONDON_NUMBER)) == ("TX", "NY", "")


def test_a_sunday_in_texas_opens_at_noon():
    sunday = dt.datetime(2025, 6, 15, 11, 59)

    held = at(TEXAS_NUMBER, sunday, CHICAGO)

    assert held.at == dt.datetime(2025, 6, 15, 12, 0, tzinfo=CHICAGO)
    assert "TX Sunday 12:00–21:00" in held.reason
    assert at(TEXAS_NUMBER, sunday.replace(hour=12), CHICAGO).is_held(sunday.replace(hour=12, tzinfo=CHICAGO)) is False
    assert at(TEXAS_NUMBER, dt.datetime(2025, 6, 16, 8, 59), CHICAGO).at == dt.datetime(2025, 6, 16, 9, 0, tzinfo=CHICAGO)


def test_florida_closes_at_eight_in_the_evening():
    assert at(FLORIDA_NUMBER, dt.datetime(2025, 6, 10, 19, 59)).at == dt.datetime(2025, 6, 10, 19, 59, tzinfo=NEW_YORK)
    assert at(FLORIDA_NUMBER, dt.datetime(2025, 6, 10, 20, 0)).at == dt.datetime(2025, 6, 11, 8, 0, tzinfo=NEW_YORK)


def test_the_federal_window_at_its_edges():
    assert at(NY_NUMBER, dt.datetime(2025, 6, 10, 20, 59)).at == dt.datetime(2025, 6, 10, 20, 59, tzinfo=NEW_YORK)
    assert at(NY_NUMBER, dt.datetime(2025, 6, 10, 21, 0)).at == dt.datetime(2025, 6, 11, 8, 0, tzinfo=NEW_YORK)


def test_rhode_island_weekends_are_shorter():
    friday_evening = at(RHODE_ISLAND_NUMBER, dt.datetime(2025, 6, 13, 18, 0))

    assert friday_evening.at == dt.datetime(2025, 6, 14, 10, 0, tzinfo=NEW_YORK)  # Saturday 10:00
    assert "RI Saturday and Sunday 10:00–17:00" in friday_evening.reason


def test_the_contacts_state_wins_over_the_area_code():
    assert at(NY_NUMBER, dt.datetime(2025, 6, 10, 20, 30), contact_state="FL").at == dt.datetime(2025, 6, 11, 8, 0, tzinfo=NEW_YORK)


def test_a_state_rule_on_the_daylight_saving_day_opens_at_local_time():
    # Texas springs forward at 02:00 on Sunday 9 March 2025: noon is CDT (UTC-5).
    assert at(TEXAS_NUMBER, dt.datetime(2025, 3, 9, 1, 30), CHICAGO).at == dt.datetime(2025, 3, 9, 17, 0, tzinfo=UTC)


# --- the property: never outside any zone's window ----------------------------------------------------

NUMBERS = [NY_NUMBER, LA_NUMBER, TEXAS_NUMBER, FLORIDA_NUMBER, RHODE_ISLAND_NUMBER, "+19075550123", "+15005550123",
           "+15550100001", LONDON_NUMBER, TOKYO_NUMBER, "+61212345678", "+18085550123"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    number=st.sampled_from(NUMBERS),
    now=st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2032, 12, 31), timezones=st.just(UTC)),
    start_hour=st.integers(min_value=6, max_value=10),
    length=st.integers(min_value=6, max_value=13),
    contact_state=st.sampled_from(["", "TX", "RI", "FL"]),
)
def test_no_text_is_ever_released_outside_the_window_of_any_zone_it_may_be_in(number, now, start_hour, length, contact_state):
    window = (dt.time(start_hour), dt.time(start_hour + length))
    decision = decide(number, now, window=window, rules=RULES, contact_state=contact_state)

    assert now <= decision.at <= now + dt.timedelta(days=3)
    for name in decision.place.zones:
        local = decision.at.astimezone(zoneinfo.ZoneInfo(name))
        rules = [r for r in RULES if r.state == decision.place.state and local.weekday() in r.weekdays]
        start = max([r.start for r in rules], default=window[0])
        end = min([r.end for r in rules], default=window[1])
        assert start <= local.time().replace(tzinfo=None) < end, (name, local)
    if decision.place.source == "number":
        assert set(decision.place.zones) == set(number_zones(number))  # every zone the number may be in


# --- next_send_time ----------------------------------------------------------------------------


@pytest.mark.parametrize("local", [ny(2025, 6, 10, 8, 0), ny(2025, 6, 10, 12, 30), ny(2025, 6, 10, 20, 59, 59)])
def test_inside_the_window_it_is_now(local):
    now = local.astimezone(UTC)

    assert next_send_time(NY_NUMBER, now, START, END) == now


def test_before_the_window_it_opens_the_same_morning():
    now = ny(2025, 6, 10, 6, 30).astimezone(UTC)

    opens = next_send_time(NY_NUMBER, now, START, END)

    assert opens == ny(2025, 6, 10, 8, 0)
    assert opens.tzinfo is not None and opens.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("local", [ny(2025, 6, 10, 21, 0), ny(2025, 6, 10, 23, 0), ny(2025, 6, 10, 23, 59)])
def test_after_the_window_it_opens_the_next_morning(local):
    assert next_send_time(NY_NUMBER, local.astimezone(UTC), START, END) == ny(2025, 6, 11, 8, 0)


def test_just_after_midnight_it_opens_that_morning():
    assert next_send_time(NY_NUMBER, ny(2025, 6, 11, 0, 5).astimezone(UTC), START, END) == ny(2025, 6, 11, 8, 0)


def test_the_same_moment_differs_by_recipient():
    now = dt.datetime(2025, 6, 11, 2, 0, tzinfo=UTC)  # 22:00 in New York, 19:00 in Los Angeles

    assert next_send_time(LA_NUMBER, now, START, END) == now
    assert next_send_time(NY_NUMBER, now, START, END) == ny(2025, 6, 11, 8, 0)
    assert next_send_time(LONDON_NUMBER, now, START, END) == dt.datetime(2025, 6, 11, 8, 0, tzinfo=LONDON)
    assert next_send_time(TOKYO_NUMBER, now, START, END) == now  # 11:00 in Tokyo


def test_a_window_crossing_midnight():
    start, end = dt.time(22, 0), dt.time(6, 0)  # a night-shift window

    assert next_send_time(NY_NUMBER, ny(2025, 6, 10, 23, 0).astimezone(UTC), start, end) == ny(2025, 6, 10, 23, 0)
    assert next_send_time(NY_NUMBER, ny(2025, 6, 11, 3, 0).astimezone(UTC), start, end) == ny(2025, 6, 11, 3, 0)
    assert next_send_time(NY_NUMBER, ny(2025, 6, 11, 6, 0).astimezone(UTC), start, end) == ny(2025, 6, 11, 22, 0)
    assert next_send_time(NY_NUMBER, ny(2025, 6, 11, 12, 0).astimezone(UTC), start, end) == ny(2025, 6, 11, 22, 0)


def test_the_window_opens_at_local_time_across_a_daylight_saving_change():
    # New York springs forward at 02:00 on 9 March 2025: 08:00 that morning is EDT (UTC-4).
    evening_before = ny(2025, 3, 8, 22, 0).astimezone(UTC)

    opens = next_send_time(NY_NUMBER, evening_before, START, END)

    assert opens == dt.datetime(2025, 3, 9, 12, 0, tzinfo=UTC)
    assert opens.astimezone(NEW_YORK).hour == 8


def test_a_minute_precise_window():
    start, end = dt.time(9, 30), dt.time(17, 45)

    assert next_send_time(NY_NUMBER, ny(2025, 6, 10, 9, 29).astimezone(UTC), start, end) == ny(2025, 6, 10, 9, 30)
    assert next_send_time(NY_NUMBER, ny(2025, 6, 10, 17, 45).astimezone(UTC), start, end) == ny(2025, 6, 11, 9, 30)
