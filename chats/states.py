"""The one transition table of chat status (DESIGN rule 2). Nothing else assigns chat.status."""
from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from chats import event_webhooks, events, held
from chats.deadlines import DeadlineFacts, recompute_deadline
from chats.models import Chat, ChatEvent, ChatEventKind, ChatStatus
from portal.models import ChatSettings

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


def save_and_announce(
    chat: Chat, fields=(), *, previous_status: str = "", previous_agent_id: int | None = None
) -> None:
    """Save `fields` of a chat with its next version and publish chat.updated after commit. Every
    chat.updated leaves through here or `transition_many`, so a browser that hears two of them (from
    two requests, whose after-commit pushes have no order) keeps the newer. The caller holds the
    chat's row lock inside a transaction, so the version it read is the row's; the row counts on
    from its own value all the same, so a copy read earlier can never set it back."""
    version = chat.version + 1
    chat.version = F("version") + 1
    chat.save(update_fields=sorted({*fields, "version"}))
    chat.version = version
    events.chat_updated(chat, previous_status=previous_status, previous_agent_id=previous_agent_id)


def _move(chat: Chat, new_status: str, *, now, **deadline_facts) -> set[str]:
    """The part of a move that is each chat's own: the status, its time stamp and the deadline
    recomputed. Returns the fields it set."""
    chat.status = new_status
    fields = {"status"}
    stamp = STAMPS.get(new_status)
    if stamp:
        setattr(chat, stamp, now)
        fields.add(stamp)
    return fields | recompute_deadline(chat, now=now, **deadline_facts)


def transition(
    chat: Chat, new_status: str, *, by: str = "system", extra_fields: tuple[str, ...] = (),
    previous_agent_id: int | None = None, **data,
) -> None:
    """Move the chat, stamp the time, write a ChatEvent, recompute its deadline and schedule the
    broadcast. The caller holds the chat's row lock inside a transaction. `previous_agent_id`:
    the agent who held the chat until now, when the move takes it from them (told too)."""
    if not can_transition(chat, new_status):
        raise TransitionNotAllowed(chat, new_status)
    old = chat.status
    fields = _move(chat, new_status, now=timezone.now()) | set(extra_fields)
    save_and_announce(chat, fields, previous_status=old, previous_agent_id=previous_agent_id)
    held.save_row(ChatEvent(chat=chat, kind=ChatEventKind.of_status(new_status), by=by, data={"from": old, **data}))


def transition_many(
    chats: list[Chat], new_status: str, *, by: str = "system", extra_fields: tuple[str, ...] = (),
    data: dict[int, dict] | None = None,
) -> None:
    """`transition` for many chats at once (the timers' sweeper expiring a batch): the same table,
    stamps, ChatEvents, deadlines and broadcasts, in an UPDATE per set of new values (the chats
    of a batch share them but for a field or two, like the finish reason) and one INSERT. `data`
    holds each chat's event data by chat id. Each ChatEvent is told to the event webhooks as a
    saved one is (`event_webhooks.announce`). The caller holds the chats' row locks inside a
    transaction; nothing is changed when one of them may not move."""
    for chat in chats:
        if not can_transition(chat, new_status):
            raise TransitionNotAllowed(chat, new_status)
    if not chats:
        return
    now = timezone.now()
    chat_settings = ChatSettings.load()
    facts = DeadlineFacts()
    fields = set(extra_fields)
    previous = {}
    for chat in chats:
        previous[chat.pk] = chat.status
        fields |= _move(chat, new_status, now=now, chat_settings=chat_settings, facts=facts)
    names = sorted(fields)
    groups: dict[tuple, list[Chat]] = {}
    for chat in chats:
        key = tuple(getattr(chat, name) for name in names)
        try:
            hash(key)
        except TypeError:  # a JSON value: that chat alone
            key = ("chat", chat.pk)
        groups.setdefault(key, []).append(chat)
    for group in groups.values():
        Chat.objects.filter(pk__in=[chat.pk for chat in group]).update(
            version=F("version") + 1, **{name: getattr(group[0], name) for name in names}
        )
    for chat in chats:
        chat.version += 1  # as the UPDATE counted it: the rows are locked and were read under the lock
    data = data or {}
    created = ChatEvent.objects.bulk_create(
        [
            ChatEvent(
                chat=chat, kind=ChatEventKind.of_status(new_status), by=by, data={"from": previous[chat.pk], **data.get(chat.pk, {})}
            )
            for chat in chats
        ]
    )
    for event in created:
        event_webhooks.announce(event)
    for chat in chats:
        events.chat_updated(chat, previous_status=previous[chat.pk])
