"""/ws/agent/: pushes an agent's events to the adapter. Refuses anonymous users and non-agents
before accepting; keeps presence; never takes actions (those go through the REST API)."""
from __future__ import annotations

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chats import events
from chats.models import Call, CallStatus, Chat
from chats.serializers import masks_numbers_for, number_as_shown
from chats.assignment import agent_queue_ids, connect_adapter
from portal import realtime
from portal.models import AgentProfile
from portal.presence import agent_disconnected, touch_agent
from portal.realtime import ensure_relay

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_AN_AGENT = 4403
VERSIONS_KEPT = 2000  # chats whose last version a connection remembers, newest first
# Pushes are numbered per group before the channel layer (portal.realtime). One missing this long
# after a later one arrived (two senders' pushes may cross), or after the group's counter showed
# it was sent, was dropped by the layer: the page is told to reload ("stream.gap").
GAP_GRACE_SECONDS = 2.0
GAP_AT_ONCE = 200  # a jump this large is a gap at once, without waiting for the missing ones


class AgentConsumer(AsyncJsonWebsocketConsumer):
    agent_id: int | None = None

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        agent = await database_sync_to_async(AgentProfile.objects.filter(user=user).first)()
        if agent is None:
            await self.close(code=CLOSE_NOT_AN_AGENT)
            return
        self.agent_id = agent.pk
        self.mask_numbers = await database_sync_to_async(masks_numbers_for)(user)
        self.seq = 0
        self.groups_joined: set[str] = set()
        # chat.<id> groups of the SMS side of the agent's calls (SPEC B1, B2): joined and left by
        # call.updated, not by the chat's own events (that chat has no agent of its own).
        self.call_chat_groups: set[str] = set(await database_sync_to_async(_call_chat_groups)(agent))
        # The last version heard of each chat, for chat.updated and for queue.chat.
        self.chat_versions: dict[int, int] = {}
        self.queue_versions: dict[int, int] = {}
        # Per group: the last push number heard, and the numbers still missing below it.
        self.heard: dict[str, int] = {}
        self.missing: dict[str, set[int]] = {}
        self.gap_check: asyncio.TimerHandle | None = None
        for group in [*await database_sync_to_async(_initial_groups)(agent), *self.call_chat_groups]:
            await self._join(group, baseline=False)
        await self._baseline(list(self.groups_joined))
        await self.accept()
        await database_sync_to_async(connect_adapter)(agent=agent)
        ensure_relay()
        await self._send_event({"type": "hello", "agent_id": agent.pk})

    async def __call__(self, scope, receive, send):
        """A consumer whose channel layer fails (Redis stopped) ends with that error and never
        hears its socket's disconnect: the connection is counted off here all the same."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._count_off()

    async def _count_off(self):
        if getattr(self, "agent_id", None) is None or getattr(self, "counted_off", False):
            return
        self.counted_off = True
        await database_sync_to_async(_mark_disconnected)(self.agent_id)

    async def disconnect(self, code):
        """The connection is counted off first, whatever the channel layer does: with Redis away,
        leaving the groups raises, and an agent still counted connected would be sent chats."""
        if self.agent_id is None:
            return
        if getattr(self, "gap_check", None) is not None:
            self.gap_check.cancel()
        try:
            await self._count_off()
        finally:
            for group in list(getattr(self, "groups_joined", ())):
                try:
                    await self.channel_layer.group_discard(group, self.channel_name)
                except Exception:  # noqa: BLE001 — the layer forgets the channel when it expires
                    log.warning("agent %s: leaving %s failed (channel layer unreachable)", self.agent_id, group)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """The browser only pings. A malformed frame is ignored rather than crashing the
        connection (a crash skips disconnect(), leaving the connection counted)."""
        if not text_data:
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            log.info("agent %s sent a frame that is not JSON: ignored", self.agent_id)
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await database_sync_to_async(touch_agent)(agent_id=self.agent_id)
            await self.send_json({"type": "pong"})
            await self._check_positions()

    async def dispatch(self, message):
        """Pushes go straight to `push()`. channels runs its connection clean-up before every
        handler on the one thread shared by every socket of the process; behind it, with many
        agents, pushes queued up until the channel layer dropped them (bench/push_latency.py).
        `push()` needs no database connection of its own."""
        if message.get("type") == "push":
            await self.push(message)
            return
        await super().dispatch(message)

    async def push(self, message):
        self._note(message.get("group"), message.get("n"))
        event = message["event"]
        kind = event.get("type")
        if kind == "chat.updated":
            chat = event.get("chat") or {}
            # Heard through another of its groups already (chat.<id> and agent.<id>), or older
            # than what was heard: two requests' after-commit pushes arrive in any order.
            if not _newer(self.chat_versions, chat.get("id"), chat.get("version")):
                return
            mine = chat.get("agent_id") == self.agent_id
            was_mine = event.get("previous_agent_id") == self.agent_id
            if chat.get("agent_id") and not mine and not was_mine:
                return  # another agent's chat is never shown here
            group = events.chat_group(chat["id"])
            if mine and chat.get("status") == "assigned":
                await self._join(group)
            elif group in self.groups_joined and group not in self.call_chat_groups:
                await self._leave(group)
        elif kind == "queue.chat":
            if not _newer(self.queue_versions, event.get("chat_id"), event.get("version")):
                return
        elif kind == "queue.chats":  # several of one flush, merged (chats.events)
            chats = [c for c in event.get("chats") or [] if _newer(self.queue_versions, c.get("chat_id"), c.get("version"))]
            if not chats:
                return
            event = {**event, "chats": chats}
        elif kind == "call.updated":
            await self._follow_call_chat(event.get("call") or {})
        await self._send_event(self._masked(event))

    def _masked(self, event: dict) -> dict:
        """Chat events carry the full consumer number; agents see it masked (SPEC C1) unless the
        setting is off or they hold the permission, exactly as the REST answers do."""
        if not self.mask_numbers:
            return event
        chat = event.get("chat")
        if isinstance(chat, dict) and chat.get("consumer_number"):
            event = {**event, "chat": {**chat, "consumer_number": number_as_shown(chat["consumer_number"], True)}}
        call = event.get("call")  # call.updated, call.banner (SPEC B1)
        if isinstance(call, dict) and call.get("caller_number"):
            event = {**event, "call": {**call, "caller_number": number_as_shown(call["caller_number"], True)}}
        return event

    async def _follow_call_chat(self, call: dict):
        """While a call is this agent's, its SMS side's messages and delivery statuses
        (message.created, message.status on chat.<id>) reach this page too."""
        mine = call.get("agent_id") == self.agent_id and call.get("status") == CallStatus.ASSIGNED
        group = events.chat_group(call["sms_chat_id"]) if call.get("sms_chat_id") else None
        if mine and group:
            self.call_chat_groups.add(group)
            await self._join(group)
        elif not mine and group in self.call_chat_groups:
            self.call_chat_groups.discard(group)
            if group in self.groups_joined:
                await self._leave(group)

    async def _join(self, group: str, *, baseline: bool = True):
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)
            if baseline:
                await self._baseline([group])

    async def _leave(self, group: str):
        await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.discard(group)
        self.heard.pop(group, None)
        self.missing.pop(group, None)

    # --- pushes lost by the layer -------------------------------------------------------------

    async def _baseline(self, groups: list[str]):
        """After joining: what was numbered so far in each group is not owed to this socket."""
        for group, position in ((await realtime.positions(groups)) or {}).items():
            self.heard[group] = max(self.heard.get(group, 0), position)

    def _note(self, group, n):
        if not isinstance(n, int) or group not in self.heard:
            return
        last = self.heard[group]
        if n <= last:
            missing = self.missing.get(group)
            if missing:
                missing.discard(n)
            return
        self.heard[group] = n
        if n > last + 1:
            self._owed(group, range(last + 1, n))

    def _owed(self, group: str, numbers: range):
        if len(numbers) >= GAP_AT_ONCE:
            self._gap_found()
            return
        self.missing.setdefault(group, set()).update(numbers)
        if self.gap_check is None:
            self.gap_check = asyncio.get_running_loop().call_later(GAP_GRACE_SECONDS, self._check_gaps)

    def _check_gaps(self):
        self.gap_check = None
        if any(self.missing.values()):
            self._gap_found()

    def _gap_found(self):
        self.missing.clear()
        asyncio.ensure_future(self._send_event({"type": "stream.gap"}))

    async def _check_positions(self):
        """On each ping: pushes numbered in a group after the last one heard, and never heard,
        are owed (a loss at the end of a burst has no later push to reveal it)."""
        positions = await realtime.positions(list(self.heard))
        for group, position in (positions or {}).items():
            last = self.heard.get(group)
            if last is not None and position > last:
                self.heard[group] = position
                self._owed(group, range(last + 1, position + 1))

    async def _send_event(self, event: dict):
        self.seq += 1
        await self.send_json({**event, "seq": self.seq})


def _initial_groups(agent: AgentProfile) -> list[str]:
    groups = [events.agent_group(agent.pk)]
    groups += [events.queue_group(queue_id) for queue_id in agent_queue_ids(agent)]
    groups += [events.chat_group(pk) for pk in Chat.objects.held_by(agent).values_list("pk", flat=True)]
    return groups


def _call_chat_groups(agent: AgentProfile) -> list[str]:
    chat_ids = Call.objects.filter(agent=agent, status=CallStatus.ASSIGNED, chat__isnull=False).values_list("chat_id", flat=True)
    return [events.chat_group(pk) for pk in chat_ids]


def _newer(seen: dict[int, int], chat_id, version) -> bool:
    """Whether an event of `version` about `chat_id` is newer than the last one `seen` (and, if so,
    remember it). Forgets the longest-unheard chats beyond VERSIONS_KEPT."""
    if not isinstance(version, int):
        return True
    if seen.get(chat_id, -1) >= version:
        return False
    seen.pop(chat_id, None)
    seen[chat_id] = version
    if len(seen) > VERSIONS_KEPT:
        del seen[next(iter(seen))]
    return True


def _mark_disconnected(agent_id: int) -> None:
    agent = AgentProfile.objects.filter(pk=agent_id).first()
    if agent is not None:
        agent_disconnected(agent=agent)
