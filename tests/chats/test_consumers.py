"""/ws/agent/ through the whole ASGI stack (portal.asgi.application: AllowedHostsOriginValidator,
AuthMiddlewareStack, the URL router and AgentConsumer), with the session cookie a logged-in
browser sends (SPEC S5, C1; DESIGN rules 3 and 7).

Conversations are driven by chats.intake.receive_sms, as the inbound webhook calls it; the tests
are transactional, so every after-commit push really happens."""
from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.test import Client

from chats import assignment, events, services
from chats.consumers import CLOSE_NOT_AN_AGENT, CLOSE_UNAUTHENTICATED
from chats.intake import receive_sms
from chats.models import Chat, ChatStatus
from portal import realtime
from portal.asgi import application
from portal.models import AgentProfile, AgentStatus, RealtimeOutbox
from tests.chats.conftest import CONSUMER, OTHER_CONSUMER, PORTAL
from tests.layers import fresh_channel_layer, queue_changes
from tests.webhooks import new_sid

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://localhost"
QUIET = 0.3  # seconds of silence that mean "nothing more is coming"


@pytest.fixture(autouse=True)
def channel_layer(settings):
    return fresh_channel_layer(settings)


# --- helpers ------------------------------------------------------------------------------------


def _session_key(username: str) -> str:
    client = Client()
    assert client.login(username=username, password="demo")
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def open_socket(username: str | None = None, *, origin: bytes = ORIGIN):
    """Open /ws/agent/ as the browser of `username` (None: nobody logged in)."""
    headers = [(b"origin", origin)]
    if username is not None:
        key = await database_sync_to_async(_session_key)(username)
        headers.insert(0, (b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def open_agent_socket(username: str):
    """An agent's adapter, connected, its hello read."""
    communicator, connected, code = await open_socket(username)
    assert connected, code
    hello = await communicator.receive_json_from(timeout=2)
    assert hello["type"] == "hello"
    return communicator


async def drain(communicator, quiet: float = QUIET) -> list[dict]:
    """Every event that arrives until the socket stays quiet for `quiet` seconds."""
    received = []
    while not await communicator.receive_nothing(timeout=quiet):
        received.append(await communicator.receive_json_from(timeout=1))
    return received


def _text(body: str, consumer: str = CONSUMER) -> str:
    _, outcome = receive_sms(message_sid=new_sid(), from_number=consumer, to_number=PORTAL, body=body, media=[])
    return outcome


consumer_texts = database_sync_to_async(_text)


@database_sync_to_async
def reload_agent(agent: AgentProfile) -> AgentProfile:
    return AgentProfile.objects.get(pk=agent.pk)


@database_sync_to_async
def consumer_chat(consumer: str = CONSUMER) -> Chat | None:
    return Chat.objects.filter(consumer_number=consumer).order_by("-pk").first()


@database_sync_to_async
def agent_says(agent: AgentProfile, chat: Chat, body: str):
    return services.send_agent_message(agent=agent, chat=chat, body=body)


@database_sync_to_async
def agent_ends(agent: AgentProfile, chat: Chat):
    return services.end_chat(chat=chat, by="agent", reason="agent_ended", agent=agent)


def of_chat(received: list[dict], chat_id: int) -> list[dict]:
    """The events that concern one chat."""
    found = []
    for event in received:
        if event.get("chat", {}).get("id") == chat_id or event.get("message", {}).get("chat_id") == chat_id:
            found.append(event)
    return found


def assert_json_clean(received: list[dict]) -> None:
    for event in received:
        assert json.loads(json.dumps(event)) == event


async def start_assigned_chat(consumer: str = CONSUMER) -> Chat:
    """The consumer texts the menu number and picks Billing; the chat is auto-assigned."""
    assert await consumer_texts("Hello", consumer) == "menu"
    assert await consumer_texts("1", consumer) == "queued"
    chat = await consumer_chat(consumer)
    assert chat.status == ChatStatus.ASSIGNED, chat.status
    return chat


@pytest.fixture
def carol(db):
    """A logged-in user who is not an agent (a supervisor without an agent profile)."""
    return get_user_model().objects.create_user("carol", "carol@example.com", "demo")


@pytest.fixture
def bob_idle_less(bob):
    """Bob took a chat recently, so Alice (never assigned) is the longest-idle agent."""
    from django.utils import timezone

    AgentProfile.objects.filter(pk=bob.pk).update(last_assignment_at=timezone.now())
    return bob


# --- who may connect -----------------------------------------------------------------------------


async def test_anonymous_is_refused_with_4401(support):
    communicator, connected, code = await open_socket(None)
    assert connected is False
    assert code == CLOSE_UNAUTHENTICATED == 4401


async def test_a_user_who_is_not_an_agent_is_refused_with_4403(support, carol):
    communicator, connected, code = await open_socket("carol")
    assert connected is False
    assert code == CLOSE_NOT_AN_AGENT == 4403


@pytest.mark.parametrize("origin", [b"http://evil.example.com", b"https://localhost.evil.example.com"])
async def test_a_foreign_origin_is_refused_even_with_a_valid_session(alice, origin):
    communicator, connected, _ = await open_socket("alice", origin=origin)
    assert connected is False
    assert (await reload_agent(alice)).connection_count == 0


async def test_without_an_origin_header_the_connection_is_refused(alice):
    key = await database_sync_to_async(_session_key)("alice")
    communicator = WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"cookie", f"sessionid={key}".encode())]
    )
    connected, _ = await communicator.connect()
    assert connected is False


# --- presence ------------------------------------------------------------------------------------


async def test_an_agent_connects_hears_hello_first_and_becomes_available(alice):
    assert alice.status == AgentStatus.OFFLINE and alice.connection_count == 0
    communicator, connected, _ = await open_socket("alice")
    try:
        assert connected is True
        hello = await communicator.receive_json_from(timeout=2)
        assert hello == {"type": "hello", "agent_id": alice.pk, "seq": 1}
        agent = await reload_agent(alice)
        assert agent.connection_count == 1
        assert agent.status == AgentStatus.AVAILABLE
        assert agent.last_seen_at is not None
    finally:
        await communicator.disconnect()
    agent = await reload_agent(alice)
    assert agent.connection_count == 0
    # Offline only after the grace period (portal.presence.sweep_presence), not at once.
    assert agent.status == AgentStatus.AVAILABLE


async def test_each_tab_counts_as_a_connection_and_closing_one_keeps_the_other(alice):
    first = await open_agent_socket("alice")
    second = await open_agent_socket("alice")
    try:
        assert (await reload_agent(alice)).connection_count == 2
        await first.disconnect()
        assert (await reload_agent(alice)).connection_count == 1
    finally:
        await second.disconnect()
    assert (await reload_agent(alice)).connection_count == 0


async def test_an_away_agent_stays_away_when_opening_the_adapter(alice):
    await database_sync_to_async(AgentProfile.objects.filter(pk=alice.pk).update)(status=AgentStatus.AWAY)
    communicator = await open_agent_socket("alice")
    try:
        agent = await reload_agent(alice)
        assert agent.status == AgentStatus.AWAY
        assert agent.connection_count == 1
    finally:
        await communicator.disconnect()


async def test_ping_refreshes_the_heartbeat_and_answers_pong(alice):
    communicator = await open_agent_socket("alice")
    try:
        await database_sync_to_async(AgentProfile.objects.filter(pk=alice.pk).update)(last_seen_at=None)
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=2) == {"type": "pong"}
        assert (await reload_agent(alice)).last_seen_at is not None
    finally:
        await communicator.disconnect()


async def test_a_malformed_frame_is_ignored_and_the_connection_stays_counted(alice):
    communicator = await open_agent_socket("alice")
    try:
        await communicator.send_to(text_data="{not json")
        await communicator.send_to(bytes_data=b"\x00\x01")
        await communicator.send_json_to(["not", "an", "object"])
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=2) == {"type": "pong"}
        assert (await reload_agent(alice)).connection_count == 1
    finally:
        await communicator.disconnect()
    assert (await reload_agent(alice)).connection_count == 0


async def test_connecting_gives_a_waiting_chat_to_the_agent(alice):
    """Capacity appeared (SPEC S5): a chat queued while nobody was online is assigned when an
    agent opens the adapter."""
    assert await consumer_texts("Hello") == "menu"
    assert await consumer_texts("1") == "queued"
    assert (await consumer_chat()).status == ChatStatus.QUEUED
    communicator = await open_agent_socket("alice")
    try:
        received = await drain(communicator)
        chat = await consumer_chat()
        assert chat.status == ChatStatus.ASSIGNED and chat.agent_id == alice.pk
        assigned = [e for e in of_chat(received, chat.pk) if e["type"] == "chat.updated"]
        assert assigned and assigned[-1]["chat"]["status"] == "assigned"
        assert assigned[-1]["chat"]["agent_id"] == alice.pk
    finally:
        await communicator.disconnect()


# --- what an agent hears ---------------------------------------------------------------------------


async def test_an_agent_hears_its_queue_and_its_chat_in_order(alice, bob_idle_less):
    communicator = await open_agent_socket("alice")
    try:
        chat = await start_assigned_chat()
        received = await drain(communicator)
        # Billing's agents hear where it is in the queue: it waited and was assigned in one
        # batch, so they hear it once, assigned (queue.chats merges a flush's queue events). Its
        # agent hears the whole chat, once, though it goes to both the agent's group and the chat's.
        in_queue = [(e["chat_id"], e["status"]) for e in queue_changes(received)]
        assert in_queue == [(chat.pk, "assigned")]
        updates = [e for e in of_chat(received, chat.pk) if e["type"] == "chat.updated"]
        assert [e["chat"]["status"] for e in updates] == ["assigned"]
        assert updates[0]["chat"]["agent_id"] == alice.pk
        assert updates[0]["previous_status"] == "queued"

        await consumer_texts("My invoice is wrong")
        await agent_says(alice, chat, "Let me look at it.")
        later = await drain(communicator)
        created = [e["message"] for e in later if e["type"] == "message.created"]
        assert [(m["author"], m["body"]) for m in created] == [
            ("consumer", "My invoice is wrong"),
            ("agent", "Let me look at it."),
        ]
        assert created[1]["agent_id"] == alice.pk
        assert all(m["chat_id"] == chat.pk for m in created)
        statuses = [e for e in later if e["type"] == "message.status"]
        assert statuses, "the agent sees the delivery status of its message live"
        assert {e["outbound_id"] for e in statuses} == {created[1]["outbound_id"]}

        await agent_ends(alice, chat)
        ended = await drain(communicator)
        finished = [e for e in ended if e["type"] == "chat.updated"]
        assert [e["chat"]["status"] for e in finished] == ["finished"]
        assert finished[0]["chat"]["finish_reason"] == "agent_ended"

        everything = received + later + ended
        seqs = [e["seq"] for e in everything]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert seqs[0] == 2  # hello was 1
        assert seqs == list(range(2, 2 + len(seqs)))  # no gap: nothing was sent unnumbered
        assert_json_clean(everything)
    finally:
        await communicator.disconnect()


async def test_an_older_chat_update_arriving_late_is_dropped_and_the_chat_stays_live(alice):
    """Two requests' after-commit pushes have no order: the "queued" of the request that queued
    the chat can reach the socket after the "assigned" of the one that assigned it. The older
    version is dropped, so the page is not told the chat went back to the queue and the socket
    stays in the chat's group."""
    communicator = await open_agent_socket("alice")
    try:
        chat = await start_assigned_chat()
        assigned = [e for e in await drain(communicator) if e["type"] == "chat.updated"][-1]
        late = {**assigned, "chat": {**assigned["chat"], "status": "queued", "agent_id": None,
                                     "version": assigned["chat"]["version"] - 1}}
        late.pop("seq")
        for group in (events.chat_group(chat.pk), events.agent_group(alice.pk)):
            await database_sync_to_async(_publish_from_tasks)(group, late)
        assert await communicator.receive_nothing(timeout=QUIET)
        await consumer_texts("Still there?")
        heard = await drain(communicator)
        assert [e["message"]["body"] for e in heard if e["type"] == "message.created"] == ["Still there?"]
    finally:
        await communicator.disconnect()


async def test_every_chat_update_counts_a_new_version(alice, bob_idle_less):
    communicator = await open_agent_socket("alice")
    try:
        chat = await start_assigned_chat()
        await database_sync_to_async(services.transfer_chat)(agent=alice, chat=chat, to_agent=bob_idle_less)
        heard = await drain(communicator)
        assert [e["version"] for e in queue_changes(heard)] == [2]  # queued and assigned in one flush
        assert [e["chat"]["version"] for e in heard if e["type"] == "chat.updated"] == [2, 3]  # to Alice, to Bob
        assert (await consumer_chat()).version == 3
    finally:
        await communicator.disconnect()


async def test_a_finished_chat_stops_reaching_the_agent(alice):
    communicator = await open_agent_socket("alice")
    try:
        chat = await start_assigned_chat()
        await drain(communicator)
        await agent_ends(alice, chat)
        await drain(communicator)
        # The chat's group is left: the next consumer text starts a new chat in the menu.
        await database_sync_to_async(realtime.publish_on_commit)(events.chat_group(chat.pk), {"type": "probe"})
        assert await communicator.receive_nothing(timeout=QUIET)
    finally:
        await communicator.disconnect()


async def test_another_agents_chat_never_reaches_an_agent(alice, bob_idle_less):
    """Both agents serve Billing; the chat goes to Alice. Bob may see it wait in the queue, but
    nothing about it once it is Alice's: not its messages, not its status, not its end."""
    alice_socket = await open_agent_socket("alice")
    bob_socket = await open_agent_socket("bob")
    try:
        chat = await start_assigned_chat()
        alice_heard = await drain(alice_socket)
        bob_heard = await drain(bob_socket)
        assert any(e["type"] == "chat.updated" and e["chat"]["agent_id"] == alice.pk for e in alice_heard)
        # Only where it stands in Billing: no number, no agent, no message.
        assert [(e["type"], e["status"]) for e in queue_changes(bob_heard)] == [("queue.chat", "assigned")]
        assert not [
            e for e in queue_changes(bob_heard) if set(e) - {"type", "chat_id", "queue_id", "status", "version", "seq"}
        ]
        assert {e["type"] for e in bob_heard} <= {"queue.chat", "queue.chats"}

        await consumer_texts("Are you there?")
        await agent_says(alice, chat, "Yes, I am here.")
        await agent_ends(alice, chat)
        assert await bob_socket.receive_nothing(timeout=QUIET)
        alice_later = await drain(alice_socket)
        assert [e["message"]["body"] for e in alice_later if e["type"] == "message.created"][:2] == [
            "Are you there?",
            "Yes, I am here.",
        ]
        assert await bob_socket.receive_nothing(timeout=QUIET)
    finally:
        await alice_socket.disconnect()
        await bob_socket.disconnect()


async def test_an_agent_outside_the_queue_hears_nothing_of_it(alice, bob_idle_less, support):
    await database_sync_to_async(support.billing.agents.remove)(bob_idle_less)
    await database_sync_to_async(support.tech.agents.remove)(bob_idle_less)
    alice_socket = await open_agent_socket("alice")
    bob_socket = await open_agent_socket("bob")
    try:
        await start_assigned_chat()
        assert await bob_socket.receive_nothing(timeout=QUIET)
        assert await drain(alice_socket)
    finally:
        await alice_socket.disconnect()
        await bob_socket.disconnect()


async def test_a_transfer_moves_the_chat_from_one_socket_to_the_other(alice, bob_idle_less):
    alice_socket = await open_agent_socket("alice")
    bob_socket = await open_agent_socket("bob")
    try:
        chat = await start_assigned_chat()
        await drain(alice_socket)
        await drain(bob_socket)
        transfer = await database_sync_to_async(services.transfer_chat)(agent=alice, chat=chat, to_agent=bob_idle_less)
        assert transfer.status == "ended"
        alice_heard = await drain(alice_socket)
        bob_heard = await drain(bob_socket)
        assert [(e["chat"]["agent_id"], e["previous_agent_id"]) for e in alice_heard if e["type"] == "chat.updated"] == [
            (bob_idle_less.pk, alice.pk)
        ]
        assert [e["chat"]["agent_id"] for e in bob_heard if e["type"] == "chat.updated"] == [bob_idle_less.pk]

        await consumer_texts("Hello again")
        assert await alice_socket.receive_nothing(timeout=QUIET)
        bob_later = await drain(bob_socket)
        assert [e["message"]["body"] for e in bob_later if e["type"] == "message.created"] == ["Hello again"]
    finally:
        await alice_socket.disconnect()
        await bob_socket.disconnect()


async def test_a_manual_answer_offer_reaches_only_the_offered_agents(alice, bob, support):
    from queues.models import AnswerType, Queue

    await database_sync_to_async(Queue.objects.filter(pk=support.billing.pk).update)(answer_type=AnswerType.MANUAL)
    alice_socket = await open_agent_socket("alice")
    bob_socket = await open_agent_socket("bob")
    try:
        assert await consumer_texts("Hello") == "menu"
        assert await consumer_texts("1") == "queued"
        chat = await consumer_chat()
        alice_heard = await drain(alice_socket)
        bob_heard = await drain(bob_socket)
        for heard in (alice_heard, bob_heard):
            offers = [e for e in heard if e["type"] == "chat.offered"]
            assert len(offers) == 1 and offers[0]["chat"]["id"] == chat.pk
        await database_sync_to_async(assignment.accept_offer)(agent=bob, chat=chat)
        bob_heard = await drain(bob_socket)
        assert [e["chat"]["agent_id"] for e in bob_heard if e["type"] == "chat.updated"] == [bob.pk]
        # Alice's offer is withdrawn: she hears that it left the queue, once, not whose it became.
        alice_heard = await drain(alice_socket)
        assert [{k: v for k, v in e.items() if k not in ("seq", "version")} for e in alice_heard] == [
            {"type": "queue.chat", "chat_id": chat.pk, "queue_id": support.billing.pk, "status": "assigned"}
        ]
        await consumer_texts("Thanks for taking this")
        await database_sync_to_async(services.end_chat)(chat=chat, by="agent", reason="agent_ended", agent=bob)
        assert await alice_socket.receive_nothing(timeout=QUIET)
        assert [e["type"] for e in await drain(bob_socket)].count("message.created") >= 2
    finally:
        await alice_socket.disconnect()
        await bob_socket.disconnect()


async def test_a_reloaded_page_is_still_told_when_its_offer_is_taken(alice, bob, support):
    from queues.models import AnswerType, Queue

    await database_sync_to_async(Queue.objects.filter(pk=support.billing.pk).update)(answer_type=AnswerType.MANUAL)
    alice_socket = await open_agent_socket("alice")
    bob_socket = await open_agent_socket("bob")
    try:
        assert await consumer_texts("Hello") == "menu"
        assert await consumer_texts("1") == "queued"
        chat = await consumer_chat()
        await drain(alice_socket)
        # Alice reloads the adapter: the new connection learns her open offers from the database.
        reloaded = await open_agent_socket("alice")
        await alice_socket.disconnect()
        alice_socket = reloaded
        await drain(bob_socket)
        await database_sync_to_async(assignment.accept_offer)(agent=bob, chat=chat)
        assert [(e["type"], e["status"]) for e in await drain(alice_socket)] == [("queue.chat", "assigned")]
    finally:
        await alice_socket.disconnect()
        await bob_socket.disconnect()


# --- one shape: the socket's chat is the agent API's (DESIGN rule 12) -------------------------------

# What the agent API adds to a chat for the agent reading it: not part of the chat itself.
PER_AGENT_FIELDS = {"unread", "last_message", "last_message_id"}


@database_sync_to_async
def agent_state(username: str) -> dict:
    client = Client()
    assert client.login(username=username, password="demo")
    response = client.get("/apps/api/v1/agent/state")
    assert response.status_code == 200, response.content
    return response.json()


def _without_per_agent_fields(chat: dict) -> dict:
    assert PER_AGENT_FIELDS <= set(chat)
    return {key: value for key, value in chat.items() if key not in PER_AGENT_FIELDS}


async def test_the_chat_a_socket_hears_is_the_chat_the_agent_api_answers(alice, support):
    """chat.updated carries the chat as GET …/agent/state lists it: the same keys and the same
    values (the number masked alike, times in ISO 8601), but for the agent's unread count and last
    message."""
    communicator = await open_agent_socket("alice")
    try:
        chat = await start_assigned_chat()
        updates = [e for e in of_chat(await drain(communicator), chat.pk) if e["type"] == "chat.updated"]
        heard = updates[-1]["chat"]
        state = await agent_state("alice")
    finally:
        await communicator.disconnect()

    [answered] = [c for c in state["chats"] if c["id"] == chat.pk]
    assert heard == _without_per_agent_fields(answered)
    assert heard["status"] == "assigned" and heard["version"] == chat.version
    assert (heard["portal_number"], heard["queue_name"], heard["queue_id"]) == (PORTAL, "Billing", support.billing.pk)
    assert heard["consumer_number"] == "+1••••••4321"
    assert heard["assigned_at"] == chat.assigned_at.isoformat().replace("+00:00", "Z")
    assert "portal_number_id" not in heard


async def test_an_offer_carries_the_chat_the_agent_api_lists_as_an_offer(alice, support):
    from queues.models import AnswerType, Queue

    await database_sync_to_async(Queue.objects.filter(pk=support.billing.pk).update)(answer_type=AnswerType.MANUAL)
    communicator = await open_agent_socket("alice")
    try:
        assert await consumer_texts("Hello") == "menu"
        assert await consumer_texts("1") == "queued"
        chat = await consumer_chat()
        [offer] = [e for e in await drain(communicator) if e["type"] == "chat.offered"]
        state = await agent_state("alice")
    finally:
        await communicator.disconnect()

    [answered] = [c for c in state["offers"] if c["id"] == chat.pk]
    assert offer["chat"] == _without_per_agent_fields(answered)
    assert (offer["chat"]["status"], offer["chat"]["queue_name"]) == ("queued", "Billing")


# --- masking (SPEC C1) ------------------------------------------------------------------------------


async def test_events_show_the_consumer_number_masked(alice):
    communicator = await open_agent_socket("alice")
    try:
        chat = await start_assigned_chat()
        received = await drain(communicator)
        numbers = {e["chat"]["consumer_number"] for e in of_chat(received, chat.pk) if "chat" in e}
        assert numbers == {"+1••••••4321"}
        assert CONSUMER not in json.dumps(received)
    finally:
        await communicator.disconnect()


async def test_events_show_the_full_number_to_an_agent_with_the_permission(alice):
    permission = await database_sync_to_async(Permission.objects.get)(codename="view_full_numbers")
    await database_sync_to_async(alice.user.user_permissions.add)(permission)
    communicator = await open_agent_socket("alice")
    try:
        chat = await start_assigned_chat()
        numbers = {e["chat"]["consumer_number"] for e in of_chat(await drain(communicator), chat.pk) if "chat" in e}
        assert numbers == {CONSUMER}
    finally:
        await communicator.disconnect()


async def test_events_show_the_full_number_when_masking_is_off(alice):
    from tests.factories import update_chat_settings

    await database_sync_to_async(update_chat_settings)(mask_consumer_numbers=False)
    communicator = await open_agent_socket("alice")
    try:
        chat = await start_assigned_chat(OTHER_CONSUMER)
        numbers = {e["chat"]["consumer_number"] for e in of_chat(await drain(communicator), chat.pk) if "chat" in e}
        assert numbers == {OTHER_CONSUMER}
    finally:
        await communicator.disconnect()


# --- after commit, never before (DESIGN rule 3) -------------------------------------------------------


async def test_a_rolled_back_change_is_never_heard(alice):
    communicator = await open_agent_socket("alice")
    try:

        def publish_then_roll_back():
            with pytest.raises(RuntimeError):
                with transaction.atomic():
                    realtime.publish_on_commit(events.agent_group(alice.pk), {"type": "probe"})
                    raise RuntimeError("rolled back")

        await database_sync_to_async(publish_then_roll_back)()
        assert await communicator.receive_nothing(timeout=QUIET)

        def publish_and_commit():
            with transaction.atomic():
                realtime.publish_on_commit(events.agent_group(alice.pk), {"type": "probe"})

        await database_sync_to_async(publish_and_commit)()
        assert (await communicator.receive_json_from(timeout=2))["type"] == "probe"
    finally:
        await communicator.disconnect()


# --- the outbox relay (embedded default: the task cluster has no shared channel layer) ----------------

needs_no_redis = pytest.mark.skipif(bool(settings.REDIS_URL), reason="the relay is only used without Redis")


def _publish_from_tasks(group: str, event: dict) -> None:
    with transaction.atomic():
        realtime.publish_on_commit(group, event)


@needs_no_redis
async def test_off_the_web_process_events_go_to_the_outbox_not_the_layer(alice, monkeypatch):
    monkeypatch.setenv("TERN_PROCESS_ROLE", "tasks")
    assert realtime.relays_through_database()
    layer = get_channel_layer()
    probe = await layer.new_channel()
    await layer.group_add(events.agent_group(alice.pk), probe)
    await database_sync_to_async(_publish_from_tasks)(events.agent_group(alice.pk), {"type": "probe", "n": 1})
    rows = await database_sync_to_async(lambda: list(RealtimeOutbox.objects.values_list("group", "event")))()
    assert rows == [(events.agent_group(alice.pk), {"type": "probe", "n": 1})]
    with pytest.raises(TimeoutError):
        import asyncio

        await asyncio.wait_for(layer.receive(probe), timeout=QUIET)

    # The web process's relay takes the rows once and sends them on.
    taken = await database_sync_to_async(realtime._take_outbox)()
    assert taken == [(events.agent_group(alice.pk), {"type": "probe", "n": 1})]
    assert await database_sync_to_async(RealtimeOutbox.objects.count)() == 0
    assert await database_sync_to_async(realtime._take_outbox)() == []


@needs_no_redis
async def test_the_relay_delivers_outbox_events_to_a_connected_agent(alice, monkeypatch):
    """A conversation handled as the task cluster handles it: its pushes wait in the outbox, and
    the relay that the consumer's connect started (ensure_relay) sends them on."""
    monkeypatch.setenv("TERN_PROCESS_ROLE", "tasks")
    relayed = []
    take_outbox = realtime._take_outbox

    def recording_take_outbox():
        rows = take_outbox()
        relayed.extend(rows)
        return rows

    monkeypatch.setattr(realtime, "_take_outbox", recording_take_outbox)
    communicator = await open_agent_socket("alice")
    try:
        await drain(communicator)
        chat = await start_assigned_chat()
        received = await drain(communicator, quiet=3 * realtime.RELAY_INTERVAL_SECONDS + 0.3)
        updates = [e for e in of_chat(received, chat.pk) if e["type"] == "chat.updated"]
        assert [e["chat"]["status"] for e in updates] == ["assigned"]
        assert [e["status"] for e in queue_changes(received)] == ["assigned"]  # one flush: merged
        relayed_updates = [e for group, e in relayed if e["type"] == "chat.updated" and e["chat"]["id"] == chat.pk]
        assert {e["chat"]["status"] for e in relayed_updates} == {"queued", "assigned"}
        assert await database_sync_to_async(RealtimeOutbox.objects.count)() == 0
        seqs = [e["seq"] for e in received]
        assert seqs == sorted(seqs)
        assert_json_clean(received)
    finally:
        await communicator.disconnect()


@needs_no_redis
async def test_take_outbox_and_group_send_reach_the_socket(alice, monkeypatch):
    # The relay the connection starts looks once, then sleeps: this test relays by hand.
    monkeypatch.setattr(realtime, "RELAY_INTERVAL_SECONDS", 3600)
    communicator = await open_agent_socket("alice")
    try:
        monkeypatch.setenv("TERN_PROCESS_ROLE", "sweeper")
        await database_sync_to_async(_publish_from_tasks)(events.agent_group(alice.pk), {"type": "probe", "n": 2})
        assert await communicator.receive_nothing(timeout=QUIET)
        layer = get_channel_layer()
        taken = await database_sync_to_async(realtime._take_outbox)()
        assert taken == [(events.agent_group(alice.pk), {"type": "probe", "n": 2})]
        for group, event in taken:
            await layer.group_send(group, {"type": "push", "event": event})
        event = await communicator.receive_json_from(timeout=2)
        assert event["type"] == "probe" and event["n"] == 2 and event["seq"] == 2
    finally:
        await communicator.disconnect()


# --- a channel layer that goes away (issue 11, item 4) --------------------------------------------


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own on a free loopback port, which the test can stop."""
    import socket
    import subprocess
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield server, f"redis://127.0.0.1:{port}/0"
    server.kill()
    server.wait()


async def test_closing_the_adapter_while_redis_is_down_still_counts_the_agent_off(alice, settings, private_redis):
    from redis.exceptions import ConnectionError as RedisConnectionError

    server, url = private_redis
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}}
    communicator = await open_agent_socket("alice")
    assert (await reload_agent(alice)).connection_count == 1

    server.kill()
    server.wait()
    try:
        await communicator.disconnect()
    except RedisConnectionError:
        pass  # the consumer's read of its channel fails with the layer: daphne logs it and closes

    assert (await reload_agent(alice)).connection_count == 0


# --- pushes the channel layer dropped (issue 11, item 1) --------------------------------------------


@pytest.fixture
def small_layer(settings, monkeypatch):
    """The test's own layer, holding at most 3 events for a socket that does not read: what a
    burst does to a socket behind hundreds of events, in a few."""
    layers = fresh_channel_layer(settings) and json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"].setdefault("CONFIG", {})["capacity"] = 3
    settings.CHANNEL_LAYERS = layers
    monkeypatch.setattr("chats.consumers.GAP_GRACE_SECONDS", 0.05)
    return get_channel_layer()


async def burst_while_the_socket_cannot_read(group: str, count: int) -> None:
    """`count` pushes to `group` in one flush, while the consumer's event loop is held, as a
    socket falls behind under load: the layer keeps what its capacity allows and drops the rest."""
    import threading

    pending = [(group, {"type": "probe", "n": n}) for n in range(count)]
    thread = threading.Thread(target=realtime._send_all, args=(pending,))
    thread.start()
    thread.join()  # holds this loop, the consumer's, until every group_send is done


async def gap_frames(communicator) -> list[dict]:
    return [e for e in await drain(communicator) if e["type"] == "stream.gap"]


async def test_pushes_dropped_at_the_end_of_a_burst_make_the_page_reload_at_the_next_ping(alice, small_layer):
    communicator = await open_agent_socket("alice")
    try:
        await burst_while_the_socket_cannot_read(events.agent_group(alice.pk), 20)
        probes = [e for e in await drain(communicator) if e["type"] == "probe"]
        assert 0 < len(probes) < 20  # the layer dropped the rest, silently

        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=2) == {"type": "pong"}
        assert [e["type"] for e in await gap_frames(communicator)] == ["stream.gap"]
    finally:
        await communicator.disconnect()


async def test_a_push_after_the_dropped_ones_reveals_the_gap(alice, small_layer):
    communicator = await open_agent_socket("alice")
    try:
        await burst_while_the_socket_cannot_read(events.agent_group(alice.pk), 20)
        await drain(communicator)
        await database_sync_to_async(_publish_from_tasks)(events.agent_group(alice.pk), {"type": "probe", "n": 99})
        heard = await drain(communicator)
        assert [e["type"] for e in heard] == ["probe", "stream.gap"]
    finally:
        await communicator.disconnect()


async def test_no_gap_is_reported_when_nothing_was_dropped(alice, monkeypatch):
    monkeypatch.setattr("chats.consumers.GAP_GRACE_SECONDS", 0.05)
    communicator = await open_agent_socket("alice")
    try:
        await burst_while_the_socket_cannot_read(events.agent_group(alice.pk), 20)  # capacity 2000
        assert len([e for e in await drain(communicator) if e["type"] == "probe"]) == 20
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=2) == {"type": "pong"}
        assert await gap_frames(communicator) == []
    finally:
        await communicator.disconnect()


# --- a dismissed chat answered after its agent closed the adapter (issue 11, item 4) ----------------


@database_sync_to_async
def dismiss(chat: Chat) -> None:
    from django.utils import timezone

    from chats import timers

    with transaction.atomic():
        timers._dismiss(Chat.objects.select_for_update().get(pk=chat.pk), now=timezone.now())


async def test_a_dismissed_chat_answered_after_its_agent_closed_the_adapter_waits_for_an_open_one(alice):
    """A tour saw such a chat handed back to the agent whose page had closed, and dismissed again
    a minute later with the consumer unanswered. It waits in the queue instead (Alice is still
    "available" for the offline grace, but no page of hers is open), and goes to her as soon as
    she opens the adapter again."""
    communicator = await open_agent_socket("alice")
    chat = await start_assigned_chat()
    await dismiss(chat)
    await communicator.disconnect()
    closed = await reload_agent(alice)
    assert closed.connection_count == 0 and closed.status == AgentStatus.AVAILABLE

    assert await consumer_texts("Hello? Still need help") == "dismissed_requeued"
    waiting = await consumer_chat()
    assert waiting.pk == chat.pk and waiting.status == ChatStatus.QUEUED and waiting.agent_id is None

    reopened = await open_agent_socket("alice")
    try:
        back = await consumer_chat()
        assert back.status == ChatStatus.ASSIGNED and back.agent_id == alice.pk
    finally:
        await reopened.disconnect()
