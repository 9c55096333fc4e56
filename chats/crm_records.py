"""A chat's CRM record (SPEC S12): opened when an agent takes the chat, the transcript posted when
it ends, the contact chosen when several share the number."""
from __future__ import annotations

import logging

from django.db import transaction

from chats.models import (
    Chat,
)
from chats import transcript
from chats.states import save_and_announce
from portal import crm

log = logging.getLogger(__name__)


def open_crm_record(chat: Chat) -> None:
    if chat.crm_record_id:
        return
    record = crm.open_record(
        reference=f"chat:{chat.pk}",
        number=chat.consumer_number,
        language=chat.language,
        queue_name=chat.queue.name if chat.queue else "",
    )
    chat.crm_record = record
    chat.crm_needs_choice = record.needs_contact_choice
    chat.save(update_fields=["crm_record", "crm_needs_choice"])


def close_crm_record(chat: Chat) -> None:
    if not chat.crm_record_id:
        return
    record = chat.crm_record
    crm.add_entry(record, "chat_ended", f"Chat ended: {chat.finish_reason} by {chat.disconnected_by}")
    # The full transcript with the consumer's pictures and videos (SPEC S12).
    lines = transcript.transcript_lines(chat)
    crm.add_entry(record, "transcript", "\n".join(_transcript_line(line) for line in lines), lines=lines)


def _transcript_line(line: dict) -> str:
    attachments = " ".join(
        f"<{item['content_type']}: {item['file']}>" if item["file"] else f"<{item['content_type']}>" for item in line.get("media", [])
    )
    return " ".join(part for part in (f"[{line['author']}]", line["body"], attachments) if part)


def choose_chat_contact(*, chat: Chat, contact=None, new_name: str = "") -> None:
    """The agent picks one of several CRM contacts sharing the number, or creates a new one."""
    with transaction.atomic():
        chat = Chat.objects.select_for_update(of=("self",)).select_related("portal_number", "queue").get(pk=chat.pk)
        if chat.crm_record is None:
            open_crm_record(chat)
        crm.choose_contact(record=chat.crm_record, contact=contact, new_name=new_name)
        chat.crm_needs_choice = False
        save_and_announce(chat, ["crm_needs_choice"])
