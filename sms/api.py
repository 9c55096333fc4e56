"""The Session-less SMS API (SPEC A2): POST /apps/api/v1/sessionless_sms and its status,
GET /apps/api/v1/sessionless_sms/{request_id}. Thin: sms.sessionless does the work."""
from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from portal.public_api import COMMON_ERRORS, NOT_FOUND, ApiError, PublicApiView, error_response
from sms import sessionless
from sms.models import MessageStatus, SessionlessRequest


class SessionlessRequestSerializer(serializers.Serializer):
    from_phone = serializers.CharField(
        help_text="A verified SMS number of this portal, in US format (+18882468888) or a US short code."
    )
    to_phones = serializers.ListField(
        child=serializers.CharField(), max_length=sessionless.MAX_RECIPIENTS,
        help_text="Recipients in E.164, at most 100 (a number given twice is texted once).",
    )
    messages = serializers.ListField(
        child=serializers.CharField(max_length=sessionless.MAX_MESSAGE_CHARS), max_length=sessionless.MAX_MESSAGES,
        help_text="At most 5 texts of at most 320 characters; each recipient gets each, in order.",
    )


class SessionlessAcceptedSerializer(serializers.Serializer):
    request_id = serializers.CharField(help_text="Keep it: the status endpoint and support need it.")
    recipients = serializers.IntegerField()
    messages = serializers.IntegerField()
    total = serializers.IntegerField(help_text="Messages to send: recipients × messages.")
    expires_at = serializers.DateTimeField(help_text="What is not sent by then expires (two hours).")


class SessionlessMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    to_phone = serializers.CharField()
    message_index = serializers.IntegerField(help_text="Which of the request's messages, from 0.")
    body = serializers.CharField()
    status = serializers.ChoiceField(choices=MessageStatus.values)
    error_code = serializers.CharField(allow_blank=True, help_text="The provider's error code, if any.")
    error_message = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField()


class SessionlessStatusSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    from_phone = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    total = serializers.IntegerField()
    done = serializers.BooleanField(help_text="True when no message is still waiting or on its way.")
    counts = inline_serializer(
        "SessionlessCounts",
        {status: serializers.IntegerField() for status in MessageStatus.values},
        help_text="Messages by status: pending (waiting for the 300-a-minute pace), held (quiet hours), queued, "
        "sending, sent, delivered, undelivered, failed, suppressed (do not contact), refused (duplicate), expired.",
    )
    messages = SessionlessMessageSerializer(many=True)


class SessionlessSmsView(PublicApiView):
    @extend_schema(
        operation_id="send_sessionless_sms",
        summary="Send SMS without a session (Session-less SMS API)",
        description=(
            "Accepts the request at once and sends in the background, at most 300 messages a minute across "
            "the portal; whatever is not sent two hours later expires. Replies to these texts never reach an "
            "agent: the sender gets the do-not-reply message (chat settings), unless `from_phone` is a queue's "
            "incoming number. No chat and no CRM record is made. Each message still goes through the outbound "
            "pipeline: do-not-contact list, duplicate limiter, quiet hours."
        ),
        request=SessionlessRequestSerializer,
        responses={
            200: SessionlessAcceptedSerializer,
            400: error_response(
                "Refused; checked in this order.",
                ("Outbound SMS off", "Outbound SMS service is not enabled"),
                ("from_phone missing", "from_phone is required"),
                ("from_phone malformed", "from_phone is invalid"),
                ("from_phone not in the US", "from_phone must be a US phone number"),
                ("from_phone not a number of this portal", "from_phone is not a verified SMS number of this portal"),
                ("to_phones missing", "to_phones is required"),
                ("to_phones not a list", "to_phones must be a list of phone numbers"),
                ("A recipient malformed", "to_phones contains an invalid phone number: 555-1234"),
                ("A recipient outside the US", "Non US phone number service is not enabled"),
                ("Too many recipients", "to_phones can have at most 100 phone numbers"),
                ("messages missing", "messages is required"),
                ("messages not a list", "messages must be a list of texts"),
                ("Too many messages", "messages can have at most 5 messages"),
                ("An empty message", "message 2 is empty"),
                ("A message too long", "message 1 exceeds maximum number of characters by 30"),
                ("Body not a JSON object", "The request body must be a JSON object."),
            ),
            **COMMON_ERRORS,
        },
        examples=[
            OpenApiExample(
                "Request",
                request_only=True,
                value={
                    "from_phone": "+15550100002",
                    "to_phones": ["+15557654321", "+15557654322"],
                    "messages": ["Your appointment is tomorrow at 10:00.", "Reply STOP to opt out."],
                },
            ),
            OpenApiExample(
                "Accepted",
                response_only=True,
                value={
                    "request_id": "slr_3f9a1c2b4d5e6f708192a3b4",
                    "recipients": 2,
                    "messages": 2,
                    "total": 4,
                    "expires_at": "2030-05-04T12:00:00Z",
                },
            ),
        ],
        tags=["Session-less SMS"],
    )
    def post(self, request):
        data = self.request_object()
        try:
            created = sessionless.create_request(
                from_phone=data.get("from_phone"),
                to_phones=data.get("to_phones"),
                messages=data.get("messages"),
                credential=request.auth,
            )
        except sessionless.SessionlessError as exc:
            raise ApiError(exc.message) from exc
        return Response(
            SessionlessAcceptedSerializer(
                {
                    "request_id": created.request_id,
                    "recipients": len(created.to_numbers),
                    "messages": len(created.messages),
                    "total": created.total,
                    "expires_at": created.expires_at,
                }
            ).data
        )


class SessionlessStatusView(PublicApiView):
    not_found = "Session-less request not found."

    @extend_schema(
        operation_id="get_sessionless_sms",
        summary="Progress of a session-less request",
        responses={
            200: OpenApiResponse(SessionlessStatusSerializer),
            404: NOT_FOUND,
            **COMMON_ERRORS,
        },
        tags=["Session-less SMS"],
    )
    def get(self, request, request_id):
        if len(request_id) > 40:
            raise Http404
        found = get_object_or_404(SessionlessRequest, request_id=request_id)
        return Response(SessionlessStatusSerializer(sessionless.request_status(found)).data)
