"""Erasure in the public API (SPEC R3): POST /apps/api/v1/consumers/erase {"number": "+1555…"}."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from chats import erasure
from portal.public_api import COMMON_ERRORS, ApiError, PublicApiView, error_response
from sms.numbers import parse_e164

NUMBER_MISSING = "number is required"
NUMBER_INVALID = "number is invalid"


class EraseRequestSerializer(serializers.Serializer):
    number = serializers.CharField(help_text="The consumer's number in E.164.")
    reason = serializers.CharField(required=False, allow_blank=True, help_text="Kept with the erasure's record.")


class EraseView(PublicApiView):
    @extend_schema(
        operation_id="erase_consumer",
        summary="Erase a consumer's texts, media, transcripts and CRM contact data",
        description=(
            "Ends the number's active chats, then removes every text, picture, video and transcript of the number "
            "everywhere Tern keeps one (chats, CRM records and contacts, session-less requests, webhook delivery "
            "logs). The chats stay, counted in the reports; the do-not-contact entries and the consent ledger stay "
            "(they are the proof). Idempotent: erasing again removes nothing more."
        ),
        request=EraseRequestSerializer,
        responses={
            200: inline_serializer(
                "Erasure",
                {
                    "number": serializers.CharField(),
                    "erased_at": serializers.DateTimeField(),
                    "counts": serializers.DictField(child=serializers.IntegerField(), help_text="What was removed, by kind."),
                },
            ),
            400: error_response("The number is missing or malformed.", ("Missing", NUMBER_MISSING), ("Malformed", NUMBER_INVALID)),
            **COMMON_ERRORS,
        },
        tags=["Consent"],
    )
    def post(self, request):
        data = self.request_object()
        number = data.get("number")
        if not isinstance(number, str) or not number.strip():
            raise ApiError(NUMBER_MISSING)
        number = number.strip()
        if parse_e164(number) is None:
            raise ApiError(NUMBER_INVALID)
        reason = data.get("reason") if isinstance(data.get("reason"), str) else ""
        done = erasure.erase_consumer(number, by_name=f"API: {request.auth.name}", reason=reason)
        return Response({"number": done.number, "erased_at": done.at, "counts": done.counts})
