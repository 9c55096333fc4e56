"""Shapes of chats and messages for the agent adapter: its REST answers and its websocket's
events (chats.events) use the same ones. The public API's Chats resource has its own
(chats/public_serializers.py, SPEC A3)."""
from rest_framework import serializers

from chats.models import Chat, Media, Message
from portal.models import AgentProfile, ChatSettings
from portal.singletons import cached
from sms.numbers import mask_number


def masks_numbers_for(user, mask_setting: bool | None = None) -> bool:
    """The masking rule (SPEC C1), written once: a consumer's number is shown masked unless the
    chat setting is off (`mask_setting`, read from the settings when not given) or the user holds
    the permission to see full numbers."""
    if mask_setting is None:
        mask_setting = ChatSettings.load().mask_consumer_numbers
    return bool(mask_setting) and not user.has_perm("portal.view_full_numbers")


def number_as_shown(number: str, masked: bool) -> str:
    return mask_number(number) if masked and number else number


def consumer_number_for(agent_user, number: str, mask: bool) -> str:
    return number_as_shown(number, masks_numbers_for(agent_user, mask))


class MediaSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    kind = serializers.CharField(read_only=True)

    class Meta:
        model = Media
        fields = ["id", "content_type", "kind", "size", "url", "error"]

    def get_url(self, media):
        return f"/agent/media/{media.pk}/" if media.file else None


class MessageSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()
    error_code = serializers.SerializerMethodField()
    error_message = serializers.SerializerMethodField()
    agent_name = serializers.SerializerMethodField()
    media = MediaSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id", "chat_id", "author", "agent_id", "agent_name", "body", "created_at", "read_at",
            "outbound_id", "status", "error_code", "error_message", "media",
        ]

    def get_status(self, message):
        return message.outbound.status if message.outbound_id else None

    def get_error_code(self, message):
        return message.outbound.error_code if message.outbound_id else ""

    def get_error_message(self, message):
        return message.outbound.error_message if message.outbound_id else ""

    def get_agent_name(self, message):
        return str(message.agent) if message.agent_id else ""


def _related_value(chat: Chat, relation: str, attribute: str):
    """`chat.<relation>.<attribute>` (the queue's name, the portal number's number) without a
    query per chat: the related row as loaded with the chat (select_related, or set when it was
    made), else read once per `cached_singletons()` block (a request, a batch), like the other
    configuration rows. None when the chat has none."""
    descriptor = getattr(Chat, relation)
    if descriptor.is_cached(chat):
        related = getattr(chat, relation)
        return getattr(related, attribute) if related is not None else None
    related_id = getattr(chat, descriptor.field.attname)
    if related_id is None:
        return None
    model = descriptor.field.related_model
    return cached(
        ("chat_shape", model, attribute, related_id),
        lambda: model.objects.filter(pk=related_id).values_list(attribute, flat=True).first(),
    )


class ChatSerializer(serializers.ModelSerializer):
    """A chat as a person in the portal sees it: the agent API's chat and the websocket's
    (`chats.events.chat_payload`, for chat.updated and chat.offered). One shape for both (DESIGN
    rule 12). The consumer's number is the full one here; who reads it masks it
    (`masks_numbers_for`): the agent API per request (`AgentChatSerializer`), the websocket per
    connection (`chats.consumers`). Not the public API's Chats resource (SPEC A3, its own)."""

    queue_name = serializers.SerializerMethodField()
    portal_number = serializers.SerializerMethodField()

    class Meta:
        model = Chat
        fields = [
            "id", "status", "chat_type", "chat_subtype", "start_type", "language", "consumer_number",
            "portal_number", "queue_id", "queue_name", "agent_id", "created_at", "queued_at",
            "assigned_at", "ends_at", "finish_reason", "disconnected_by", "crm_needs_choice",
            "last_consumer_message_at", "last_agent_message_at", "version",
        ]

    def get_queue_name(self, chat) -> str:
        return _related_value(chat, "queue", "name") or ""

    def get_portal_number(self, chat) -> str:
        return _related_value(chat, "portal_number", "number") or ""


class AgentChatSerializer(ChatSerializer):
    """A chat as its agent sees it in the agent API: the portal's chat, with the number masked
    unless permitted, and the unread count and last message its list annotates."""

    consumer_number = serializers.SerializerMethodField()
    unread = serializers.IntegerField(read_only=True, default=0)
    last_message = serializers.CharField(read_only=True, default="")
    last_message_id = serializers.IntegerField(read_only=True, default=None)

    class Meta(ChatSerializer.Meta):
        fields = [*ChatSerializer.Meta.fields, "unread", "last_message", "last_message_id"]

    def get_consumer_number(self, chat):
        context = self.context
        return consumer_number_for(context["request"].user, chat.consumer_number, context.get("mask", True))


class AgentSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="display_name")

    class Meta:
        model = AgentProfile
        fields = ["id", "name", "status", "max_concurrent_chats", "languages"]
