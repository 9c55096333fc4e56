"""Agent presence kept in the database (SPEC S5): adapter connections counted across processes,
the status switch, and the sweep that takes an agent offline after a grace period and forgets
connections whose server stopped sending heartbeats."""
import datetime as dt

import pytest
import time_machine

from portal.models import AgentProfile, AgentStatus
from portal.presence import (
    HEARTBEAT_STALE_SECONDS,
    OFFLINE_GRACE_SECONDS,
    agent_connected,
    agent_disconnected,
    set_agent_status,
    sweep_presence,
    touch_agent,
)
from tests.factories import make_agent

pytestmark = pytest.mark.django_db

START = dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def later(clock, seconds: float) -> None:
    clock.move_to(START + dt.timedelta(seconds=seconds))


def fresh(agent: AgentProfile) -> AgentProfile:
    return AgentProfile.objects.get(pk=agent.pk)


@pytest.fixture
def agent(clock):
    return make_agent("alice", display_name="Alice")


# --- connections --------------------------------------------------------------------------------------


def test_opening_the_adapter_counts_a_connection_and_makes_an_offline_agent_available(agent, clock):
    assert agent.status == AgentStatus.OFFLINE and agent.connection_count == 0
    later(clock, 5)
    assert agent_connected(agent=agent) is True
    agent = fresh(agent)
    assert agent.connection_count == 1
    assert agent.status == AgentStatus.AVAILABLE
    assert agent.status_changed_at == START + dt.timedelta(seconds=5)
    assert agent.last_seen_at == START + dt.timedelta(seconds=5)

    # A second tab: one more connection, no status change to report.
    assert agent_connected(agent=agent) is False
    assert fresh(agent).connection_count == 2


def test_an_away_agent_stays_away_when_opening_the_adapter(agent):
    set_agent_status(agent=agent, status=AgentStatus.AWAY)
    assert agent_connected(agent=agent) is False
    agent = fresh(agent)
    assert agent.status == AgentStatus.AWAY and agent.connection_count == 1


def test_closing_a_connection_counts_down_never_below_zero(agent, clock):
    agent_connected(agent=agent)
    agent_connected(agent=agent)
    later(clock, 10)
    agent_disconnected(agent=agent)
    assert fresh(agent).connection_count == 1
    agent_disconnected(agent=agent)
    agent_disconnected(agent=agent)  # a connection the sweep already forgot
    agent = fresh(agent)
    assert agent.connection_count == 0
    assert agent.last_seen_at == START + dt.timedelta(seconds=10)
    # Closing the last adapter does not take the agent offline at once (a reload reconnects).
    assert agent.status == AgentStatus.AVAILABLE


# --- status -------------------------------------------------------------------------------------------


def test_set_agent_status_reports_becoming_available(agent, clock):
    assert set_agent_status(agent=agent, status=AgentStatus.AVAILABLE) is True
    assert set_agent_status(agent=agent, status=AgentStatus.AVAILABLE) is False  # already
    later(clock, 60)
    assert set_agent_status(agent=agent, status=AgentStatus.AWAY) is False
    agent = fresh(agent)
    assert agent.status == AgentStatus.AWAY
    assert agent.status_changed_at == START + dt.timedelta(seconds=60)
    later(clock, 90)
    assert set_agent_status(agent=agent, status=AgentStatus.AVAILABLE) is True
    assert fresh(agent).status_changed_at == START + dt.timedelta(seconds=90)


def test_setting_the_same_status_keeps_its_time(agent, clock):
    set_agent_status(agent=agent, status=AgentStatus.AWAY)
    later(clock, 60)
    set_agent_status(agent=agent, status=AgentStatus.AWAY)
    assert fresh(agent).status_changed_at == START


def test_an_unknown_status_is_refused(agent):
    with pytest.raises(ValueError, match="busy"):
        set_agent_status(agent=agent, status="busy")
    assert fresh(agent).status == AgentStatus.OFFLINE


# --- the sweep -------------------------------------------------------------------------------------------


def test_an_agent_without_a_connection_goes_offline_after_the_grace_period(agent, clock):
    agent_connected(agent=agent)
    agent_disconnected(agent=agent)

    later(clock, OFFLINE_GRACE_SECONDS - 1)
    assert sweep_presence() == 0
    assert fresh(agent).status == AgentStatus.AVAILABLE

    later(clock, OFFLINE_GRACE_SECONDS + 1)
    assert sweep_presence() == 1
    agent = fresh(agent)
    assert agent.status == AgentStatus.OFFLINE
    assert agent.status_changed_at == START + dt.timedelta(seconds=OFFLINE_GRACE_SECONDS + 1)
    assert sweep_presence() == 0  # already offline: nothing more to change


def test_an_away_agent_who_closed_the_adapter_goes_offline_too(agent, clock):
    agent_connected(agent=agent)
    set_agent_status(agent=agent, status=AgentStatus.AWAY)
    agent_disconnected(agent=agent)
    later(clock, OFFLINE_GRACE_SECONDS + 1)
    assert sweep_presence() == 1
    assert fresh(agent).status == AgentStatus.OFFLINE


def test_reconnecting_within_the_grace_period_keeps_the_agent_available(agent, clock):
    agent_connected(agent=agent)
    agent_disconnected(agent=agent)
    later(clock, 10)
    agent_connected(agent=agent)  # the page reloaded
    later(clock, 10 + OFFLINE_GRACE_SECONDS + 1)
    touch_agent(agent_id=agent.pk)
    assert sweep_presence() == 0
    agent = fresh(agent)
    assert agent.status == AgentStatus.AVAILABLE and agent.connection_count == 1


def test_a_connection_without_heartbeat_for_90_seconds_is_forgotten(agent, clock):
    """Its server process died without closing it: nobody will ever count it down."""
    agent_connected(agent=agent)
    later(clock, HEARTBEAT_STALE_SECONDS - 1)
    assert sweep_presence() == 0
    assert fresh(agent).connection_count == 1

    later(clock, HEARTBEAT_STALE_SECONDS + 1)
    assert sweep_presence() == 1  # one agent changed: forgotten and, long unseen, offline
    agent = fresh(agent)
    assert agent.connection_count == 0
    assert agent.status == AgentStatus.OFFLINE


def test_heartbeats_keep_a_connection_alive(agent, clock):
    agent_connected(agent=agent)
    for second in (20, 40, 60, 80, 100, 120):
        later(clock, second)
        touch_agent(agent_id=agent.pk)
        assert sweep_presence() == 0
    agent = fresh(agent)
    assert agent.last_seen_at == START + dt.timedelta(seconds=120)
    assert agent.connection_count == 1 and agent.status == AgentStatus.AVAILABLE

    # The heartbeats stop: 90 s after the last one the connection is forgotten.
    later(clock, 120 + HEARTBEAT_STALE_SECONDS - 1)
    assert sweep_presence() == 0
    later(clock, 120 + HEARTBEAT_STALE_SECONDS + 1)
    assert sweep_presence() == 1
    assert fresh(agent).connection_count == 0


def test_the_sweep_leaves_other_agents_alone(agent, clock):
    online = make_agent("bob", display_name="Bob")
    offline = make_agent("carol", display_name="Carol")
    agent_connected(agent=agent)
    agent_connected(agent=online)
    agent_disconnected(agent=agent)
    later(clock, 60)
    touch_agent(agent_id=online.pk)
    assert sweep_presence() == 1
    assert fresh(agent).status == AgentStatus.OFFLINE
    assert fresh(online).status == AgentStatus.AVAILABLE and fresh(online).connection_count == 1
    assert fresh(offline).status == AgentStatus.OFFLINE
    assert fresh(offline).status_changed_at == START  # untouched


def test_an_agent_made_available_without_ever_opening_the_adapter_goes_offline(agent, clock):
    """E.g. set available in the admin: no connection ever counted it, so no close will."""
    set_agent_status(agent=agent, status=AgentStatus.AVAILABLE)
    assert fresh(agent).last_seen_at is None
    later(clock, OFFLINE_GRACE_SECONDS - 1)
    assert sweep_presence() == 0
    later(clock, OFFLINE_GRACE_SECONDS + 1)
    assert sweep_presence() == 1
    assert fresh(agent).status == AgentStatus.OFFLINE


def test_the_sweep_takes_the_time_it_is_given(agent, clock):
    agent_connected(agent=agent)
    agent_disconnected(agent=agent)
    assert sweep_presence(now=START + dt.timedelta(seconds=OFFLINE_GRACE_SECONDS - 1)) == 0
    assert sweep_presence(now=START + dt.timedelta(seconds=OFFLINE_GRACE_SECONDS + 1)) == 1
    assert fresh(agent).status == AgentStatus.OFFLINE


# --- the status history (SPEC M1's "for how long", M4's occupancy) ---------------------------------


def history(agent: AgentProfile) -> list[tuple[str, dt.datetime]]:
    return list(agent.status_changes.values_list("status", "at"))


def test_each_status_change_is_kept_with_its_time_and_a_repeat_is_not(agent, clock):
    later(clock, 5)
    agent_connected(agent=agent)
    later(clock, 65)
    set_agent_status(agent=agent, status=AgentStatus.AWAY)
    set_agent_status(agent=agent, status=AgentStatus.AWAY)
    assert history(agent) == [
        (AgentStatus.AVAILABLE, START + dt.timedelta(seconds=5)),
        (AgentStatus.AWAY, START + dt.timedelta(seconds=65)),
    ]


def test_the_sweep_keeps_the_offline_change_in_the_history(agent, clock):
    agent_connected(agent=agent)
    agent_disconnected(agent=agent)
    later(clock, OFFLINE_GRACE_SECONDS + 1)
    sweep_presence()
    assert history(agent)[-1] == (AgentStatus.OFFLINE, START + dt.timedelta(seconds=OFFLINE_GRACE_SECONDS + 1))
