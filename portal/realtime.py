"""The one publish-on-commit helper (DESIGN rule 7): a group and a JSON-able event, sent to the
channel layer after the transaction commits. A failed push never fails the caller.

On the embedded default (no REDIS_URL) the channel layer lives in the web process's memory, so
the task cluster and the sweeper (TERN_PROCESS_ROLE=tasks|sweeper, set by `serve`) write their
events to RealtimeOutbox instead, and the web process relays them (`ensure_relay`).

Loss shows: a channel layer drops what a slow socket cannot take (channels_redis says "over
capacity" in its log; the in-memory layer says nothing). So every push is numbered per group
before the layer (`n`, a counter in Redis, or in the web process without it), and a consumer
that hears n+2 after n, or learns that its group's counter moved past what it heard
(`positions`), knows it missed something and has the page reload (chats/consumers.py).

Fewer frames: events of a kind with a registered merge (`coalesce`) sent to one group in one
flush become one event: a batch of inbound texts that queues fifty chats tells each agent of the
queue once, not fifty times."""
import asyncio
import json
import logging
import os
import threading
import time
from collections import Counter
from typing import Callable

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from portal import shared_redis
from portal.aftercommit import AfterCommitBatch

log = logging.getLogger(__name__)

RELAY_INTERVAL_SECONDS = 0.3
RELAY_BATCH = 200
OFF_WEB_ROLES = {"tasks", "sweeper"}


class EventEncoder(DjangoJSONEncoder):
    """Times as ISO 8601 ("2030-03-04T10:00:00Z"), as the REST answers write them; anything
    else unknown as its str()."""

    def default(self, o):
        try:
            return super().default(o)
        except TypeError:
            return str(o)


# The group every supervisor's monitor joins: the chats', calls' and agents' events reach it.
SUPERVISORS = "supervisors"

def relays_through_database() -> bool:
    return not settings.REDIS_URL and os.environ.get("TERN_PROCESS_ROLE", "") in OFF_WEB_ROLES


class JsonEvent(dict):
    """An event already made JSON (`as_json`): published as it is, so one event told to several
    groups is encoded once."""


def as_json(event: dict) -> JsonEvent:
    return JsonEvent(json.loads(json.dumps(event, cls=EventEncoder)))


def publish_on_commit(group: str, event: dict) -> None:
    if not group:
        return
    payload = event if isinstance(event, JsonEvent) else as_json(event)  # JSON now, not in the browser
    _pushes.add([(group, payload)])


def batched_pushes():
    """Send the pushes of everything committed inside the block together when it ends: one
    event-loop hop (or one outbox insert) for many events instead of one each. For work that
    commits many rows in a row, like the sweeper expiring a batch of chats."""
    return _pushes.collecting()


def _send_all(pending: list[tuple[str, dict]]) -> None:
    pending = _coalesced(pending)
    try:
        if relays_through_database():
            from portal.models import RealtimeOutbox

            RealtimeOutbox.objects.bulk_create([RealtimeOutbox(group=group, event=event) for group, event in pending])
            return
        layer = get_channel_layer()
        if layer is None:
            return

        async_to_sync(_deliver)(layer, pending)
    except Exception:  # noqa: BLE001 — a push is best-effort; the browser refetches on reconnect
        log.exception("realtime push of %d events to %s failed", len(pending), ", ".join(sorted({g for g, _ in pending})))


# --- fewer frames: events merged per group and flush ---------------------------------------------

_merges: dict[str, Callable[[list[dict]], dict]] = {}


def coalesce(kind: str, merge: Callable[[list[dict]], dict]) -> None:
    """Events of `kind` sent to one group in one flush reach it as `merge(those events)`, in the
    place of the last of them. A single one is sent as it is."""
    _merges[kind] = merge


def _coalesced(pending: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    if not _merges:
        return pending
    buckets: dict[tuple[str, str], list[int]] = {}
    for index, (group, event) in enumerate(pending):
        if event.get("type") in _merges:
            buckets.setdefault((group, event["type"]), []).append(index)
    if all(len(indexes) < 2 for indexes in buckets.values()):
        return pending
    merged_at: dict[int, dict] = {}
    dropped: set[int] = set()
    for (group, kind), indexes in buckets.items():
        if len(indexes) < 2:
            continue
        merged_at[indexes[-1]] = as_json(_merges[kind]([pending[i][1] for i in indexes]))
        dropped.update(indexes[:-1])
    return [
        (group, merged_at.get(index, event)) for index, (group, event) in enumerate(pending) if index not in dropped
    ]


# --- numbered per group, before the layer ----------------------------------------------------------

SEQ_TTL_SECONDS = 7 * 86_400
_local_seq: dict[str, int] = {}  # without Redis: this (web) process is the only one sending to the layer
_local_lock = threading.Lock()


def _seq_key(group: str) -> str:
    # The layer's prefix keeps apart portals (and test runs) sharing one Redis.
    prefix = settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {}).get("prefix", "asgi")
    return f"tern:push-seq:{prefix}:{group}"


def _numbered(pending: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The layer's messages for `pending`, each with its group and its number in that group.
    When the counter cannot be had (Redis away: the layer is too), unnumbered."""
    counts = Counter(group for group, _ in pending)
    try:
        last = _take_numbers(counts)
    except Exception:  # noqa: BLE001
        log.warning("realtime: push numbers unavailable; %d pushes go unnumbered", len(pending))
        return [(group, {"type": "push", "event": event}) for group, event in pending]
    following = {group: last[group] - counts[group] + 1 for group in counts}
    messages = []
    for group, event in pending:
        messages.append((group, {"type": "push", "event": event, "group": group, "n": following[group]}))
        following[group] += 1
    return messages


def _take_numbers(counts: Counter) -> dict[str, int]:
    """Reserve counts[group] numbers in each group; the last one reserved in each."""
    if not counts:
        return {}
    if settings.REDIS_URL:
        pipe = shared_redis.client().pipeline(transaction=False)
        for group, count in counts.items():
            pipe.incrby(_seq_key(group), count)
            pipe.expire(_seq_key(group), SEQ_TTL_SECONDS)
        answers = pipe.execute()
        return {group: int(answers[2 * i]) for i, group in enumerate(counts)}
    with _local_lock:
        for group, count in counts.items():
            _local_seq[group] = _local_seq.get(group, 0) + count
        return {group: _local_seq[group] for group in counts}


def _positions(groups: list[str]) -> dict[str, int]:
    if not groups:
        return {}
    if settings.REDIS_URL:
        values = shared_redis.client().mget([_seq_key(group) for group in groups])
        return {group: int(value or 0) for group, value in zip(groups, values)}
    with _local_lock:
        return {group: _local_seq.get(group, 0) for group in groups}


async def positions(groups: list[str]) -> dict[str, int] | None:
    """The last number given out in each of `groups` (0: none yet); None when the counter
    cannot be read. For a consumer: its baseline after joining, and its check for pushes lost."""
    try:
        return await sync_to_async(_positions, thread_sensitive=False)(list(groups))
    except Exception:  # noqa: BLE001
        log.warning("realtime: push numbers unavailable for %s", ", ".join(groups))
        return None


async def _deliver(layer, pending: list[tuple[str, dict]]) -> None:
    """To the layer, numbered: only to groups somebody listens to (a group nobody listens to
    needs neither a number nor a send)."""
    live = await _groups_listened_to(layer, {group for group, _ in pending})
    heard = [(group, event) for group, event in pending if live is None or group in live]
    if settings.REDIS_URL:
        numbered = await sync_to_async(_numbered, thread_sensitive=False)(heard)
    else:
        numbered = _numbered(heard)  # the process's own counters: no I/O
        _forget_unheard(layer)
    for group, message in numbered:
        await layer.group_send(group, message)


LOCAL_SEQ_KEPT = 10_000


def _forget_unheard(layer) -> None:
    """The process's counters of groups nobody listens to any more (chats long closed) are
    dropped once there are many: a socket that joins again takes its baseline after joining."""
    if len(_local_seq) <= LOCAL_SEQ_KEPT or not isinstance(layer, InMemoryChannelLayer):
        return
    with _local_lock:
        for group in [g for g in _local_seq if not layer.groups.get(g)]:
            del _local_seq[group]


async def _groups_listened_to(layer, groups: set[str]) -> set[str] | None:
    """Of `groups`, those with a live member. On the Redis channel layer one pipelined round
    trip per Redis host, where `group_send` takes two per event even when nobody listens (the
    own group of a chat nobody has open, most of a sweeper batch's); the in-memory layer's own
    table. None for other layers: send every event."""
    if isinstance(layer, InMemoryChannelLayer):
        return {group for group in groups if layer.groups.get(group)}
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:  # pragma: no cover — installed with the project
        return None
    if not isinstance(layer, RedisChannelLayer):
        return None
    by_host: dict[int, list[str]] = {}
    for group in groups:
        by_host.setdefault(layer.consistent_hash(group), []).append(group)
    oldest = int(time.time()) - layer.group_expiry  # as group_send counts members
    live: set[str] = set()
    for index, names in by_host.items():
        pipe = layer.connection(index).pipeline(transaction=False)
        for name in names:
            pipe.zcount(layer._group_key(name), oldest, "+inf")
        counts = await pipe.execute()
        live.update(name for name, count in zip(names, counts) if count)
    return live


_relay_task: asyncio.Task | None = None


def ensure_relay() -> None:
    """Start the outbox relay in this (web) process's event loop, once. No-op with Redis."""
    global _relay_task
    if settings.REDIS_URL:
        return
    if _relay_task is not None and not _relay_task.done():
        return
    _relay_task = asyncio.get_running_loop().create_task(_relay_forever())


async def _relay_forever() -> None:
    layer = get_channel_layer()
    while True:
        try:
            rows = await sync_to_async(_take_outbox)()
            if rows:
                await _deliver(layer, _coalesced(rows))
        except Exception:  # noqa: BLE001
            log.exception("realtime relay failed; retrying")
        await asyncio.sleep(RELAY_INTERVAL_SECONDS)


def _take_outbox() -> list[tuple[str, dict]]:
    from portal.models import RealtimeOutbox

    with transaction.atomic():
        rows = list(RealtimeOutbox.objects.order_by("pk")[:RELAY_BATCH])
        if rows:
            RealtimeOutbox.objects.filter(pk__lte=rows[-1].pk).delete()
    return [(row.group, row.event) for row in rows]


_pushes = AfterCommitBatch("tern_realtime_batch", _send_all)
