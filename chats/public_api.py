"""The public REST API of the chats app (SPEC A1, A3): the Outbound SMS API and the Chats
resource, behind API credentials. Each view parses, calls a service or a query, and answers;
refusals are 4xx with {"error": "<sentence>"} (portal.public_api)."""
from __future__ import annotations

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from chats import api_sms
from chats.api_sms_request import OutboundSmsSerializer
from chats.models import Chat, Media
from chats.errors import ChatActionError
from chats.public_serializers import (
    ChatFilterSerializer,
    ChatPageData,
    PublicChatSerializer,
    TranscriptMessageSerializer,
    public_chats,
    transcript,
)
from portal.public_api import COMMON_ERRORS, NOT_FOUND, ApiError, PublicApiView, error_response

def object_id(value: str) -> int:
    """A path id as a number; anything else names no object (404)."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18):
        raise Http404
    return int(value)


E = api_sms.ApiSmsError

SAMPLE_CHAT = {
    "id": 2415, "lang": "en", "chat_type": "SMS", "chat_subtype": "api_initiated", "status": "selecting",
    "start_type": "outbound", "created_at": "2030-10-12T19:28:43.000000Z", "queued_at": None, "assigned_at": None,
    "ends_at": None, "wait_duration": 0, "chat_duration": 0, "rating": None, "has_feedback": False,
    "out_ticket_id": 88, "out_ticket_url": "/admin/portal/crmrecord/88/change/", "verified": False,
    "disconnected_by": "disconnected_by_unknown", "finish_reason": None, "fail_reason": None, "selected_menu": None,
    "menu_path": None, "queue": {"id": 3, "name": "Billing"}, "agent_info": None,
    "end_user": {"id": 5594, "identifier": "+15557654321", "out_contact_id": 131},
    "end_user_number": "+15557654321", "photos": [], "videos": [], "transfers": [],
    "participants": [
        {
            "id": 5594, "type": "end_user", "status": "connected", "chat_id": 2415, "user_id": None, "agent_id": None,
            "end_user_id": 5594, "chat_duration": None, "connected_at": "2030-10-12T19:28:43.000000Z",
            "ended_at": None, "fail_reason": "nothing",
        }
    ],
    "offer_type": None, "offer_events": [], "answer_type": "auto", "outbound_number": "+15550100002",
}


def _api_sms_errors():
    rows = [
        ("SMS chat off", E.SMS_OFF),
        ("Outbound SMS off", E.OUTBOUND_OFF),
        ("Both agent fields", E.BOTH_AGENT_FIELDS),
        ("chat_type missing", E.CHAT_TYPE_MISSING),
        ("chat_type not sms", E.CHAT_TYPE_INVALID),
        ("chat_subtype not api_initiated", E.CHAT_SUBTYPE_INVALID),
        ("end_user_number missing", E.END_USER_MISSING),
        ("end_user_number malformed", E.END_USER_INVALID),
        ("outbound_number missing", E.OUTBOUND_MISSING),
        ("outbound_number malformed", E.OUTBOUND_INVALID),
        ("outbound_number not a number of this portal", E.OUTBOUND_NOT_FOUND),
        ("Non-US number and non-US off", E.NON_US),
        ("message empty", E.MESSAGE_MISSING),
        ("message too long", E.MESSAGE_TOO_LONG.format(over=12)),
        ("Active chat between the two numbers", E.ACTIVE_SESSION),
        ("Agent not connected to that chat", E.AGENT_NOT_CONNECTED),
        ("Agent unknown", E.AGENT_NOT_FOUND),
        ("ticket_id unknown", E.TICKET_NOT_FOUND),
        ("Consumer opted out (STOP)", E.OPTED_OUT),
        ("Same text to the same number inside the duplicate window", "error.platform.message-limiter.duplicate-message-sent"),
        ("Body not a JSON object", "The request body must be a JSON object."),
    ]
    return error_response(
        "Refused; the checks run in this order and the first failure answers.", *rows
    )


class ApiSmsView(PublicApiView):
    @extend_schema(
        operation_id="send_sms",
        summary="Send an SMS that opens a chat (Outbound SMS API)",
        description=(
            "Texts `end_user_number` from `outbound_number` and opens an API chat (`chat_subtype` "
            "`api_initiated`). Without an agent the chat stays `selecting` until the consumer replies; the "
            "reply then enters the queue flow of the outbound number's queue (greeting, menu, queue), and a chat "
            "with no reply ends by the queue-selecting expiration. With `agent_id` or `agent_email` the chat is "
            "`assigned` to that agent at once; when the chat already exists and that agent holds it, the "
            "message is sent in the existing chat on the agent's behalf. The text goes through the outbound "
            "pipeline: do-not-contact list, duplicate limiter, quiet hours (held until the recipient's "
            "morning), the number's sending limits. Answers the chat object."
        ),
        request=OutboundSmsSerializer,
        responses={200: PublicChatSerializer, 400: _api_sms_errors(), **COMMON_ERRORS},
        examples=[
            OpenApiExample(
                "Request",
                request_only=True,
                value={
                    "chat_type": "sms",
                    "chat_subtype": "api_initiated",
                    "end_user_number": "+15557654321",
                    "outbound_number": "+15550100002",
                    "message": "Your order #1234 is ready for pickup. Reply to chat with us.",
                },
            ),
            OpenApiExample("A new API chat", response_only=True, value=SAMPLE_CHAT),
        ],
        tags=["Outbound SMS"],
    )
    def post(self, request):
        sms_request = OutboundSmsSerializer(data=self.request_object())
        try:
            sms_request.is_valid(raise_exception=True)
            chat, _created = api_sms.send_api_sms(**sms_request.validated_data, by=f"api:{request.auth.key}")
        except ChatActionError as exc:
            raise ApiError(exc.message) from exc
        chat = public_chats().get(pk=chat.pk)
        return Response(PublicChatSerializer(chat).data)


class ChatCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ChatListView(PublicApiView):
    @extend_schema(
        operation_id="list_chats",
        summary="List chats",
        description=(
            "Newest first, in pages (cursor pagination: follow `next`). Filters combine; list filters take "
            "comma-separated values."
        ),
        parameters=[
            ChatFilterSerializer,
            inline_serializer(
                "ChatPageParameters",
                {
                    "cursor": serializers.CharField(required=False, help_text="From `next` or `previous`."),
                    "page_size": serializers.IntegerField(required=False, help_text="1 to 200; default 50."),
                },
            ),
        ],
        responses={
            200: inline_serializer(
                "ChatPage",
                {
                    "next": serializers.CharField(allow_null=True, help_text="The next page's URL; null on the last."),
                    "previous": serializers.CharField(allow_null=True, help_text="The previous page's URL."),
                    "results": PublicChatSerializer(many=True),
                },
            ),
            400: error_response(
                "A filter has a value it does not take.",
                ("Unknown status", "status must be one of assigned, dismissed, finished, queued, selecting"),
                ("Bad date", "created_after: Datetime has wrong format. Use one of these formats instead: "
                 "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."),
            ),
            404: error_response("The cursor is not one this API gave.", ("Invalid cursor", "Invalid cursor")),
            **COMMON_ERRORS,
        },
        tags=["Chats"],
    )
    def get(self, request):
        filters = ChatFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = ChatCursorPagination()
        page = paginator.paginate_queryset(filters.filter(public_chats()), request, view=self)
        context = {"page": ChatPageData(page)}
        return paginator.get_paginated_response(PublicChatSerializer(page, many=True, context=context).data)


class ChatDetailView(PublicApiView):
    not_found = "Chat not found."

    @extend_schema(
        operation_id="get_chat",
        summary="One chat",
        responses={
            200: OpenApiResponse(PublicChatSerializer, examples=[OpenApiExample("A chat", value=SAMPLE_CHAT)]),
            404: NOT_FOUND,
            **COMMON_ERRORS,
        },
        tags=["Chats"],
    )
    def get(self, request, chat_id):
        chat = get_object_or_404(public_chats(), pk=object_id(chat_id))
        return Response(PublicChatSerializer(chat).data)


class ChatMessagesView(PublicApiView):
    not_found = "Chat not found."

    @extend_schema(
        operation_id="get_chat_messages",
        summary="A chat's transcript",
        description=(
            "Every consumer, agent and system message in order, each portal text with its delivery status "
            "(statuses only move forward, whatever order the provider's callbacks arrive in) and each "
            "consumer picture or video with its download link."
        ),
        responses={
            200: inline_serializer(
                "ChatTranscript",
                {"chat_id": serializers.IntegerField(), "messages": TranscriptMessageSerializer(many=True)},
            ),
            404: NOT_FOUND,
            **COMMON_ERRORS,
        },
        tags=["Chats"],
    )
    def get(self, request, chat_id):
        chat = get_object_or_404(Chat, pk=object_id(chat_id))
        messages = TranscriptMessageSerializer(transcript(chat), many=True).data
        return Response({"chat_id": chat.pk, "messages": messages})


class ChatMediaView(PublicApiView):
    not_found = "Media not found."

    @extend_schema(
        operation_id="get_chat_media",
        summary="Download a consumer's picture or video",
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: NOT_FOUND, **COMMON_ERRORS},
        tags=["Chats"],
    )
    def get(self, request, chat_id, media_id):
        media = get_object_or_404(Media, pk=object_id(media_id), message__chat_id=object_id(chat_id))
        if not media.file:
            raise ApiError("This file has not been stored.", status_code=404)
        response = FileResponse(media.file.open("rb"), content_type=media.content_type or "application/octet-stream")
        response["Content-Disposition"] = f'attachment; filename="media-{media.pk}"'
        response["X-Content-Type-Options"] = "nosniff"
        return response
