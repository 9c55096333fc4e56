"""The live monitor's figures (SPEC M1–M3): queues now, agents now, the chat lists, read in a
fixed number of queries whatever the number of queues and agents."""
import datetime as dt

import pytest
import time_machine

from chats.models import Chat, ChatStatus, ChatType, Message, Participant, ParticipantType, StartType
from portal.monitoring import live
from tests.factories import make_agent, make_available_agent, make_number, make_queue, make_queued_chats, make_team

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2030, 3, 4, 15, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def support():
    """Support with its leaves Billing (Alice directly, Bob through Tier 1) and Tech (nobody)."""
    root = make_queue("Support")
    billing = make_queue("Billing", parent=root, position=1)
    tech = make_queue("Tech", parent=root, position=2)
    alice = make_available_agent("alice", queues=[billing], max_concurrent_chats=3)
    bob = make_agent("bob")
    make_team("Tier 1", agents=[bob]).queues.add(billing)
    return {"billing": billing, "tech": tech, "alice": alice, "bob": bob, "number": make_number()}


def assigned_to(agent, queue, number, consumer: str, *, queued_seconds_ago: int, wait: int) -> Chat:
    queued = NOW - dt.timedelta(seconds=queued_seconds_ago)
    chat = Chat.objects.create(
        consumer_number=consumer, portal_number=number, queue=queue, agent=agent, status=ChatStatus.ASSIGNED,
        queued_at=queued, assigned_at=queued + dt.timedelta(seconds=wait), start_type=StartType.AUTO,
    )
    Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=agent)
    return chat


def test_queues_now_counts_what_waits_and_who_can_take_it(support):
    billing = support["billing"]
    make_queued_chats(billing, support["number"], 2)  # queued 2 and 1 minutes ago
    assigned_to(support["alice"], billing, support["number"], "+15559990000", queued_seconds_ago=300, wait=30)

    rows = {row["name"]: row for row in live.queues_now()}

    assert list(rows) == ["Support › Billing", "Support › Tech"]  # the leaves, in menu order
    billing_row = rows["Support › Billing"]
    assert (billing_row["waiting"], billing_row["in_progress"], billing_row["longest_wait_seconds"]) == (2, 1, 120)
    assert (billing_row["agents_available"], billing_row["agents_eligible"]) == (1, 2)
    assert billing_row["today"]["offered"] == 3 and billing_row["today"]["service_level"] == 100.0
    assert billing_row["types"]["SMS"] == 3 and billing_row["types"]["Outbound SMS"] == 0
    assert rows["Support › Tech"]["waiting"] == 0 and rows["Support › Tech"]["agents_eligible"] == 0


def test_agents_now_shows_status_since_load_and_today_s_answers(support, clock):
    alice = support["alice"]
    chat = assigned_to(alice, support["billing"], support["number"], "+15559990000", queued_seconds_ago=900, wait=60)
    Participant.objects.filter(chat=chat).update(connected_at=NOW - dt.timedelta(minutes=14), ended_at=NOW - dt.timedelta(minutes=4))
    assigned_to(alice, support["billing"], support["number"], "+15559990001", queued_seconds_ago=60, wait=5)

    rows = {row["username"]: row for row in live.agents_now()}

    assert rows["alice"]["status"] == "available" and rows["alice"]["adapter_open"]
    assert (rows["alice"]["chats_in_progress"], rows["alice"]["capacity"]) == (2, 3)
    assert rows["alice"]["answered_today"] == 2 and rows["alice"]["average_handle_seconds"] == 600
    assert rows["bob"]["queues"] == ["Support › Billing"] and rows["bob"]["teams"] == ["Tier 1"]
    assert rows["bob"]["answered_today"] == 0 and rows["bob"]["average_handle_seconds"] is None


def test_the_agents_board_filters_by_team_and_queue(support):
    assert [row["username"] for row in live.agents_now(team_id=make_team("Nights").pk)] == []
    assert sorted(row["username"] for row in live.agents_now(queue_id=support["billing"].pk)) == ["alice", "bob"]
    assert [row["username"] for row in live.agents_now(queue_id=support["tech"].pk)] == []


def test_the_chat_lists_search_by_number_agent_and_text_with_numbers_masked(support):
    alice, billing, number = support["alice"], support["billing"], support["number"]
    mine = assigned_to(alice, billing, number, "+15551234567", queued_seconds_ago=100, wait=10)
    Message.objects.create(chat=mine, author="consumer", body="my invoice is wrong")
    [waiting] = make_queued_chats(billing, number, 1)
    Chat.objects.create(consumer_number="+15550000009", portal_number=number, queue=billing, status=ChatStatus.FINISHED,
                        queued_at=NOW, ends_at=NOW, finish_reason="expired_unanswered", chat_type=ChatType.SMS)

    ongoing = live.chat_list("ongoing")
    assert [c["id"] for c in ongoing["chats"]] == [mine.pk, waiting.pk]
    assert ongoing["chats"][0]["consumer_number"] != "+15551234567"  # masked
    assert [c["id"] for c in live.chat_list("ongoing", search="invoice")["chats"]] == [mine.pk]
    assert [c["id"] for c in live.chat_list("ongoing", search="alic")["chats"]] == [mine.pk]
    assert [c["id"] for c in live.chat_list("ongoing", search="1234567", masked=False)["chats"]] == [mine.pk]
    [previous] = live.chat_list("previous")["chats"]
    assert previous["finish_reason"] == "Expired unanswered in the queue" and previous["wait_seconds"] == 0


def test_the_monitor_s_state_costs_the_same_queries_for_two_queues_or_twenty(support, django_assert_max_num_queries):
    def count():
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            live.monitor_state()
        return len(queries)

    small = count()
    for n in range(18):
        queue = make_queue(f"Extra {n}", parent=support["billing"].parent, position=10 + n)
        make_available_agent(f"extra{n}", queues=[queue])
        make_queued_chats(queue, support["number"], 2, first_consumer=15550000000 + 100 * n)
    assert count() == small
    with django_assert_max_num_queries(12):
        live.monitor_state()


def test_a_chat_whose_text_is_held_for_quiet_hours_is_in_the_future_list(support):
    from sms.models import OutboundMessage

    alice, billing, number = support["alice"], support["billing"], support["number"]
    held = assigned_to(alice, billing, number, "+15551230000", queued_seconds_ago=10, wait=1)
    text = OutboundMessage.objects.create(to_number=held.consumer_number, from_number=number.number, body="Hi", status="held")
    Message.objects.create(chat=held, author="agent", body="Hi", outbound=text)
    assigned_to(alice, billing, number, "+15551230001", queued_seconds_ago=10, wait=1)

    assert [c["id"] for c in live.chat_list("future")["chats"]] == [held.pk]
    assert len(live.chat_list("ongoing")["chats"]) == 2
