"""A chat's transcript: what is said in it, by the consumer, an agent or the system, and the texts
the system sends through the outbound pipeline."""
from __future__ import annotations

import contextlib
import contextvars
import logging

from chats import events
from chats.models import (
    Author,
    Chat,
    Message,
)
from portal.models import AgentProfile, ChatSettings
from queues.models import queue_text
from sms.pipeline import SendRefused, queue_sms, queue_sms_many

log = logging.getLogger(__name__)


def add_message(
    *, chat: Chat, author: str, body: str, agent: AgentProfile | None = None, inbound=None, outbound=None
) -> Message:
    message = Message.objects.create(
        chat=chat, author=author, body=body, agent=agent, inbound=inbound, outbound=outbound
    )
    events.message_created(message)
    return message


class _Held:
    def __init__(self):
        self.messages: list[Message] = []
        self.chats: dict[int, tuple[Chat, frozenset[str]]] = {}  # chat id: the chat, its fields to save
        self.pairs: set[tuple[str, str]] = set()  # (consumer, portal number)


_held: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("held_consumer_texts", default=None)


@contextlib.contextmanager
def consumer_texts_held():
    """Inside the block, `hold_consumer_text` keeps a consumer's plain text (no reply, no step)
    for `write_held()`, which writes all of them at once: one INSERT for the transcript entries,
    one UPDATE per set of chat fields. For a batch of inbound texts (chats.intake), whose owner
    writes them before its transaction ends, and chats.flow before a held consumer's next text.
    What is not written when the block ends is dropped (the block raised)."""
    token = _held.set(_Held())
    try:
        yield
    finally:
        _held.reset(token)


def holding() -> bool:
    return _held.get() is not None


def hold_consumer_text(message: Message, fields: set[str]) -> None:
    """Keep the consumer's text `message` (unsaved) and its chat's changed `fields` until
    `write_held()`; the chat's row lock is held meanwhile, so nobody else changes it."""
    held = _held.get()
    chat = message.chat
    held.messages.append(message)
    _, earlier = held.chats.get(chat.pk, (chat, frozenset()))
    held.chats[chat.pk] = (chat, earlier | fields)
    held.pairs.add((chat.consumer_number, chat.portal_number.number))


def holds(consumer: str, portal_number: str) -> bool:
    held = _held.get()
    return held is not None and (consumer, portal_number) in held.pairs


def write_held() -> None:
    """The held consumer texts into their transcripts and their chats' fields saved, now."""
    held = _held.get()
    if held is None or not held.messages:
        return
    messages = Message.objects.bulk_create(held.messages)
    by_fields: dict[frozenset[str], list[Chat]] = {}
    for chat, fields in held.chats.values():
        by_fields.setdefault(fields, []).append(chat)
    for fields, chats in by_fields.items():
        Chat.objects.bulk_update(chats, sorted(fields))
    held.messages, held.chats, held.pairs = [], {}, set()
    for message in messages:
        events.message_created(message)


def send_text(
    *, chat: Chat, body: str, author: str = Author.SYSTEM, agent: AgentProfile | None = None, kind: str = "system",
    proactive: bool = False, media_urls: list[str] | None = None, ignore_do_not_contact: bool = False,
) -> Message | None:
    """Text the consumer through the outbound pipeline and keep it in the transcript. An empty
    body sends nothing (a system message an admin left blank). `ignore_do_not_contact`: the one
    confirmation of an opt-out."""
    if not body and not media_urls:
        return None
    outbound = queue_sms(
        to=chat.consumer_number,
        from_number=chat.portal_number.number,
        portal_number=chat.portal_number,
        body=body,
        media_urls=media_urls or [],
        kind=kind,
        proactive=proactive,
        notify_group=events.chat_group(chat.pk),
        ignore_do_not_contact=ignore_do_not_contact,
    )
    return add_message(chat=chat, author=author, body=body, agent=agent, outbound=outbound)


def send_texts(
    texts: list[tuple[Chat, str]], *, kind: str = "system", entries_before: list[Message] | tuple = ()
) -> list[Message]:
    """System texts, to several chats or several to one, in this order: through the outbound
    pipeline together (`queue_sms_many`: the same checks as `send_text`'s) and into the
    transcripts with one INSERT. An empty body sends nothing. `entries_before`: unsaved
    transcript entries that go in first with the same INSERT (a new chat's first text, ahead of
    its replies). Returns the system texts' entries."""
    texts = [(chat, body) for chat, body in texts if body]
    entries = list(entries_before)
    if not texts and not entries:
        return []
    outbound = queue_sms_many(
        [
            {
                "to": chat.consumer_number,
                "from_number": chat.portal_number.number,
                "portal_number": chat.portal_number,
                "body": body,
                "kind": kind,
                "notify_group": events.chat_group(chat.pk),
            }
            for chat, body in texts
        ]
    ) if texts else []
    messages = Message.objects.bulk_create(
        entries
        + [Message(chat=chat, author=Author.SYSTEM, body=body, outbound=sent) for (chat, body), sent in zip(texts, outbound)]
    )
    for message in messages:
        events.message_created(message)
    return messages[len(entries):]


def send_if_set(chat: Chat, body: str, *, what: str, kind: str = "system") -> bool:
    """A configured text into the chat (empty: nothing is sent). The outbound pipeline's refusal
    (opted out, the duplicate limiter) is logged, not raised. Returns whether it went."""
    if not body.strip():
        return False
    try:
        send_text(chat=chat, body=body, kind=kind)
    except SendRefused as exc:
        log.info("chat %s: %s not sent: %s", chat.pk, what, exc.message)
        return False
    return True


def system_text(chat: Chat, kind: str) -> str:
    return queue_text(chat.queue, kind, chat.language, ChatSettings.load().default_language)


def transcript_lines(chat: Chat) -> list[dict]:
    """The chat's transcript as posted to CRM records (SPEC S12, B1): each text with its time,
    author and body, and its pictures and videos (`media_id` opens them in the admin; `file` is empty for one
    that could not be fetched)."""
    lines = []
    for message in chat.messages.order_by("created_at", "pk").prefetch_related("media"):
        line = {"at": message.created_at.isoformat(), "author": message.author, "body": message.body}
        media = [
            {"content_type": item.content_type, "media_id": item.pk, "file": item.file.name}
            for item in message.media.all()
        ]
        if media:
            line["media"] = media
        lines.append(line)
    return lines
