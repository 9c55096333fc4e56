"""The real channel layer in tests: a fresh one per test, and what reached chosen groups."""
from __future__ import annotations

import asyncio
import copy
import secrets

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer


def fresh_channel_layer(settings):
    """A layer of the test's own (the `settings` fixture puts the old one back). On Redis with a
    prefix of its own: other suites sharing the server publish to the same group names
    (agent.1, queue.2 …), and must never reach this test."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if settings.REDIS_URL:
        layers["default"]["CONFIG"]["prefix"] = f"tern-test-{secrets.token_hex(6)}"
    settings.CHANNEL_LAYERS = layers
    return get_channel_layer()


class GroupListener:
    """A channel in each of `groups`, as a browser's connection would be; `heard()` gives what
    reached each, in order, once nothing more comes for `quiet` seconds."""

    def __init__(self, layer, groups):
        self.layer = layer
        self.channels: dict[str, str] = async_to_sync(self._listen)(list(groups))

    async def _listen(self, groups: list[str]) -> dict[str, str]:
        channels = {}
        for group in groups:
            channels[group] = await self.layer.new_channel()
            await self.layer.group_add(group, channels[group])
        return channels

    def heard(self, quiet: float = 0.3) -> dict[str, list[dict]]:
        async def drain():
            heard = {}
            for group, channel in self.channels.items():
                heard[group] = events = []
                while True:
                    try:
                        message = await asyncio.wait_for(self.layer.receive(channel), quiet)
                    except (asyncio.TimeoutError, TimeoutError):
                        break
                    events.append(message["event"])
            return heard

        return async_to_sync(drain)()


def queue_changes(events: list[dict]) -> list[dict]:
    """The queue.chat events among `events`, with the queue.chats of a flush (several merged,
    chats.events.merge_queue_chats) unfolded into theirs, in order."""
    changes = []
    for event in events:
        if event.get("type") == "queue.chat":
            changes.append(event)
        elif event.get("type") == "queue.chats":
            changes.extend({"type": "queue.chat", **chat} for chat in event["chats"])
    return changes


# --- one exchange on one event loop (channels_redis binds a channel's buffer to the loop that
# first reads it): before and after a commit ---------------------------------------------------


async def listen_on(layer, group: str) -> str:
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def next_message(layer, channel: str, timeout: float = 1.0):
    """The next message on the channel, or None after `timeout` seconds."""
    try:
        return await asyncio.wait_for(layer.receive(channel), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        return None


def commit(layer, callbacks, *, group: str, timeout: float = 1.0) -> tuple[object, object]:
    """Listen on `group`, look once before the commit, run the captured after-commit callbacks as
    the commit would, and look again: (what arrived before, what arrived after). One event loop
    for the whole exchange, as channels_redis wants."""

    async def exchange():
        channel = await listen_on(layer, group)
        before = await next_message(layer, channel, timeout=0.2)
        for callback in callbacks:
            await sync_to_async(callback)()
        return before, await next_message(layer, channel, timeout)

    return async_to_sync(exchange)()
