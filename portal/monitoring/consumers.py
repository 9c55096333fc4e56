"""/ws/monitor/: the supervisors' live monitor (SPEC M1–M3). Refuses anyone without
portal.view_monitoring before accepting. Joins group `supervisors`, where the chats', calls' and
agents' events arrive, and tells the page what changed — coalesced: whatever arrives within
FLUSH_SECONDS leaves as one `monitor.changed` frame (the chat, agent and queue ids touched and
how many events), so a burst of a thousand events is a handful of frames, not a thousand. The
page then reads the figures again (portal.monitoring.views), which makes it right whatever order
the events came in. A chat page asks to `watch` its chat: the chat's messages count as changes.

Lost pushes: the group's push counter (portal.realtime) is checked at each ping; a number never
heard makes a frame with `resync`, and the page reads everything again, as after a reconnect.

A watch is answered `watching` once the chat's group is joined; the chat page reads the transcript
and says "Live" only then, so a message sent between the page's read and the join is not missed."""
from __future__ import annotations

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal import realtime
from portal.realtime import SUPERVISORS, ensure_relay
from portal.roles import can_monitor

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_A_SUPERVISOR = 4403
FLUSH_SECONDS = 0.3  # at most about three frames a second per supervisor


class SupervisorConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: set[str] = set()

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(can_monitor)(user):
            await self.close(code=CLOSE_NOT_A_SUPERVISOR)
            return
        self.groups_joined = set()
        self.watched: str | None = None
        self._reset()
        self.flush_handle: asyncio.TimerHandle | None = None
        await self._join(SUPERVISORS)
        await self.accept()
        ensure_relay()
        await self.send_json({"type": "hello"})

    def _reset(self):
        self.changed = {"chat_ids": set(), "agent_ids": set(), "queue_ids": set()}
        self.events = 0
        self.resync = False

    async def _join(self, group: str):
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)
        positions = await realtime.positions([group]) or {}
        self.heard = {**getattr(self, "heard", {}), group: positions.get(group, 0)}

    async def _leave(self, group: str):
        await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.discard(group)
        self.heard.pop(group, None)

    async def disconnect(self, code):
        if getattr(self, "flush_handle", None) is not None:
            self.flush_handle.cancel()
        for group in list(self.groups_joined):
            try:
                await self._leave(group)
            except Exception:  # noqa: BLE001 — the layer forgets the channel when it expires
                log.warning("supervisor socket: leaving %s failed (channel layer unreachable)", group)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data or "")
        except ValueError:
            return  # a malformed frame is ignored, the connection kept
        if isinstance(content, dict):
            await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
            await self._check_positions()
        elif kind == "watch":
            await self._watch(content.get("chat_id"))

    async def _watch(self, chat_id):
        """One chat's transcript at a time: its messages and their statuses count as changes."""
        group = f"chat.{chat_id}" if isinstance(chat_id, int) else None
        if self.watched and self.watched != group:
            await self._leave(self.watched)
        self.watched = group
        if group and group not in self.groups_joined:
            await self._join(group)
        # Only now may the page read the transcript: a message committed after this reaches the
        # group, and one before it is in the read. Reading earlier leaves a gap nobody hears.
        await self.send_json({"type": "watching", "chat_id": chat_id if group else None})

    async def dispatch(self, message):
        if message.get("type") == "push":
            self._heard(message.get("group"), message.get("n"))
            self._note(message.get("event") or {})
            return
        await super().dispatch(message)

    def _heard(self, group, n):
        if isinstance(n, int) and group in self.heard:
            if n > self.heard[group] + 1:
                self.resync = True  # one or more pushes in between never came
            self.heard[group] = max(self.heard[group], n)

    def _note(self, event: dict):
        kind = event.get("type")
        changed = self.changed
        if kind == "chat.updated":
            chat = event.get("chat") or {}
            changed["chat_ids"].add(chat.get("id"))
            changed["queue_ids"].add(chat.get("queue_id"))
            changed["agent_ids"].update([chat.get("agent_id"), event.get("previous_agent_id")])
        elif kind in ("message.created", "message.status"):
            changed["chat_ids"].add((event.get("message") or {}).get("chat_id") or event.get("chat_id"))
        elif kind == "call.updated":
            call = event.get("call") or {}
            changed["queue_ids"].add(call.get("queue_id"))
            changed["agent_ids"].add(call.get("agent_id"))
        elif kind == "agent.updated":
            changed["agent_ids"].update(event.get("agent_ids") or [])
        self.events += 1
        self._schedule()

    def _schedule(self):
        if self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(
                FLUSH_SECONDS, lambda: asyncio.ensure_future(self._flush())
            )

    async def _flush(self):
        self.flush_handle = None
        if not self.events and not self.resync:
            return
        frame = {"type": "monitor.changed", "events": self.events, "resync": self.resync}
        frame.update({key: sorted(i for i in ids if isinstance(i, int)) for key, ids in self.changed.items()})
        self._reset()
        await self.send_json(frame)

    async def _check_positions(self):
        positions = await realtime.positions(list(self.heard)) or {}
        for group, position in positions.items():
            if position > self.heard.get(group, position):
                self.heard[group] = position
                self.resync = True
        if self.resync:
            self._schedule()
