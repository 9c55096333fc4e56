"""Shapes of the public Chats resource (SPEC A3): the chat object of seed 001's sample, plus
finish_reason and chat_subtype, and the transcript. Read-only: the writes are services.

Every relation a chat shows is loaded for the whole page at once (`public_chats()` and
`ChatPageData`), so a page of 100 chats costs the same few queries as a page of one."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import Prefetch
from django.utils import timezone
from rest_framework import serializers

from chats.models import (
    CHAT_SUBTYPES,
    Author,
    Chat,
    ChatStatus,
    FinishReason,
    Media,
    Message,
    Offer,
    Participant,
    ParticipantType,
    StartType,
    Transfer,
)
from queues.models import Queue

SUBTYPE_TO_TYPE = {subtype: chat_type for chat_type, subtype in CHAT_SUBTYPES.items()}
ANSWER_TYPES = {"auto": "auto", "manual": "manual"}


def public_chats():
    """The queryset every chat answer is built from: the relations of the chat object, loaded
    in a fixed number of queries whatever the number of chats."""
    return Chat.objects.select_related("portal_number", "queue", "agent__user", "crm_record").prefetch_related(
        Prefetch("participants", queryset=Participant.objects.select_related("agent").order_by("connected_at", "pk")),
        Prefetch("transfers", queryset=Transfer.objects.order_by("began_at", "pk")),
        Prefetch("offers", queryset=Offer.objects.order_by("offered_at", "pk")),
    )


class ChatPageData:
    """What the chats of one answer show beside their own rows: the consumer's photos and
    videos, and the queues named by their menu paths — one query each for the whole page."""

    def __init__(self, chats):
        chats = list(chats)
        ids = [chat.pk for chat in chats]
        self.media: dict[int, list[Media]] = defaultdict(list)
        if ids:
            for item in (
                Media.objects.filter(message__chat_id__in=ids, message__author=Author.CONSUMER)
                .select_related("message")
                .order_by("message__created_at", "pk")
            ):
                self.media[item.message.chat_id].append(item)
        queue_ids = {qid for chat in chats for qid in (chat.menu_path or []) if isinstance(qid, int)}
        self.queues = {q.pk: q for q in Queue.objects.filter(pk__in=queue_ids)} if queue_ids else {}


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> int:
    if start is None:
        return 0
    end = end or timezone.now()
    return max(int((end - start).total_seconds()), 0)


def media_url(media: Media) -> str | None:
    if not media.file:
        return None
    return f"/apps/api/v1/chats/{media.message.chat_id}/media/{media.pk}"


class EndUserSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="The consumer's participant id in this chat.")
    identifier = serializers.CharField(help_text="The consumer's phone number (E.164).")
    out_contact_id = serializers.IntegerField(allow_null=True, help_text="The CRM contact matched by number.")


class AgentInfoSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.CharField(allow_blank=True)


class QueueRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class MediaItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    content_type = serializers.CharField()
    size = serializers.IntegerField()
    url = serializers.CharField(allow_null=True, help_text="Download link (same credentials); null until fetched.")
    error = serializers.CharField(allow_blank=True, help_text="Why the file could not be stored, if it could not.")


class TransferItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Transfer.Status.choices)
    from_agent_id = serializers.IntegerField(allow_null=True)
    to_agent_id = serializers.IntegerField(allow_null=True)
    to_queue_id = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    began_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


class ParticipantItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=ParticipantType.choices)
    status = serializers.CharField(help_text="connected, ended, transferred or dismissed.")
    chat_id = serializers.IntegerField()
    user_id = serializers.IntegerField(allow_null=True, help_text="The agent's user id (agents only).")
    agent_id = serializers.IntegerField(allow_null=True)
    end_user_id = serializers.IntegerField(allow_null=True, help_text="Equals end_user.id (the consumer only).")
    chat_duration = serializers.IntegerField(allow_null=True, help_text="Seconds connected; null while connected.")
    connected_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    fail_reason = serializers.CharField()


class OfferEventSerializer(serializers.Serializer):
    agent_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Offer.Status.choices)
    offered_at = serializers.DateTimeField()
    answered_at = serializers.DateTimeField(allow_null=True)


def _transfer(t: Transfer) -> dict:
    return {
        "id": t.pk,
        "status": t.status,
        "from_agent_id": t.from_agent_id,
        "to_agent_id": t.to_agent_id,
        "to_queue_id": t.to_queue_id,
        "reason": t.reason,
        "began_at": _iso(t.began_at),
        "ended_at": _iso(t.ended_at),
    }


def _participant(p: Participant, end_user_id: int | None) -> dict:
    return {
        "id": p.pk,
        "type": p.type,
        "status": p.status,
        "chat_id": p.chat_id,
        "user_id": p.agent.user_id if p.agent_id and p.agent else None,
        "agent_id": p.agent_id,
        "end_user_id": end_user_id if p.type == ParticipantType.END_USER else None,
        "chat_duration": _seconds(p.connected_at, p.ended_at) if p.ended_at else None,
        "connected_at": _iso(p.connected_at),
        "ended_at": _iso(p.ended_at),
        "fail_reason": p.fail_reason or "nothing",
    }


def _offer_event(o: Offer) -> dict:
    return {"agent_id": o.agent_id, "status": o.status, "offered_at": _iso(o.offered_at), "answered_at": _iso(o.answered_at)}


class PublicChatSerializer(serializers.Serializer):
    """A chat, field for field as seed 001's sample, plus finish_reason, chat_subtype and a few
    fields a client would otherwise have to look up (start_type, queue, end_user_number)."""

    id = serializers.IntegerField()
    lang = serializers.CharField(help_text="The chat's language code.")
    chat_type = serializers.ChoiceField(choices=["SMS"], help_text='The channel: always "SMS".')
    chat_subtype = serializers.ChoiceField(
        choices=sorted(CHAT_SUBTYPES.values()),
        help_text="inbound (the consumer texted first), outbound (an agent started it), api_initiated "
        "(the Outbound SMS API), wait_time or in_call (SMS beside a call).",
    )
    status = serializers.ChoiceField(choices=ChatStatus.values)
    start_type = serializers.ChoiceField(
        choices=StartType.values, allow_null=True, help_text="Null until an agent answers or starts it."
    )
    created_at = serializers.DateTimeField()
    queued_at = serializers.DateTimeField(allow_null=True)
    assigned_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    wait_duration = serializers.IntegerField(help_text="Seconds in the queue before an agent (or the end).")
    chat_duration = serializers.IntegerField(help_text="Seconds from the assignment to the end (or now).")
    rating = serializers.IntegerField(
        allow_null=True, help_text="The consumer's answer to the CSAT survey by SMS, 1 to 5; null when not answered."
    )
    has_feedback = serializers.BooleanField(help_text="The consumer wrote something after the score.")
    out_ticket_id = serializers.IntegerField(allow_null=True, help_text="The chat's CRM record id.")
    out_ticket_url = serializers.CharField(allow_null=True, help_text="The CRM record in the admin.")
    verified = serializers.BooleanField(help_text="Always false: SMS consumers are not verified.")
    disconnected_by = serializers.ChoiceField(choices=["agent", "end_user", "system", "disconnected_by_unknown"])
    finish_reason = serializers.ChoiceField(choices=FinishReason.values, allow_null=True)
    fail_reason = serializers.CharField(allow_null=True, help_text='"failed" when the chat failed, else null.')
    selected_menu = QueueRefSerializer(allow_null=True, help_text="The last queue the consumer chose.")
    menu_path = QueueRefSerializer(many=True, allow_null=True, help_text="Queues chosen, in order; null if none.")
    queue = QueueRefSerializer(allow_null=True)
    agent_info = AgentInfoSerializer(allow_null=True, help_text="The agent holding the chat now.")
    end_user = EndUserSerializer()
    end_user_number = serializers.CharField()
    photos = MediaItemSerializer(many=True)
    videos = MediaItemSerializer(many=True)
    transfers = TransferItemSerializer(many=True)
    participants = ParticipantItemSerializer(many=True)
    offer_type = serializers.ChoiceField(
        choices=["manual", "auto"], allow_null=True, help_text="How the queue gave the chat to an agent."
    )
    offer_events = OfferEventSerializer(many=True)
    answer_type = serializers.ChoiceField(choices=["manual", "auto"], allow_null=True, help_text="The queue's answer type.")
    outbound_number = serializers.CharField(help_text="The portal number the chat texts from.")

    def to_representation(self, chat: Chat) -> dict:
        page: ChatPageData = self.context.get("page") or ChatPageData([chat])
        participants = list(chat.participants.all())
        end_user = next((p for p in participants if p.type == ParticipantType.END_USER), None)
        end_user_id = end_user.pk if end_user is not None else None
        media = page.media.get(chat.pk, [])
        path = [page.queues[qid] for qid in (chat.menu_path or []) if qid in page.queues]
        offers = list(chat.offers.all())
        record = chat.crm_record
        agent = chat.agent
        wait_end = chat.assigned_at or chat.ends_at
        return {
            "id": chat.pk,
            "lang": chat.language,
            "chat_type": "SMS",
            "chat_subtype": CHAT_SUBTYPES.get(chat.chat_type, "inbound"),
            "status": chat.status,
            "start_type": chat.start_type or None,
            "created_at": _iso(chat.created_at),
            "queued_at": _iso(chat.queued_at),
            "assigned_at": _iso(chat.assigned_at),
            "ends_at": _iso(chat.ends_at),
            "wait_duration": _seconds(chat.queued_at, wait_end) if chat.queued_at else 0,
            "chat_duration": _seconds(chat.assigned_at, chat.ends_at) if chat.assigned_at else 0,
            "rating": chat.rating,
            "has_feedback": bool(chat.feedback),
            "out_ticket_id": record.pk if record is not None else None,
            "out_ticket_url": f"/admin/portal/crmrecord/{record.pk}/change/" if record is not None else None,
            "verified": False,
            "disconnected_by": chat.disconnected_by or "disconnected_by_unknown",
            "finish_reason": chat.finish_reason or None,
            "fail_reason": "failed" if chat.finish_reason == FinishReason.FAILED else None,
            "selected_menu": _queue_ref(path[-1]) if path else None,
            "menu_path": [_queue_ref(q) for q in path] or None,
            "queue": _queue_ref(chat.queue) if chat.queue_id and chat.queue else None,
            "agent_info": (
                {"id": agent.pk, "name": str(agent), "email": agent.user.email} if agent is not None else None
            ),
            "end_user": {
                "id": end_user_id,
                "identifier": chat.consumer_number,
                "out_contact_id": record.contact_id if record is not None else None,
            },
            "end_user_number": chat.consumer_number,
            "photos": [_media(m) for m in media if m.kind == "image"],
            "videos": [_media(m) for m in media if m.kind == "video"],
            "transfers": [_transfer(t) for t in chat.transfers.all()],
            "participants": [_participant(p, end_user_id) for p in participants],
            "offer_type": "manual" if offers else ("auto" if chat.start_type == StartType.AUTO else None),
            "offer_events": [_offer_event(o) for o in offers],
            "answer_type": ANSWER_TYPES.get(chat.queue.answer_type) if chat.queue_id and chat.queue else None,
            "outbound_number": chat.portal_number.number,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return serializers.DateTimeField().to_representation(value) if value is not None else None


def _queue_ref(queue: Queue) -> dict:
    return {"id": queue.pk, "name": queue.name}


def _media(item: Media) -> dict:
    return {
        "id": item.pk,
        "content_type": item.content_type,
        "size": item.size,
        "url": media_url(item),
        "error": item.error,
    }


class TranscriptMessageSerializer(serializers.Serializer):
    """One transcript entry with its delivery status (portal texts) and media links."""

    id = serializers.IntegerField()
    chat_id = serializers.IntegerField()
    author = serializers.ChoiceField(choices=Author.values, help_text="consumer, agent or system.")
    agent_id = serializers.IntegerField(allow_null=True)
    body = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    sms_id = serializers.IntegerField(
        allow_null=True, help_text="The outbound SMS (portal texts); message.status webhooks name it."
    )
    status = serializers.CharField(
        allow_null=True,
        help_text="Delivery status of a portal text: held, queued, sending, sent, delivered, undelivered, "
        "failed, suppressed, refused or expired. Null for the consumer's texts.",
    )
    error_code = serializers.CharField(allow_blank=True, help_text="The provider's error code, if any.")
    error_message = serializers.CharField(allow_blank=True)
    segments = serializers.IntegerField(allow_null=True)
    media = MediaItemSerializer(many=True)

    def to_representation(self, message: Message) -> dict:
        outbound = message.outbound if message.outbound_id else None
        return {
            "id": message.pk,
            "chat_id": message.chat_id,
            "author": message.author,
            "agent_id": message.agent_id,
            "body": message.body,
            "created_at": _iso(message.created_at),
            "sms_id": message.outbound_id,
            "status": outbound.status if outbound is not None else None,
            "error_code": outbound.error_code if outbound is not None else "",
            "error_message": outbound.error_message if outbound is not None else "",
            "segments": outbound.segments if outbound is not None else None,
            "media": [_media(m) for m in message.media.all()],
        }


def transcript(chat: Chat):
    return (
        Message.objects.filter(chat=chat)
        .select_related("outbound", "chat")
        .prefetch_related("media__message")
        .order_by("created_at", "pk")
    )


class ChatFilterSerializer(serializers.Serializer):
    """The query parameters of GET /apps/api/v1/chats."""

    status = serializers.CharField(required=False, help_text="One or more of " + ", ".join(ChatStatus.values) + ", comma-separated.")
    queue = serializers.IntegerField(required=False, min_value=1, max_value=2**62, help_text="A queue id.")
    chat_type = serializers.CharField(required=False, help_text="SMS (every chat here is one).")
    chat_subtype = serializers.CharField(
        required=False, help_text="One or more of " + ", ".join(sorted(CHAT_SUBTYPES.values())) + ", comma-separated."
    )
    start_type = serializers.CharField(
        required=False, help_text="One or more of " + ", ".join(StartType.values) + ", comma-separated."
    )
    created_after = serializers.DateTimeField(required=False, help_text="ISO 8601; inclusive.")
    created_before = serializers.DateTimeField(required=False, help_text="ISO 8601; exclusive.")

    def _choices(self, value: str, allowed, name: str) -> list[str]:
        chosen = [part.strip().lower() for part in value.split(",") if part.strip()]
        unknown = [part for part in chosen if part not in allowed]
        if unknown or not chosen:
            raise serializers.ValidationError(f"{name} must be one or more of {', '.join(sorted(allowed))}")
        return chosen

    def validate_status(self, value):
        return self._choices(value, set(ChatStatus.values), "status")

    def validate_chat_type(self, value):
        return self._choices(value, {"sms"}, "chat_type")

    def validate_chat_subtype(self, value):
        return self._choices(value, set(CHAT_SUBTYPES.values()), "chat_subtype")

    def validate_start_type(self, value):
        return self._choices(value, set(StartType.values), "start_type")

    def filter(self, queryset):
        data = self.validated_data
        if "status" in data:
            queryset = queryset.filter(status__in=data["status"])
        if "queue" in data:
            queryset = queryset.filter(queue_id=data["queue"])
        if "chat_subtype" in data:
            types = [SUBTYPE_TO_TYPE[subtype] for subtype in data["chat_subtype"]]
            queryset = queryset.filter(chat_type__in=types)
        if "start_type" in data:
            queryset = queryset.filter(start_type__in=data["start_type"])
        if "created_after" in data:
            queryset = queryset.filter(created_at__gte=data["created_after"])
        if "created_before" in data:
            queryset = queryset.filter(created_at__lt=data["created_before"])
        return queryset
