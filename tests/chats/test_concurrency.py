"""Concurrency (DESIGN rule 4, SPEC S1 and S5): parallel routing never gives a chat twice nor an
agent more than their maximum, the first of two agents to accept a manual offer wins, and a
webhook delivered several times at once is stored and answered once.

These run on PostgreSQL only: SQLite takes one write lock for the whole database and ignores
SELECT … FOR UPDATE, so a race there proves nothing. CI runs the suite a second time with
DATABASE_URL=postgres://…, where they run. Every thread opens its own connection and closes it."""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import pytest
from django.db import connections, transaction
from django.db.models import Count, Q
from django.test import Client

from chats import services
from chats.calls import lifecycle
from chats.intake import receive_sms
from chats.models import Author, Call, Chat, ChatStatus, DisconnectedBy, FinishReason, Message, Offer, Participant, ParticipantType
from chats.assignment import accept_offer, assign_waiting_chats
from chats.errors import ChatActionError
from queues.models import AnswerType, QueueMessages
from sms.models import InboundMessage, OutboundMessage
from tests.chats.calls import ask
from tests.concurrency import POSTGRES_ONLY, THREAD_TIMEOUT, assert_no_errors, errors_of, run_together
from tests.factories import link_number, make_available_agent, make_number, make_queue, make_queued_chats
from tests.webhooks import inbound_params, new_sid, post_signed


pytestmark = POSTGRES_ONLY

PORTAL_NUMBER = "+15550100001"








# --- routing ------------------------------------------------------------------------------------


def test_parallel_assignment_gives_each_chat_once_and_respects_capacity():
    number = make_number(PORTAL_NUMBER, messages_per_second=1000)
    queue = make_queue("Billing", answer_type=AnswerType.AUTO)
    link_number(queue, number)
    agents = [make_available_agent(f"agent{i}", queues=[queue], max_concurrent_chats=2) for i in range(5)]
    chats = make_queued_chats(queue, number, 50)
    assert len(chats) == 50

    results = run_together(*[lambda: assign_waiting_chats(queue_id=queue.pk) for _ in range(8)])

    assert_no_errors(results)
    assert sum(value for _, value in results) == 10
    statuses = Counter(Chat.objects.filter(queue=queue).values_list("status", flat=True))
    assert statuses == {ChatStatus.ASSIGNED: 10, ChatStatus.QUEUED: 40}

    # No chat given twice: at most one agent participant per chat, and exactly one when assigned.
    per_chat = dict(
        Chat.objects.filter(queue=queue)
        .annotate(agent_rows=Count("participants", filter=Q(participants__type=ParticipantType.AGENT)))
        .values_list("pk", "agent_rows")
    )
    assert max(per_chat.values()) == 1
    assert sum(per_chat.values()) == 10
    assert Participant.objects.filter(type=ParticipantType.AGENT).count() == 10

    # No agent above capacity (here: every agent exactly full).
    load = Counter(Chat.objects.filter(status=ChatStatus.ASSIGNED).values_list("agent_id", flat=True))
    assert load == {agent.pk: 2 for agent in agents}

    # The oldest chats were served first; the 40 youngest still wait.
    assigned_ids = set(Chat.objects.filter(status=ChatStatus.ASSIGNED).values_list("pk", flat=True))
    assert assigned_ids == {chat.pk for chat in chats[:10]}


def test_two_agents_accepting_the_same_offer_at_once_one_wins():
    number = make_number(PORTAL_NUMBER, messages_per_second=1000)
    queue = make_queue("Billing", answer_type=AnswerType.MANUAL)
    link_number(queue, number)
    alice = make_available_agent("alice", queues=[queue])
    bob = make_available_agent("bob", queues=[queue])
    (chat,) = make_queued_chats(queue, number, 1)
    assert assign_waiting_chats(queue_id=queue.pk) == 1
    assert set(Offer.objects.filter(chat=chat).values_list("agent_id", flat=True)) == {alice.pk, bob.pk}

    results = run_together(lambda: accept_offer(agent=alice, chat=chat), lambda: accept_offer(agent=bob, chat=chat))

    won = [value for kind, value in results if kind == "ok"]
    lost = errors_of(results)
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], ChatActionError), lost[0]
    assert lost[0].code == "taken"
    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED
    assert chat.agent_id in {alice.pk, bob.pk}
    assert list(Participant.objects.filter(chat=chat, type=ParticipantType.AGENT).values_list("agent_id", flat=True)) == [
        chat.agent_id
    ]
    offers = dict(Offer.objects.filter(chat=chat).values_list("agent_id", "status"))
    loser = bob.pk if chat.agent_id == alice.pk else alice.pk
    assert offers == {chat.agent_id: Offer.Status.ACCEPTED, loser: Offer.Status.WITHDRAWN}


def test_a_text_holding_a_queued_chat_during_an_assignment_run_gets_it_assigned_after():
    """Assignment skips locked chats; a consumer's text holds its chat's row while it is handled.
    When both meet, the text's transaction runs the assignment again once it commits. The text is
    held for real: another connection holds a lock on the transcript's table, so the text's
    transaction, which locked the chat first, waits at its first transcript insert."""
    number = make_number(PORTAL_NUMBER, messages_per_second=1000)
    queue = make_queue("Billing", answer_type=AnswerType.AUTO)
    link_number(queue, number)
    agent = make_available_agent("alice", queues=[queue])
    (chat,) = make_queued_chats(queue, number, 1)
    locked, release = threading.Event(), threading.Event()
    thread_results = []

    def hold_transcript_inserts():
        try:
            with transaction.atomic(), connections["default"].cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Message._meta.db_table} IN SHARE MODE")
                locked.set()
                assert release.wait(THREAD_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 — reported below
            thread_results.append(("error", exc))
        finally:
            connections.close_all()

    def text():
        try:
            outcome = receive_sms(
                message_sid=new_sid(), from_number=chat.consumer_number, to_number=PORTAL_NUMBER,
                body="Anyone there?", media=[],
            )[1]
            thread_results.append(("ok", outcome))
        except BaseException as exc:  # noqa: BLE001 — reported below
            thread_results.append(("error", exc))
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_transcript_inserts, daemon=True)
    texter = threading.Thread(target=text, daemon=True)
    holder.start()
    try:
        assert locked.wait(THREAD_TIMEOUT)
        texter.start()
        wait_for_a_blocked_transaction()  # the text's, holding the chat's row, at its insert
        assert assign_waiting_chats(queue_id=queue.pk) == 0  # the chat is locked: skipped
    finally:
        release.set()
        holder.join(THREAD_TIMEOUT)
        texter.join(THREAD_TIMEOUT)
    assert_no_errors(thread_results)
    assert ("ok", "message") in thread_results
    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED
    assert chat.agent_id == agent.pk


def wait_for_a_blocked_transaction() -> None:
    """Until PostgreSQL shows another backend of this database waiting for a lock."""
    deadline = time.monotonic() + THREAD_TIMEOUT
    with connections["default"].cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "no transaction ever waited for the lock"
            time.sleep(0.01)


# --- inbound webhook ----------------------------------------------------------------------------


@pytest.fixture
def inbound_setup(settings):
    """The demo's shape: one incoming number on an auto-answer leaf queue with a greeting and one
    available agent, and a Twilio auth token so the real webhook view checks signatures."""
    settings.TWILIO_AUTH_TOKEN = "concurrency-token"
    settings.PUBLIC_BASE_URL = ""
    number = make_number(PORTAL_NUMBER, messages_per_second=1000)
    queue = make_queue("Support", answer_type=AnswerType.AUTO)
    QueueMessages.objects.create(queue=queue, language="en", greeting="Welcome to Tern Support!")
    link_number(queue, number)
    make_available_agent("alice", queues=[queue], max_concurrent_chats=10)
    return number


def post_webhook(params):
    response = post_signed(Client(), "/sms/twilio/inbound/", params)
    return response.status_code


def outbound_to(consumer: str) -> int:
    return OutboundMessage.objects.filter(to_number=consumer).count()


def test_same_message_sid_delivered_eight_times_at_once_is_handled_once(inbound_setup):
    # One delivery, alone, from another consumer: how many replies a first text gets.
    single = "+15557100001"
    assert post_webhook(inbound_params(from_number=single, to_number=PORTAL_NUMBER, body="Hi")) == 200
    replies_of_one = outbound_to(single)
    assert replies_of_one >= 2  # opt-in, greeting, queued text, agent joined

    consumer = "+15557100002"
    params = inbound_params(from_number=consumer, to_number=PORTAL_NUMBER, body="Hi", sid=new_sid())
    results = run_together(*[lambda: post_webhook(params) for _ in range(8)])

    assert_no_errors(results)
    assert [value for _, value in results] == [200] * 8
    assert InboundMessage.objects.filter(message_sid=params["MessageSid"]).count() == 1
    assert Chat.objects.filter(consumer_number=consumer).count() == 1
    assert Message.objects.filter(chat__consumer_number=consumer, author=Author.CONSUMER).count() == 1
    assert outbound_to(consumer) == replies_of_one


def test_same_message_sid_through_receive_sms_at_once_is_stored_once(inbound_setup):
    consumer = "+15557100003"
    sid = new_sid()

    def deliver():
        inbound, outcome = receive_sms(message_sid=sid, from_number=consumer, to_number=PORTAL_NUMBER, body="Hi", media=[])
        return outcome

    results = run_together(*[deliver for _ in range(8)])

    assert_no_errors(results)
    outcomes = Counter(value for _, value in results)
    assert outcomes["duplicate"] == 7, outcomes
    assert InboundMessage.objects.filter(message_sid=sid).count() == 1
    assert Chat.objects.filter(consumer_number=consumer).count() == 1


def test_two_different_texts_from_a_new_consumer_at_once_make_one_chat(inbound_setup):
    consumers = [f"+1555720000{i}" for i in range(4)]
    sends = []
    for consumer in consumers:
        for body in ("Hello", "I need help with my bill"):
            params = inbound_params(from_number=consumer, to_number=PORTAL_NUMBER, body=body)
            sends.append(lambda params=params: post_webhook(params))

    results = run_together(*sends)

    assert_no_errors(results)
    assert [value for _, value in results] == [200] * len(sends)
    for consumer in consumers:
        chats = list(Chat.objects.filter(consumer_number=consumer))
        assert len(chats) == 1, f"{consumer}: {len(chats)} chats"
        transcript = set(
            Message.objects.filter(chat=chats[0], author=Author.CONSUMER).values_list("body", flat=True)
        )
        assert transcript == {"Hello", "I need help with my bill"}
        assert InboundMessage.objects.filter(from_number=consumer).count() == 2
        # One conversation start: the opt-in and the greeting went out once.
        assert OutboundMessage.objects.filter(to_number=consumer, body="Welcome to Tern Support!").count() == 1
        # The second text held the chat's row while the first one's assignment ran (which skips
        # locked chats): the chat must still reach the available agent, not wait in the queue.
        assert chats[0].status == ChatStatus.ASSIGNED, f"{consumer}: chat left {chats[0].status}"


# --- a call reaching an agent while the caller texts STOP -----------------------------------------


def _postgres_waits_for_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0] > 0


def test_a_call_assigned_while_the_caller_stops_its_sms_side_leaves_that_chat_finished(
    new_call, committed, clock, alice
):
    """The caller's STOP holds the SMS side's row lock and finishes it; the call reaches Alice
    meanwhile. The assignment waits for the STOP and finds the chat finished: it never moves a
    finished chat back to "assigned" from what it read before."""
    call = new_call()
    clock.shift(dt.timedelta(seconds=60))
    ask(committed, call, digit="1")  # wait-time SMS allowed: the SMS side waits with the call
    chat_id = Call.objects.get(pk=call.pk).chat_id
    assert Chat.objects.get(pk=chat_id).status == ChatStatus.QUEUED
    stopping = threading.Event()

    def caller_stops():
        with transaction.atomic():
            chat = Chat.objects.select_for_update(of=("self",)).get(pk=chat_id)
            services.end_chat(chat=chat, by=DisconnectedBy.END_USER, reason=FinishReason.END_USER_STOPPED, notify_consumer=False)
            stopping.set()
            # Commit only once the assignment waits on this lock (a bounded poll of pg_locks).
            for _ in range(THREAD_TIMEOUT * 20):
                if _postgres_waits_for_a_lock():
                    break
                time.sleep(0.05)

    def call_reaches_alice():
        assert stopping.wait(THREAD_TIMEOUT)
        return lifecycle.assign_call(call_sid=call.call_sid, agent=alice)

    assert_no_errors(run_together(caller_stops, call_reaches_alice))
    chat = Chat.objects.get(pk=chat_id)
    assert (chat.status, chat.finish_reason) == (ChatStatus.FINISHED, FinishReason.END_USER_STOPPED)
