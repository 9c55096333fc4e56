"""queues.routing (who may take a queue's chat, longest idle first, SPEC S5) and queues.hours (is
a queue open, and which open or closed period a moment falls in, in the queue's own zone, SPEC C3
and C5), each through its public functions."""
import datetime as dt
import zoneinfo

import pytest
from django.utils import timezone

from portal.models import AgentStatus
from queues.hours import hours_period, is_open, open_spans
from queues.models import ClosedDate
from queues.routing import candidate_agents, eligible_agents, is_eligible
from tests.factories import make_agent, make_available_agent, make_opening_hours, make_queue, make_team

pytestmark = pytest.mark.django_db

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def at(year, month, day, hour, minute=0, zone=NEW_YORK) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone)


# --- routing ------------------------------------------------------------------------------------


def test_agents_of_the_queue_directly_or_through_a_team_are_candidates_once(db):
    billing = make_queue("Billing")
    direct = make_available_agent("direct", queues=[billing])
    teamed = make_available_agent("teamed")
    make_team("Tier 1", agents=[teamed, direct]).queues.add(billing)  # direct is in both ways
    make_available_agent("elsewhere", queues=[make_queue("Tech")])

    assert sorted(a.user.username for a in candidate_agents(billing)) == ["direct", "teamed"]


@pytest.mark.parametrize(
    "status, connections, eligible",
    [
        (AgentStatus.AVAILABLE, 1, True),
        (AgentStatus.AVAILABLE, 0, False),  # available, but no adapter open (within the offline grace)
        (AgentStatus.AWAY, 2, False),
        (AgentStatus.OFFLINE, 0, False),
    ],
)
def test_only_available_agents_with_the_adapter_open_are_eligible(status, connections, eligible):
    billing = make_queue("Billing")
    agent = make_agent("alice", status=status, connection_count=connections)
    agent.queues.add(billing)

    assert is_eligible(agent) is eligible
    assert (agent in candidate_agents(billing)) is eligible
    assert (agent in eligible_agents()) is eligible


def test_the_longest_idle_comes_first_and_excluded_agents_not_at_all():
    billing = make_queue("Billing")
    now = timezone.now()
    recent = make_available_agent("recent", queues=[billing], last_assignment_at=now)
    earlier = make_available_agent("earlier", queues=[billing], last_assignment_at=now - dt.timedelta(hours=1))
    never = make_available_agent("never", queues=[billing])

    assert list(candidate_agents(billing)) == [never, earlier, recent]
    assert list(candidate_agents(billing, exclude_ids=[never.pk])) == [earlier, recent]


# --- hours --------------------------------------------------------------------------------------


@pytest.fixture
def office():
    """Open Monday 09:00–17:00 and Tuesday 09:00–00:00 (midnight), New York time."""
    queue = make_queue("Office", always_open=False, time_zone="America/New_York")
    make_opening_hours(queue, 0, dt.time(9), dt.time(17))
    make_opening_hours(queue, 1, dt.time(9), dt.time(0))
    return queue


def test_a_queue_open_around_the_clock_is_always_open():
    queue = make_queue("Always")
    assert is_open(queue, at(2030, 3, 3, 3)) is True
    assert hours_period(queue, at(2030, 3, 3, 3)) == (True, None, None)


def test_open_from_the_opening_minute_to_before_the_closing_one_in_the_queues_zone(office):
    monday = dt.date(2030, 3, 4)
    assert monday.weekday() == 0
    assert not is_open(office, at(2030, 3, 4, 8, 59))
    assert is_open(office, at(2030, 3, 4, 9, 0))
    assert is_open(office, at(2030, 3, 4, 16, 59))
    assert not is_open(office, at(2030, 3, 4, 17, 0))
    # The same moment in UTC: 14:00 UTC is 09:00 in New York (EST in early March).
    assert is_open(office, dt.datetime(2030, 3, 4, 14, 0, tzinfo=dt.UTC))
    assert is_open(office, at(2030, 3, 5, 23, 59))  # Tuesday closes at midnight


def test_a_closed_date_closes_the_whole_day(office):
    ClosedDate.objects.create(queue=office, date=dt.date(2030, 3, 4), note="Holiday")
    assert not is_open(office, at(2030, 3, 4, 12))
    assert is_open(office, at(2030, 3, 5, 12))


def test_open_spans_are_in_utc_and_a_span_ending_at_midnight_joins_the_next_day(office):
    make_opening_hours(office, 2, dt.time(0), dt.time(8))  # Wednesday 00:00–08:00 follows Tuesday's midnight
    spans = open_spans(office, at(2030, 3, 4, 0), at(2030, 3, 6, 23))
    assert spans == [
        (at(2030, 3, 4, 9).astimezone(dt.UTC), at(2030, 3, 4, 17).astimezone(dt.UTC)),
        (at(2030, 3, 5, 9).astimezone(dt.UTC), at(2030, 3, 6, 8).astimezone(dt.UTC)),
    ]


def test_the_period_says_since_when_and_until_when(office):
    assert hours_period(office, at(2030, 3, 4, 12)) == (
        True, at(2030, 3, 4, 9).astimezone(dt.UTC), at(2030, 3, 4, 17).astimezone(dt.UTC)
    )
    assert hours_period(office, at(2030, 3, 4, 20)) == (
        False, at(2030, 3, 4, 17).astimezone(dt.UTC), at(2030, 3, 5, 9).astimezone(dt.UTC)
    )


def test_hours_follow_the_zones_daylight_saving_change(office):
    """10 March 2030 is the spring change in New York: Monday 09:00 is then 13:00 UTC, not 14:00."""
    assert is_open(office, dt.datetime(2030, 3, 11, 13, 0, tzinfo=dt.UTC))
    assert not is_open(office, dt.datetime(2030, 3, 4, 13, 0, tzinfo=dt.UTC))
