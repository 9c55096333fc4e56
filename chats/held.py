"""What a batch of inbound texts writes at its end (DESIGN rule 11): rows its texts made but
nobody reads before the batch commits — a consumer's plain text in a chat and the chat's last
text time, a new chat's participant, the chats' events, the system's replies (their outbound
messages and transcript entries) — inserted together, one statement per table, instead of one
each.

    with held_writes():          chats.intake, around a batch run without savepoints
        ... the texts ...        hold_message / hold_replies / hold_chat_fields / save_row
        write_held()             before the batch's transaction ends

Only one consumer's texts read or change what their texts held (their chat, its transcript,
its participants), so chats.flow writes what is held before handling a consumer's next text
of the batch (`holds`), and chats.transcript before writing to a consumer at once (a reply's
place in the transcript and in the consumer's queue of texts is its insert's order: `write_first`);
the consumer's chat row is locked meanwhile, so nobody else changes it.
A ChatEvent is told to the event webhooks when it is held, as a saved one is when saved (its
data as it is then; they send after commit). Outside the block, or outside a transaction (the
batch's after-commit work), every row is saved at once. What is still held when the block ends
is dropped (the block raised)."""
from __future__ import annotations

import contextlib
import contextvars

from django.db import connection

from chats import event_webhooks, events
from chats.models import Chat, ChatEvent, Message, Participant
from portal.bulk import update_each
from sms.pipeline import queue_sms_many


class _Held:
    def __init__(self):
        self.rows: dict[type, list] = {Participant: [], ChatEvent: [], Message: []}
        self.chats: dict[int, tuple[Chat, frozenset[str]]] = {}  # chat id: the chat, its fields to save
        self.replies: list[Message] = []  # system texts' entries, among rows[Message]: their outbound set when written
        self.requests: list[dict] = []  # their `queue_sms_many` requests, in the same order
        self.consumers: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.chats or any(self.rows.values()))


_held: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("held_writes", default=None)


@contextlib.contextmanager
def held_writes():
    token = _held.set(_Held())
    try:
        yield
    finally:
        _held.reset(token)


def _current() -> _Held | None:
    return _held.get() if connection.in_atomic_block else None


def holding() -> bool:
    return _current() is not None


def save_row(row: Participant | ChatEvent) -> None:
    """A new participant or chat event: held inside the block, saved at once outside it."""
    held = _current()
    if held is None:
        row.save()
        return
    if isinstance(row, ChatEvent):
        event_webhooks.announce(row)
    held.rows[type(row)].append(row)
    held.consumers.add(row.chat.consumer_number)


def hold_message(message: Message) -> None:
    """A consumer's text (unsaved) for the transcript; only while `holding()`."""
    held = _current()
    held.rows[Message].append(message)
    held.consumers.add(message.chat.consumer_number)


def hold_replies(entries: list[Message], replies: list[Message], requests: list[dict]) -> None:
    """Unsaved transcript entries, then the system texts' entries with their `queue_sms_many`
    requests (one each): queued and inserted with the batch's others; only while `holding()`."""
    held = _current()
    held.rows[Message].extend([*entries, *replies])
    held.replies.extend(replies)
    held.requests.extend(requests)
    held.consumers.update(message.chat.consumer_number for message in [*entries, *replies])


def hold_chat_fields(chat: Chat, fields: set[str]) -> None:
    """The chat's `fields` (set on it) to save; only while `holding()`."""
    held = _current()
    _, earlier = held.chats.get(chat.pk, (chat, frozenset()))
    held.chats[chat.pk] = (chat, earlier | fields)
    held.consumers.add(chat.consumer_number)


def holds(consumer: str) -> bool:
    held = _held.get()
    return held is not None and consumer in held.consumers


def write_first(consumer: str) -> None:
    """Before something of this consumer is written at once: what their texts held."""
    if holds(consumer):
        write_held()


def write_held() -> None:
    """What is held, written now: the replies through the outbound pipeline together (its
    checks, one INSERT of messages), then one INSERT per table, one UPDATE per set of chat
    fields."""
    held = _held.get()
    if not held:
        return
    rows, chats = held.rows, held.chats
    _held.set(_Held())
    if held.requests:
        for reply, outbound in zip(held.replies, queue_sms_many(held.requests)):
            reply.outbound = outbound
    Participant.objects.bulk_create(rows[Participant])
    ChatEvent.objects.bulk_create(rows[ChatEvent])
    messages = Message.objects.bulk_create(rows[Message])
    by_fields: dict[frozenset[str], list[Chat]] = {}
    for chat, fields in chats.values():
        by_fields.setdefault(fields, []).append(chat)
    for fields, group in by_fields.items():
        update_each(Chat, group, sorted(fields))
    for message in messages:
        events.message_created(message)
