"""portal.realtime (DESIGN rules 3 and 7): events leave after commit and never before, as JSON;
a failed push never fails the caller; off the web process on the embedded default (no Redis)
they wait in RealtimeOutbox and the web process relays them."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from portal import realtime
from portal.models import RealtimeOutbox
from tests.layers import GroupListener, commit, fresh_channel_layer, listen_on, next_message

GROUP = "agent.42"
needs_no_redis = pytest.mark.skipif(bool(settings.REDIS_URL), reason="the relay is only used without Redis")


@pytest.fixture(autouse=True)
def channel_layer(settings):
    return fresh_channel_layer(settings)


@pytest.fixture(autouse=True)
def web_process(monkeypatch):
    """The web process unless a test says otherwise."""
    monkeypatch.delenv("TERN_PROCESS_ROLE", raising=False)


# --- after commit, as JSON ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_event_leaves_only_after_commit(channel_layer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        realtime.publish_on_commit(GROUP, {"type": "chat.updated", "n": 1})
    assert len(callbacks) == 1
    before, after = commit(channel_layer, callbacks, group=GROUP)
    assert before is None
    assert after["type"] == "push" and after["event"] == {"type": "chat.updated", "n": 1}


@pytest.mark.django_db
def test_a_rolled_back_event_never_leaves(channel_layer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                realtime.publish_on_commit(GROUP, {"type": "chat.updated"})
                raise RuntimeError("rolled back")
    assert callbacks == []
    assert commit(channel_layer, callbacks, group=GROUP, timeout=0.2) == (None, None)


@pytest.mark.django_db
def test_events_are_json_with_times_written_as_the_rest_answers_write_them(
    channel_layer, django_capture_on_commit_callbacks
):
    at = dt.datetime(2030, 3, 4, 10, 0, 5, 250000, tzinfo=dt.timezone.utc)
    token = uuid.UUID("12345678-1234-5678-1234-567812345678")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        realtime.publish_on_commit(
            GROUP, {"type": "probe", "at": at, "day": at.date(), "amount": Decimal("1.50"), "token": token, "n": None}
        )
    event = commit(channel_layer, callbacks, group=GROUP)[1]["event"]
    assert event == {
        "type": "probe",
        "at": "2030-03-04T10:00:05.250Z",
        "day": "2030-03-04",
        "amount": "1.50",
        "token": "12345678-1234-5678-1234-567812345678",
        "n": None,
    }
    assert dt.datetime.fromisoformat(event["at"]) == at


@pytest.mark.django_db
def test_the_event_is_copied_when_published(channel_layer, django_capture_on_commit_callbacks):
    """A caller changing its dict afterwards does not change what the browser hears."""
    event = {"type": "chat.updated", "chat": {"status": "queued"}}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        realtime.publish_on_commit(GROUP, event)
        event["chat"]["status"] = "finished"
    assert commit(channel_layer, callbacks, group=GROUP)[1]["event"]["chat"] == {"status": "queued"}


@pytest.mark.django_db
def test_no_group_means_no_event(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        realtime.publish_on_commit("", {"type": "message.status"})
    assert callbacks == []


@pytest.mark.django_db
def test_a_failed_push_never_fails_the_caller(monkeypatch, django_capture_on_commit_callbacks, caplog):
    class BrokenLayer:
        async def group_send(self, group, message):
            raise ConnectionError("the channel layer is down")

    monkeypatch.setattr(realtime, "get_channel_layer", lambda: BrokenLayer())
    with caplog.at_level(logging.ERROR, logger="portal.realtime"):
        with django_capture_on_commit_callbacks(execute=True):
            realtime.publish_on_commit(GROUP, {"type": "chat.updated"})
    assert any(GROUP in record.getMessage() for record in caplog.records)


# --- the outbox off the web process ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "redis_url", "expected"),
    [
        ("", "", False),
        ("web", "", False),
        ("tasks", "", True),
        ("sweeper", "", True),
        ("tasks", "redis://127.0.0.1:6379/0", False),
        ("sweeper", "redis://127.0.0.1:6379/0", False),
    ],
)
def test_who_relays_through_the_database(monkeypatch, settings, role, redis_url, expected):
    settings.REDIS_URL = redis_url
    if role:
        monkeypatch.setenv("TERN_PROCESS_ROLE", role)
    assert realtime.relays_through_database() is expected


@needs_no_redis
@pytest.mark.django_db
def test_the_task_cluster_writes_to_the_outbox_instead_of_the_layer(
    channel_layer, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setenv("TERN_PROCESS_ROLE", "tasks")
    at = dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.timezone.utc)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        realtime.publish_on_commit(GROUP, {"type": "chat.updated", "at": at})
        realtime.publish_on_commit("chat.7", {"type": "message.created"})
        assert RealtimeOutbox.objects.count() == 0  # after commit, here too
    assert commit(channel_layer, callbacks, group=GROUP, timeout=0.2) == (None, None)  # nothing on the layer
    assert list(RealtimeOutbox.objects.order_by("pk").values_list("group", "event")) == [
        (GROUP, {"type": "chat.updated", "at": "2030-03-04T10:00:00Z"}),
        ("chat.7", {"type": "message.created"}),
    ]


@needs_no_redis
@pytest.mark.django_db
def test_take_outbox_takes_the_oldest_rows_once_in_batches(monkeypatch):
    monkeypatch.setattr(realtime, "RELAY_BATCH", 2)
    for n in range(5):
        RealtimeOutbox.objects.create(group=f"chat.{n}", event={"type": "probe", "n": n})
    assert realtime._take_outbox() == [("chat.0", {"type": "probe", "n": 0}), ("chat.1", {"type": "probe", "n": 1})]
    assert realtime._take_outbox() == [("chat.2", {"type": "probe", "n": 2}), ("chat.3", {"type": "probe", "n": 3})]
    assert realtime._take_outbox() == [("chat.4", {"type": "probe", "n": 4})]
    assert realtime._take_outbox() == []
    assert RealtimeOutbox.objects.count() == 0


@pytest.fixture
def no_relay(monkeypatch):
    """Forget any relay task of an earlier test; cancel the one this test starts."""
    monkeypatch.setattr(realtime, "_relay_task", None)
    yield
    task = realtime._relay_task
    if task is not None and not task.done():
        task.cancel()


@needs_no_redis
async def test_the_relay_sends_outbox_rows_to_their_groups_and_survives_errors(channel_layer, monkeypatch, no_relay):
    batches = [RuntimeError("database is locked"), [(GROUP, {"type": "probe", "n": 1})]]

    def take_outbox():
        item = batches.pop(0) if batches else []
        if isinstance(item, Exception):
            raise item
        return item

    monkeypatch.setattr(realtime, "_take_outbox", take_outbox)
    monkeypatch.setattr(realtime, "RELAY_INTERVAL_SECONDS", 0.01)
    channel = await listen_on(channel_layer, GROUP)
    realtime.ensure_relay()
    message = await next_message(channel_layer, channel, timeout=2)
    assert message["type"] == "push" and message["event"] == {"type": "probe", "n": 1}
    assert message["group"] == GROUP and isinstance(message["n"], int)  # numbered by the relay
    assert batches == []


@needs_no_redis
async def test_one_relay_per_process(no_relay, monkeypatch):
    monkeypatch.setattr(realtime, "_take_outbox", lambda: [])
    realtime.ensure_relay()
    first = realtime._relay_task
    realtime.ensure_relay()
    assert realtime._relay_task is first and not first.done()


def test_no_relay_with_redis(settings, no_relay):
    """With Redis every process shares the channel layer: nothing to relay, no loop needed."""
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    realtime.ensure_relay()
    assert realtime._relay_task is None


@pytest.mark.django_db
def test_a_batch_of_pushes_reaches_the_groups_listened_to_in_order(channel_layer, django_capture_on_commit_callbacks):
    """The sweeper's batches: on Redis, groups nobody listens to are skipped in one look-up; a
    group somebody listens to gets every event, in order."""
    channel = async_to_sync(listen_on)(channel_layer, GROUP)

    with django_capture_on_commit_callbacks(execute=True):
        with realtime.batched_pushes():
            for n in range(3):
                realtime.publish_on_commit(GROUP, {"type": "chat.updated", "n": n})
                realtime.publish_on_commit(f"chat.{900 + n}", {"type": "chat.updated", "n": n})  # nobody listens

    async def drain():
        return [await next_message(channel_layer, channel) for _ in range(4)]

    received = async_to_sync(drain)()
    assert [message["event"]["n"] for message in received[:3]] == [0, 1, 2]
    assert received[3] is None


@pytest.mark.django_db
def test_a_burst_of_events_waiting_for_one_socket_all_reach_it(channel_layer, django_capture_on_commit_callbacks):
    """Under a burst every agent of a queue hears each chat that starts or stops waiting; a
    socket that falls behind by hundreds must still get every event (channels' default capacity
    of 100 per channel silently dropped the rest: assignments never reached the agent's page)."""
    listener = GroupListener(channel_layer, [GROUP])

    with django_capture_on_commit_callbacks(execute=True):
        with realtime.batched_pushes():
            for n in range(600):
                realtime.publish_on_commit(GROUP, {"type": "message.created", "n": n})

    assert [event["n"] for event in listener.heard()[GROUP]] == list(range(600))


# --- numbered per group, merged per flush (issue 11, item 1) ------------------------------------------


@pytest.mark.django_db
def test_pushes_are_numbered_per_group_before_the_layer(channel_layer, django_capture_on_commit_callbacks):
    """A consumer can tell a push the layer dropped: the numbers of one group follow each other,
    from where the group's counter stood."""
    listener = GroupListener(channel_layer, [GROUP, "chat.7"])
    (start,) = async_to_sync(realtime.positions)([GROUP]).values()

    with django_capture_on_commit_callbacks(execute=True):
        with realtime.batched_pushes():
            for n in range(3):
                realtime.publish_on_commit(GROUP, {"type": "message.created", "n": n})
                realtime.publish_on_commit("chat.7", {"type": "message.created", "n": n})
    with django_capture_on_commit_callbacks(execute=True):
        realtime.publish_on_commit(GROUP, {"type": "message.created", "n": 3})

    async def drain(channel):
        return [await next_message(channel_layer, channel, timeout=0.3) for _ in range(5)]

    heard = [m for m in async_to_sync(drain)(listener.channels[GROUP]) if m]
    assert [(m["group"], m["n"]) for m in heard] == [(GROUP, start + k) for k in range(1, 5)]
    assert async_to_sync(realtime.positions)([GROUP]) == {GROUP: start + 4}


@pytest.mark.django_db
def test_the_queue_events_of_one_flush_reach_each_agent_as_one(channel_layer, django_capture_on_commit_callbacks):
    """A batch of inbound texts queues many chats: the agents of the queue get one frame with each
    chat at its newest version, not one frame per chat and change."""
    from chats import events  # registers the merge

    assert "queue.chat" in realtime._merges and events.merge_queue_chats
    queue_group = "queue.5"
    listener = GroupListener(channel_layer, [queue_group, GROUP])

    with django_capture_on_commit_callbacks(execute=True):
        with realtime.batched_pushes():
            for chat_id in (1, 2, 3):
                realtime.publish_on_commit(
                    queue_group, {"type": "queue.chat", "chat_id": chat_id, "queue_id": 5, "status": "queued", "version": 1}
                )
            realtime.publish_on_commit(GROUP, {"type": "chat.updated", "n": 1})
            realtime.publish_on_commit(
                queue_group, {"type": "queue.chat", "chat_id": 2, "queue_id": 5, "status": "assigned", "version": 2}
            )

    heard = listener.heard()
    assert heard[queue_group] == [
        {
            "type": "queue.chats",
            "queue_id": 5,
            "chats": [
                {"chat_id": 1, "queue_id": 5, "status": "queued", "version": 1},
                {"chat_id": 2, "queue_id": 5, "status": "assigned", "version": 2},
                {"chat_id": 3, "queue_id": 5, "status": "queued", "version": 1},
            ],
        }
    ]
    assert heard[GROUP] == [{"type": "chat.updated", "n": 1}]


@pytest.mark.django_db
def test_a_single_queue_event_is_sent_as_it_is(channel_layer, django_capture_on_commit_callbacks):
    listener = GroupListener(channel_layer, ["queue.5"])
    event = {"type": "queue.chat", "chat_id": 1, "queue_id": 5, "status": "queued", "version": 1}
    with django_capture_on_commit_callbacks(execute=True):
        realtime.publish_on_commit("queue.5", event)
    assert listener.heard()["queue.5"] == [event]


@needs_no_redis
@pytest.mark.django_db
def test_the_web_process_forgets_the_counters_of_groups_nobody_listens_to(
    channel_layer, monkeypatch, django_capture_on_commit_callbacks
):
    """Without Redis the numbers live in the web process: one per chat ever pushed would grow
    without end. Groups nobody listens to any more are dropped once there are many."""
    monkeypatch.setattr(realtime, "LOCAL_SEQ_KEPT", 1)
    monkeypatch.setattr(realtime, "_local_seq", {"chat.1": 7, "chat.2": 3})
    GroupListener(channel_layer, [GROUP])

    with django_capture_on_commit_callbacks(execute=True):
        realtime.publish_on_commit(GROUP, {"type": "probe"})

    assert set(realtime._local_seq) == {GROUP}
