"""Occupancy from hand-made status histories and chats (SPEC M): overlapping chats count once,
time with chats while away still counts as staffed, the range clips everything."""
import datetime as dt

import pytest

from chats.models import Chat, ChatStatus, Participant, ParticipantType
from portal.models import AgentStatusChange
from portal.reports.occupancy import occupancy
from tests.factories import make_agent, make_number

pytestmark = pytest.mark.django_db

DAY = dt.datetime(2030, 3, 4, tzinfo=dt.timezone.utc)


def at(hours: float) -> dt.datetime:
    return DAY + dt.timedelta(hours=hours)


def status(agent, value: str, hours: float):
    AgentStatusChange.objects.create(agent=agent, status=value, at=at(hours))


def chat_span(agent, start: float, end: float | None, number, n=[0]):
    n[0] += 1
    chat = Chat.objects.create(consumer_number=f"+1555700{n[0]:04d}", portal_number=number, status=ChatStatus.FINISHED)
    p = Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=agent)
    Participant.objects.filter(pk=p.pk).update(connected_at=at(start), ended_at=at(end) if end is not None else None)


def test_overlapping_chats_count_once_and_chats_while_away_are_staffed_time():
    alice, number = make_agent("alice"), make_number()
    status(alice, "available", 9)
    status(alice, "away", 13)  # available 9:00–13:00 (4 h)
    status(alice, "offline", 17)
    chat_span(alice, 10, 11, number)
    chat_span(alice, 10.5, 11.5, number)  # overlaps: 10:00–11:30 is 1.5 h with chats
    chat_span(alice, 14, 15, number)  # while away: 1 h more with chats, and staffed

    [(agent_id, figures)] = occupancy(DAY, DAY + dt.timedelta(days=1), now=DAY + dt.timedelta(days=2)).items()

    assert agent_id == alice.pk
    assert figures["busy_seconds"] == 2.5 * 3600
    assert figures["staffed_seconds"] == 5 * 3600
    assert figures["occupancy"] == 50.0


def test_the_range_clips_spans_and_a_chat_still_open_runs_until_now():
    bob, number = make_agent("bob"), make_number()
    status(bob, "available", -2)  # since 22:00 the day before
    chat_span(bob, 11, None, number)  # still open at noon

    [figures] = occupancy(DAY, DAY + dt.timedelta(days=1), now=at(12)).values()

    assert figures["staffed_seconds"] == 12 * 3600  # midnight to now
    assert figures["busy_seconds"] == 3600
    assert figures["occupancy"] == round(100 / 12, 1)
