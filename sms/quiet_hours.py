"""Quiet hours for proactive messages (SPEC S11 step 3): the recipient's local time, from the number."""
import datetime as dt
import zoneinfo

import phonenumbers
from phonenumbers import timezone as number_timezones

from sms.numbers import parse_e164

FALLBACK_ZONE = "America/New_York"


def recipient_zone(number: str) -> zoneinfo.ZoneInfo:
    """The recipient's time zone; a number spanning several zones takes the westernmost one
    listed, so a window is never opened early for anybody."""
    parsed = parse_e164(number)
    names = list(number_timezones.time_zones_for_number(parsed)) if parsed else []
    names = [name for name in names if name != phonenumbers.timezone.UNKNOWN_TIMEZONE] if names else []
    for name in sorted(names, key=_utc_offset_now):
        try:
            return zoneinfo.ZoneInfo(name)
        except zoneinfo.ZoneInfoNotFoundError:
            continue
    return zoneinfo.ZoneInfo(FALLBACK_ZONE)


def _utc_offset_now(name: str) -> float:
    try:
        offset = dt.datetime.now(zoneinfo.ZoneInfo(name)).utcoffset()
    except zoneinfo.ZoneInfoNotFoundError:
        return 0.0
    return offset.total_seconds() if offset else 0.0


def next_send_time(number: str, now: dt.datetime, start: dt.time, end: dt.time) -> dt.datetime:
    """`now` when the recipient's local time is inside [start, end), else when it next opens."""
    zone = recipient_zone(number)
    local = now.astimezone(zone)
    if _inside(local.time(), start, end):
        return now
    candidate = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = candidate + dt.timedelta(days=1)
        candidate = candidate.replace(tzinfo=zone)
    return candidate.astimezone(dt.timezone.utc)


def _inside(t: dt.time, start: dt.time, end: dt.time) -> bool:
    if start <= end:
        return start <= t < end
    return t >= start or t < end  # a window that crosses midnight
