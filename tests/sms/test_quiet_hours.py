"""SPEC S11 step 3: quiet hours for proactive messages, in the recipient's local time, which
comes from the number (phonenumbers' time-zone data)."""
import datetime as dt
import zoneinfo

import pytest

from sms.quiet_hours import FALLBACK_ZONE, next_send_time, recipient_zone

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


# --- the recipient's zone ----------------------------------------------------------------------


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
    assert recipient_zone(number).key == zone


def test_a_number_spanning_several_zones_takes_the_westernmost():
    # Alaska's area code covers Anchorage and the Aleutians (an hour further west).
    assert recipient_zone("+19075550123").key == "America/Adak"


@pytest.mark.parametrize("number", ["+15550100001", "not a number", "", "55123"])
def test_a_number_without_a_known_zone_falls_back(number):
    assert recipient_zone(number).key == FALLBACK_ZONE


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
