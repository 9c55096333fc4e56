"""A report's filters (SPEC M4): a date range in the portal's time zone, a queue, a team, an
agent. Read from a page's or the API's query string; what cannot be used is refused with a
sentence the page shows and the API answers as {"error": …} with 400."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from portal.models import AgentProfile, Team
from queues.models import Queue

MAX_DAYS = 366
DEFAULT_DAYS = 7


class ReportError(ValueError):
    """A filter that cannot be used; its message is for people."""


@dataclass(frozen=True)
class ReportFilters:
    start: dt.date
    end: dt.date  # inclusive
    queue_id: int | None = None
    team_id: int | None = None
    agent_id: int | None = None

    @property
    def since(self) -> dt.datetime:
        """Midnight at the start, in the portal's time zone."""
        return timezone.make_aware(dt.datetime.combine(self.start, dt.time.min))

    @property
    def until(self) -> dt.datetime:
        """Midnight after the end (exclusive)."""
        return timezone.make_aware(dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time.min))

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def query(self) -> dict[str, str]:
        """As a query string's values (links from a chart's bar, the CSV's link, the pager)."""
        values = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        for key in ("queue", "team", "agent"):
            value = getattr(self, f"{key}_id")
            if value:
                values[key] = str(value)
        return values

    def chats(self, chats, *, time_field: str = "created_at", agent_field: str = "agent", queue_field: str = "queue"):
        """`chats` (or rows related to chats: participants, transcript entries, calls, through
        `agent_field` and `queue_field`) narrowed to the range and the filters."""
        chats = chats.filter(**{f"{time_field}__gte": self.since, f"{time_field}__lt": self.until})
        if self.queue_id:
            chats = chats.filter(**{f"{queue_field}_id": self.queue_id})
        if self.agent_id:
            chats = chats.filter(**{f"{agent_field}_id": self.agent_id})
        if self.team_id:
            chats = chats.filter(**{f"{agent_field}__teams": self.team_id})
        return chats

    def agents(self):
        agents = AgentProfile.objects.all()
        if self.agent_id:
            agents = agents.filter(pk=self.agent_id)
        if self.team_id:
            agents = agents.filter(teams=self.team_id)
        if self.queue_id:
            agents = agents.filter(Q(queues=self.queue_id) | Q(teams__queues=self.queue_id)).distinct()
        return agents


EARLIEST, LATEST = dt.date(1970, 1, 1), dt.date(9998, 12, 31)  # midnights every time zone can hold


def _date(value: str, name: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ReportError(f"{name} must be a date written YYYY-MM-DD, not {value!r}.") from None
    if not EARLIEST <= day <= LATEST:
        raise ReportError(f"{name} must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}, not {value!r}.")
    return day


def _id(value: str, name: str, model) -> int | None:
    if value in (None, ""):
        return None
    try:
        pk = int(value)
    except (TypeError, ValueError):
        raise ReportError(f"{name} must be the id of a {name}, not {value!r}.") from None
    if not model.objects.filter(pk=pk).exists():
        raise ReportError(f"There is no {name} with id {pk}.")
    return pk


def parse_filters(params, *, today: dt.date | None = None) -> ReportFilters:
    """The filters of a query string; by default the last seven days up to today."""
    today = today or timezone.localdate()
    end = _date(params["end"], "end") if params.get("end") else today
    start = _date(params["start"], "start") if params.get("start") else end - dt.timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise ReportError(f"The range is reversed: start {start.isoformat()} is after end {end.isoformat()}.")
    if (end - start).days + 1 > MAX_DAYS:
        raise ReportError(f"The range is {(end - start).days + 1} days; a report covers at most {MAX_DAYS}.")
    return ReportFilters(
        start=start,
        end=end,
        queue_id=_id(params.get("queue"), "queue", Queue),
        team_id=_id(params.get("team"), "team", Team),
        agent_id=_id(params.get("agent"), "agent", AgentProfile),
    )
