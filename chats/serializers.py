"""Shapes of chats and messages for the agent adapter (and, later, the public Chats resource)."""
from rest_framework import serializers

from chats.models import Chat, Media, Message
from portal.models import AgentProfile, ChatSettings
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


class AgentChatSerializer(serializers.ModelSerializer):
    """A chat as its agent sees it: masked number unless permitted, unread count, queue name."""

    consumer_number = serializers.SerializerMethodField()
    queue_name = serializers.SerializerMethodField()
    unread = serializers.IntegerField(read_only=True, default=0)
    last_message = serializers.CharField(read_only=True, default="")
    last_message_id = serializers.IntegerField(read_only=True, default=None)
    portal_number = serializers.CharField(source="portal_number.number", read_only=True)

    class Meta:
        model = Chat
        fields = [
            "id", "status", "chat_type", "chat_subtype", "start_type", "language", "consumer_number",
            "portal_number", "queue_id", "queue_name", "agent_id", "created_at", "queued_at",
            "assigned_at", "ends_at", "finish_reason", "disconnected_by", "crm_needs_choice", "unread",
            "last_message", "last_message_id", "last_consumer_message_at", "last_agent_message_at",
            "version",
        ]

    def get_consumer_number(self, chat):
        context = self.context
        return consumer_number_for(context["request"].user, chat.consumer_number, context.get("mask", True))

    def get_queue_name(self, chat):
        return chat.queue.name if chat.queue_id and chat.queue else ""


class AgentSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="display_name")

    class Meta:
        model = AgentProfile
        fields = ["id", "name", "status", "max_concurrent_chats", "languages"]
