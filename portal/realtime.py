"""The one publish-on-commit helper (DESIGN rule 7): a group and a JSON-able event, sent to the
channel layer after the transaction commits. A failed push never fails the caller.

On the embedded default (no REDIS_URL) the channel layer lives in the web process's memory, so
the task cluster and the sweeper (TERN_PROCESS_ROLE=tasks|sweeper, set by `serve`) write their
events to RealtimeOutbox instead, and the web process relays them (`ensure_relay`)."""
import asyncio
import json
import logging
import os
import time

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

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
    try:
        if len(pending) == 1 and not relays_through_database():
            group, event = pending[0]
            layer = get_channel_layer()
            if layer is not None:
                async_to_sync(layer.group_send)(group, {"type": "push", "event": event})
            return
        if relays_through_database():
            from portal.models import RealtimeOutbox

            RealtimeOutbox.objects.bulk_create([RealtimeOutbox(group=group, event=event) for group, event in pending])
            return
        layer = get_channel_layer()
        if layer is None:
            return

        async def send():
            live = await _groups_listened_to(layer, {group for group, _ in pending})
            for group, event in pending:
                if live is None or group in live:
                    await layer.group_send(group, {"type": "push", "event": event})

        async_to_sync(send)()
    except Exception:  # noqa: BLE001 — a push is best-effort; the browser refetches on reconnect
        log.exception("realtime push of %d events to %s failed", len(pending), ", ".join(sorted({g for g, _ in pending})))


async def _groups_listened_to(layer, groups: set[str]) -> set[str] | None:
    """Of `groups`, those with a live member, on the Redis channel layer: one pipelined round
    trip per Redis host, where `group_send` takes two per event even when nobody listens (the
    own group of a chat nobody has open, most of a sweeper batch's). None for other layers:
    send every event."""
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
            for group, event in rows:
                await layer.group_send(group, {"type": "push", "event": event})
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
