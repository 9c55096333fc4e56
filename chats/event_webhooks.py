"""Chat lifecycle events for the event webhooks (SPEC A5): every ChatEvent the chat's audit
trail records — written by states.transition and the services — that a subscriber can follow
is handed to portal.event_webhooks, which sends it after commit. Connected in ChatsConfig.ready."""
from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from chats.models import CHAT_SUBTYPES, Chat, ChatEvent, ChatEventKind
from portal import event_webhooks
from portal.models import WebhookEvent

# ChatEvent.kind → webhook event type.
WEBHOOK_EVENTS = {
    ChatEventKind.CREATED: WebhookEvent.CHAT_CREATED,
    ChatEventKind.ASSIGNED: WebhookEvent.CHAT_ASSIGNED,
    ChatEventKind.TRANSFER_ENDED: WebhookEvent.CHAT_TRANSFERRED,
    ChatEventKind.FINISHED: WebhookEvent.CHAT_FINISHED,
}


def chat_data(chat: Chat) -> dict:
    """The chat as a webhook shows it: the Chats resource's names (GET /apps/api/v1/chats/{id}
    has the rest)."""
    return {
        "id": chat.pk,
        "status": chat.status,
        "chat_type": "SMS",
        "chat_subtype": CHAT_SUBTYPES.get(chat.chat_type, "inbound"),
        "start_type": chat.start_type or None,
        "lang": chat.language,
        "queue_id": chat.queue_id,
        "agent_id": chat.agent_id,
        "end_user_number": chat.consumer_number,
        "outbound_number": chat.portal_number.number if chat.portal_number_id else None,
        "created_at": chat.created_at,
        "queued_at": chat.queued_at,
        "assigned_at": chat.assigned_at,
        "ends_at": chat.ends_at,
        "finish_reason": chat.finish_reason or None,
        "disconnected_by": chat.disconnected_by or None,
    }


@receiver(post_save, sender=ChatEvent, dispatch_uid="tern-chat-webhooks")
def announce_chat_event(sender, instance: ChatEvent, created: bool, **kwargs) -> None:
    if created:
        announce(instance)


def announce(event: ChatEvent) -> None:
    """A new chat event, for the subscribers of its type (sent after commit): when it is saved,
    or when a batch holds it to insert with its others (chats.held)."""
    event_type = WEBHOOK_EVENTS.get(event.kind)
    if event_type is not None:
        event_webhooks.emit(event_type, {"chat": chat_data(event.chat), "by": event.by, "detail": event.data})
