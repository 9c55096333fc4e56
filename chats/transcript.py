"""A chat's transcript: what is said in it, by the consumer, an agent or the system, and the texts
the system sends through the outbound pipeline."""
from __future__ import annotations

import logging

from chats import events, held
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
    return add_entry(Message(chat=chat, author=author, body=body, agent=agent, inbound=inbound, outbound=outbound))


def add_entry(message: Message) -> Message:
    """An unsaved transcript entry saved, and pushed to the chat's page after commit."""
    held.write_first(message.chat.consumer_number)  # what a batch held goes in first
    message.save(force_insert=True)
    events.message_created(message)
    return message


def send_text(
    *, chat: Chat, body: str, author: str = Author.SYSTEM, agent: AgentProfile | None = None, kind: str = "system",
    proactive: bool = False, media_urls: list[str] | None = None, ignore_do_not_contact: bool = False,
) -> Message | None:
    """Text the consumer through the outbound pipeline and keep it in the transcript. An empty
    body sends nothing (a system message an admin left blank). `ignore_do_not_contact`: the one
    confirmation of an opt-out."""
    if not body and not media_urls:
        return None
    held.write_first(chat.consumer_number)  # a reply a batch held goes out first
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
    its replies). Inside a batch of inbound texts (`held.holding()`), they are held and go
    through the pipeline and in with the batch's others (chats.held). Returns the system texts'
    entries (unsaved while held)."""
    texts = [(chat, body) for chat, body in texts if body]
    entries = list(entries_before)
    if not texts and not entries:
        return []
    requests = [
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
    replies = [Message(chat=chat, author=Author.SYSTEM, body=body) for chat, body in texts]
    if held.holding():
        held.hold_replies(entries, replies, requests)
        return replies
    for reply, outbound in zip(replies, queue_sms_many(requests) if requests else []):
        reply.outbound = outbound
    messages = Message.objects.bulk_create(entries + replies)
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
