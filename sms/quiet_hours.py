"""Quiet hours for proactive messages (SPEC S11 step 3, R1): when a text may go out, decided in
the recipient's own zone and state.

Where the recipient is:
1. their CRM contact's time zone (and state), when set;
2. else the zones phonenumbers lists for the number (and the state its geocoder names): a text
   goes out only when the time is inside the window in *every* one of those zones;
3. else — no zone known (non-geographic codes: a +1 500 number lists zones from Pago Pago to
   Guam), or zones with no common window — the portal's default zone.

The window on a given local day: the state's rule for that weekday (`QuietHoursRule`, seeded with
SPEC R1's states; several rules for a day: the narrowest), else the chat settings' window (the
federal 08:00–21:00). The answer says when and why (`Decision.reason`)."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import phonenumbers
from phonenumbers import geocoder
from phonenumbers import timezone as number_timezones

from portal.models import CrmContact
from portal.regions import state_code
from portal.singletons import cached
from sms.models import RULE_WEEKDAYS, QuietHoursRule
from sms.numbers import parse_e164

FALLBACK_ZONE = "America/New_York"
DAYS_AHEAD = 8  # a window opens within a week whatever the rules; one more day for zones ahead of UTC


class StateRule(NamedTuple):
    state: str
    weekdays: frozenset[int]
    start: dt.time
    end: dt.time
    label: str


@dataclass(frozen=True)
class Place:
    """Where the recipient is, for quiet hours: the zones that must all be open, the state whose
    rules apply, and how it was found."""

    zones: tuple[str, ...]
    state: str
    source: str  # "contact" | "number" | "default"


@dataclass(frozen=True)
class Decision:
    at: dt.datetime  # now when the window is open
    place: Place
    rules: tuple[str, ...]  # the windows that applied, e.g. "TX Sunday 12:00–21:00"

    def is_held(self, now: dt.datetime) -> bool:
        return self.at > now

    @property
    def reason(self) -> str:
        where = " and ".join(self.place.zones)
        how = {"contact": "the contact's zone", "number": "the number's area code", "default": "the portal's default zone"}
        return f"Quiet hours in {where} ({how[self.place.source]}; {', '.join(self.rules)}): goes out at {self.at.isoformat()}."


def number_zones(number: str) -> list[str]:
    """The zones phonenumbers lists for the number, that this Python knows. A non-geographic
    number listing several (a +1 500 or +1 800 number: the whole North American plan) says
    nothing about where its owner is: no zone."""
    parsed = parse_e164(number)
    names = number_timezones.time_zones_for_number(parsed) if parsed else ()
    if len(names) > 1 and not phonenumbers.is_number_geographical(parsed):
        return []
    known = []
    for name in names:
        if name == number_timezones.UNKNOWN_TIMEZONE:
            continue
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
        known.append(name)
    return known


def number_state(number: str) -> str:
    """The US state of the number's area code ('' outside the US or when the geocoder cannot say)."""
    parsed = parse_e164(number)
    if parsed is None or phonenumbers.region_code_for_number(parsed) != "US":
        return ""
    return state_code(geocoder.description_for_number(parsed, "en"))


def decide(
    number: str,
    now: dt.datetime,
    *,
    window: tuple[dt.time, dt.time],
    default_zone: str = FALLBACK_ZONE,
    contact_zone: str = "",
    contact_state: str = "",
    rules: Iterable[StateRule] = (),
) -> Decision:
    """When a proactive text to `number` may go out: `now` if every zone of the recipient is
    inside its window, else the first moment all are."""
    rules = tuple(rules)
    state = contact_state or number_state(number)
    places = []
    if contact_zone:
        places.append(Place((contact_zone,), state, "contact"))
    else:
        zones = number_zones(number)
        if zones:
            places.append(Place(tuple(zones), state, "number"))
    places.append(Place((default_zone or FALLBACK_ZONE,), state, "default"))
    for place in places:
        found = _first_common_moment(place, now, window, rules)
        if found is not None:
            at, labels = found
            return Decision(at, place, labels)
    raise AssertionError("a single zone always has a window within a week")  # pragma: no cover


def next_send_time(number: str, now: dt.datetime, start: dt.time, end: dt.time, **place) -> dt.datetime:
    """`decide(...)`'s moment alone."""
    return decide(number, now, window=(start, end), **place).at


def _first_common_moment(place: Place, now: dt.datetime, window, rules) -> tuple[dt.datetime, tuple[str, ...]] | None:
    """The first moment ≥ now inside the window of every zone of `place`, with the windows it
    falls in; None when the zones share no moment in the days ahead."""
    per_zone = [list(_open_intervals(zoneinfo.ZoneInfo(name), place.state, now, window, rules)) for name in place.zones]
    common = [(start, end) for start, end, _ in per_zone[0]]
    for intervals in per_zone[1:]:
        common = _intersect(common, [(start, end) for start, end, _ in intervals])
    at = next((max(start, now) for start, end in common if end > now), None)
    if at is None:
        return None
    labels: list[str] = []
    for intervals in per_zone:
        for start, end, label in intervals:
            if start <= at < end and label not in labels:
                labels.append(label)
    return at, tuple(labels)


def _open_intervals(zone: zoneinfo.ZoneInfo, state: str, now: dt.datetime, window, rules):
    """The zone's open windows, in UTC, from the local day before `now` to a week after."""
    today = now.astimezone(zone).date()
    for offset in range(-1, DAYS_AHEAD):
        day = today + dt.timedelta(days=offset)
        start, end, label = _window_on(day, state, window, rules)
        opens = dt.datetime.combine(day, start, tzinfo=zone)
        closes = dt.datetime.combine(day if end > start else day + dt.timedelta(days=1), end, tzinfo=zone)
        yield opens.astimezone(dt.timezone.utc), closes.astimezone(dt.timezone.utc), label


def _window_on(day: dt.date, state: str, window, rules) -> tuple[dt.time, dt.time, str]:
    """The state's rules for that weekday (the narrowest of them), else the portal's window."""
    matching = [rule for rule in rules if rule.state == state and day.weekday() in rule.weekdays]
    if not matching:
        start, end = window
        return start, end, f"{start:%H:%M}–{end:%H:%M}"
    start = max(rule.start for rule in matching)
    end = min(rule.end for rule in matching)
    return start, end, "; ".join(rule.label for rule in matching)


def _intersect(a, b):
    """The intersection of two sorted lists of [start, end) intervals."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def quiet_hours_for(number: str, now: dt.datetime, chat_settings) -> Decision:
    """`decide` with what the portal knows: the chat settings' window and default zone, the
    number's CRM contact's zone and state, the state rules — each read once per
    `cached_singletons()` block (a request, a batch)."""
    def contact_place() -> tuple[str, str]:
        contact = (
            CrmContact.objects.filter(phone_number=number)
            .exclude(time_zone="", state="")
            .order_by("-updated_at")
            .values_list("time_zone", "state")
            .first()
        )
        return contact or ("", "")

    def state_rules() -> tuple[StateRule, ...]:
        return tuple(
            StateRule(rule.state, RULE_WEEKDAYS[rule.days], rule.start, rule.end, str(rule))
            for rule in QuietHoursRule.objects.all()
        )

    zone, state = cached(("quiet_hours_contact", number), contact_place)
    return decide(
        number,
        now,
        window=(chat_settings.quiet_hours_start, chat_settings.quiet_hours_end),
        default_zone=chat_settings.default_time_zone,
        contact_zone=zone,
        contact_state=state,
        rules=cached(("quiet_hours_rules",), state_rules),
    )
