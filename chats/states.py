"""The one transition table of chat status (DESIGN rule 2). Nothing else assigns chat.status."""
from __future__ import annotations

from django.utils import timezone

from chats.models import Chat, ChatEvent, ChatStatus

ALLOWED = {
    ChatStatus.SELECTING: {ChatStatus.QUEUED, ChatStatus.ASSIGNED, ChatStatus.FINISHED},
    ChatStatus.QUEUED: {ChatStatus.ASSIGNED, ChatStatus.FINISHED},
    ChatStatus.ASSIGNED: {ChatStatus.QUEUED, ChatStatus.DISMISSED, ChatStatus.FINISHED},
    ChatStatus.DISMISSED: {ChatStatus.QUEUED, ChatStatus.FINISHED},
    ChatStatus.FINISHED: set(),
}
# selecting → assigned is an agent's outbound chat, or an API chat whose reply lands with an agent.

STAMPS = {
    ChatStatus.QUEUED: "queued_at",
    ChatStatus.ASSIGNED: "assigned_at",
    ChatStatus.DISMISSED: "dismissed_at",
    ChatStatus.FINISHED: "ends_at",
}


class TransitionNotAllowed(Exception):
    def __init__(self, chat: Chat, new_status: str):
        super().__init__(f"Chat {chat.pk} cannot go from {chat.status} to {new_status}.")
        self.chat = chat
        self.new_status = new_status


def can_transition(chat: Chat, new_status: str) -> bool:
    return new_status in ALLOWED.get(chat.status, set())


def transition(chat: Chat, new_status: str, *, by: str = "system", extra_fields: tuple[str, ...] = (), **data) -> None:
    """Move the chat, stamp the time, write a ChatEvent, recompute its deadline and schedule the
    broadcast. The caller holds the chat's row lock inside a transaction."""
    from chats import events, timers

    if not can_transition(chat, new_status):
        raise TransitionNotAllowed(chat, new_status)
    old = chat.status
    chat.status = new_status
    now = timezone.now()
    fields = {"status", *extra_fields}
    stamp = STAMPS.get(new_status)
    if stamp:
        setattr(chat, stamp, now)
        fields.add(stamp)
    fields |= timers.recompute_deadline(chat, now=now)
    chat.save(update_fields=sorted(fields))
    ChatEvent.objects.create(chat=chat, kind=f"status.{new_status}", by=by, data={"from": old, **data})
    events.chat_updated(chat, previous_status=old)
