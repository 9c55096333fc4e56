"""Everything the agent's browser hears (DESIGN rule 7), published after commit.

Groups: agent.<id>, queue.<id>, chat.<id>, supervisors. Each event is a JSON-able dict with a
`type`: chat.offered, chat.updated, queue.chat (queue.chats when several of one flush are merged),
message.created, message.status, call.updated, call.banner, call.message. chat.offered and
chat.updated carry the chat in the agent API's shape (`chat_payload`). A chat's events carry its
`version` (states.py counts it): of two events about one chat, the higher version is the newer,
whatever order they arrive in.

No stats event: the page fetches Your Stats vs Team Average after each of its chats ends and every
minute; a push would have to reach the whole team at every chat's end (the team average moves)."""
from __future__ import annotations

from chats.serializers import ChatSerializer
from portal import realtime
from portal.realtime import SUPERVISORS, as_json, publish_on_commit


def agent_group(agent_id: int) -> str:
    return f"agent.{agent_id}"


def queue_group(queue_id: int) -> str:
    return f"queue.{queue_id}"


def chat_group(chat_id: int) -> str:
    return f"chat.{chat_id}"



def chat_payload(chat) -> dict:
    """The chat as the agent API answers it (`chats.serializers.ChatSerializer`: the same keys, the
    same values, times in ISO 8601), with the full consumer number: each socket masks it for its
    agent (chats.consumers). Its queue's name and portal number come from the rows loaded with the
    chat, else are read once per `cached_singletons()` block (a request, a batch), not per chat."""
    return _CHAT_SHAPE.to_representation(chat)  # what ChatSerializer(chat).data holds


# One instance for every chat pushed: a serializer builds its fields from the model the first time
# it is used, some 15 times the cost of a chat's values (a sweeper batch pushes a hundred chats).
# Its fields keep no state between chats, so threads share it.
_CHAT_SHAPE = ChatSerializer()


def message_payload(message) -> dict:
    outbound = message.outbound
    return {
        "id": message.pk,
        "chat_id": message.chat_id,
        "author": message.author,
        "agent_id": message.agent_id,
        "body": message.body,
        "created_at": message.created_at,
        "outbound_id": message.outbound_id,
        "status": outbound.status if outbound is not None else None,
        "media": [{"id": m.pk, "content_type": m.content_type} for m in getattr(message, "_new_media", [])],
    }


def _groups_for(chat, previous_agent_id: int | None = None) -> set[str]:
    groups = {chat_group(chat.pk), SUPERVISORS}
    if chat.agent_id:
        groups.add(agent_group(chat.agent_id))
    if previous_agent_id and previous_agent_id != chat.agent_id:
        groups.add(agent_group(previous_agent_id))
    return groups


def chat_updated(chat, *, previous_status: str = "", previous_agent_id: int | None = None) -> None:
    """The whole chat to whoever holds or held it, its own group and supervisors; the agents of its
    queue hear only `queue.chat` (no number, no agent): enough to count what waits and to drop an
    offer someone else took, and small, since every agent of the queue hears it."""
    event = as_json(  # once for all the groups
        {
            "type": "chat.updated",
            "chat": chat_payload(chat),
            "previous_status": previous_status,
            "previous_agent_id": previous_agent_id,
        }
    )
    for group in sorted(_groups_for(chat, previous_agent_id)):
        publish_on_commit(group, event)
    if chat.queue_id and "queued" in (chat.status, previous_status):  # it joins or leaves what waits
        publish_on_commit(
            queue_group(chat.queue_id),
            {"type": "queue.chat", "chat_id": chat.pk, "queue_id": chat.queue_id, "status": chat.status, "version": chat.version},
        )


def merge_queue_chats(events: list[dict]) -> dict:
    """The queue.chat events one flush sends to a queue's group, as one `queue.chats`: each chat
    once, at its newest version. A batch of inbound texts queues many chats at once, and every
    agent of the queue would otherwise get a frame for each."""
    newest: dict[int, dict] = {}
    for event in events:
        known = newest.get(event["chat_id"])
        if known is None or (event.get("version") or 0) >= (known.get("version") or 0):
            newest[event["chat_id"]] = event
    return {
        "type": "queue.chats",
        "queue_id": events[0]["queue_id"],
        "chats": [
            {"chat_id": e["chat_id"], "queue_id": e["queue_id"], "status": e["status"], "version": e["version"]}
            for e in newest.values()
        ],
    }


realtime.coalesce("queue.chat", merge_queue_chats)


def chat_offered(chat, agent_ids: list[int]) -> None:
    event = {"type": "chat.offered", "chat": chat_payload(chat)}
    for agent_id in agent_ids:
        publish_on_commit(agent_group(agent_id), event)


def message_created(message) -> None:
    publish_on_commit(chat_group(message.chat_id), {"type": "message.created", "message": message_payload(message)})


# --- calls (SPEC B1–B3): told to the call's agent and to supervisors ------------------------------

WAIT_TIME_SMS_BANNER = "Wait Time SMS Received"


def call_payload(call) -> dict:
    return {
        "id": call.pk,
        "call_sid": call.call_sid,
        "status": call.status,
        "queue_id": call.queue_id,
        "agent_id": call.agent_id,
        "language": call.language,
        "caller_number": call.caller_number,
        "wait_time_sms_status": call.wait_time_sms_status,
        "prompt_plays": call.prompt_plays,
        "sms_chat_id": call.chat_id,
        "in_call_sms_open": call.in_call_sms_open,
        "created_at": call.created_at,
        "assigned_at": call.assigned_at,
        "ended_at": call.ended_at,
    }


def _call_groups(call) -> list[str]:
    groups = [SUPERVISORS]
    if call.agent_id:
        groups.append(agent_group(call.agent_id))
    return groups


def call_updated(call) -> None:
    event = {"type": "call.updated", "call": call_payload(call)}
    for group in _call_groups(call):
        publish_on_commit(group, event)


def call_banner(call, *, message_count: int, media_count: int = 0) -> None:
    """The caller sent texts while waiting: the agent's adapter shows the green "Wait Time SMS
    Received" banner, which opens GET /apps/api/v1/agent/calls/<id>/messages."""
    if not call.agent_id:
        return
    publish_on_commit(
        agent_group(call.agent_id),
        {
            "type": "call.banner",
            "banner": WAIT_TIME_SMS_BANNER,
            "call": call_payload(call),
            "chat_id": call.chat_id,
            "message_count": message_count,
            "media_count": media_count,
            "messages_url": f"/apps/api/v1/agent/calls/{call.pk}/messages",
        },
    )


def call_message(call, message) -> None:
    """A message on the SMS side of a call the agent is on (the caller's text, image or video, or
    what the portal sent), pushed live to the agent."""
    if not call.agent_id:
        return
    payload = message_payload(message)
    payload["media"] = [{"id": m.pk, "content_type": m.content_type} for m in message.media.all()]
    publish_on_commit(agent_group(call.agent_id), {"type": "call.message", "call_id": call.pk, "message": payload})
