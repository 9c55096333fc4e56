"""Is a queue open? Its weekly hours and closed dates, in its own time zone (DESIGN rule 9)."""
import datetime as dt
import zoneinfo
from typing import NamedTuple

from queues.models import Queue


def is_open(queue: Queue, at: dt.datetime) -> bool:
    if queue.always_open:
        return True
    zone = zoneinfo.ZoneInfo(queue.time_zone or "UTC")
    local = at.astimezone(zone)
    if queue.closed_dates.filter(date=local.date()).exists():
        return False
    now_t = local.time()
    for span in queue.opening_hours.filter(weekday=local.weekday()):
        closes_midnight = span.closes_at == dt.time(0, 0)
        if span.opens_at <= now_t and (closes_midnight or now_t < span.closes_at):
            return True
    return False


# Hours further away than this are not looked at: a queue closed for longer simply stays in its
# after-hours period until a sweep past the horizon looks again.
HOURS_HORIZON = dt.timedelta(days=8)


class HoursPeriod(NamedTuple):
    """Whether the queue is open at a moment, since when (the last opening or closing, None when
    not within the horizon) and until when (the next change, None when none is in sight)."""

    open: bool
    since: dt.datetime | None
    until: dt.datetime | None


def open_spans(queue: Queue, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The queue's open intervals [opens, closes) that overlap [start, end], in UTC, adjacent
    spans merged (Monday 09:00–00:00 and Tuesday 00:00–17:00 are one span)."""
    zone = zoneinfo.ZoneInfo(queue.time_zone or "UTC")
    first = start.astimezone(zone).date() - dt.timedelta(days=1)
    last = end.astimezone(zone).date() + dt.timedelta(days=1)
    weekly = list(queue.opening_hours.all())
    closed = set(queue.closed_dates.filter(date__range=(first, last)).values_list("date", flat=True))
    spans = []
    day = first
    while day <= last:
        if day not in closed:
            for span in weekly:
                if span.weekday != day.weekday():
                    continue
                opens = dt.datetime.combine(day, span.opens_at, tzinfo=zone)
                if span.closes_at == dt.time(0, 0):
                    closes = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0), tzinfo=zone)
                else:
                    closes = dt.datetime.combine(day, span.closes_at, tzinfo=zone)
                spans.append((opens.astimezone(dt.UTC), closes.astimezone(dt.UTC)))
        day += dt.timedelta(days=1)
    merged: list[list[dt.datetime]] = []
    for opens, closes in sorted(spans):
        if merged and opens <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], closes)
        else:
            merged.append([opens, closes])
    return [(opens, closes) for opens, closes in merged if closes > start and opens <= end]


def hours_period(queue: Queue, at: dt.datetime) -> HoursPeriod:
    """The open or closed period of the queue that `at` falls in (SPEC C3: the unanswered
    expiration follows the hours as they open and close)."""
    if queue.always_open:
        return HoursPeriod(True, None, None)
    spans = open_spans(queue, at - HOURS_HORIZON, at + HOURS_HORIZON)
    for opens, closes in spans:
        if opens <= at < closes:
            return HoursPeriod(True, opens, closes)
    since = max((closes for _, closes in spans if closes <= at), default=None)
    until = min((opens for opens, _ in spans if opens > at), default=None)
    return HoursPeriod(False, since, until)
