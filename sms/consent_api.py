"""The consent ledger in the public API (SPEC R2): GET /apps/api/v1/consent?number=+1555…, for
the systems that must prove consent (or its revocation) for a number."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from portal.public_api import COMMON_ERRORS, ApiError, PublicApiView, error_response
from sms import consent
from sms.models import ConsentKind, ConsentSource, DoNotContact
from sms.numbers import parse_e164

NUMBER_MISSING = "number is required"
NUMBER_INVALID = "number is invalid"
MAX_EVENTS = 500


class ConsentEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    portal_number = serializers.CharField(help_text="The portal's number the consent is about.")
    kind = serializers.ChoiceField(choices=ConsentKind.values)
    source = serializers.ChoiceField(choices=ConsentSource.values)
    text = serializers.CharField(allow_blank=True, help_text="The consumer's words, for a keyword or phrase.")
    message_sid = serializers.CharField(allow_blank=True)
    by = serializers.CharField(allow_blank=True, help_text="The person, for an agent's or an admin's change.")
    reason = serializers.CharField(allow_blank=True)


class OptedOutSerializer(serializers.Serializer):
    portal_number = serializers.CharField()
    since = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=ConsentSource.values)


class ConsentAnswerSerializer(serializers.Serializer):
    number = serializers.CharField()
    do_not_contact = OptedOutSerializer(many=True, help_text="The portal numbers that may not text this number now.")
    events = ConsentEventSerializer(many=True, help_text=f"The ledger, newest first (at most {MAX_EVENTS}).")


class ConsentView(PublicApiView):
    @extend_schema(
        operation_id="get_consent",
        summary="A number's consent: where it opted out, and every opt-out and opt-in",
        parameters=[OpenApiParameter("number", str, required=True, description="The consumer's number in E.164.")],
        responses={
            200: ConsentAnswerSerializer,
            400: error_response("The number is missing or malformed.", ("Missing", NUMBER_MISSING), ("Malformed", NUMBER_INVALID)),
            **COMMON_ERRORS,
        },
        tags=["Consent"],
    )
    def get(self, request):
        number = (request.query_params.get("number") or "").strip()
        if not number:
            raise ApiError(NUMBER_MISSING)
        if parse_e164(number) is None:
            raise ApiError(NUMBER_INVALID)
        listed = DoNotContact.objects.filter(consumer_number=number).order_by("portal_number")
        events = [{k: v for k, v in consent.as_row(e).items() if k != "consumer_number"} for e in consent.history(number, limit=MAX_EVENTS)]
        return Response(
            {
                "number": number,
                "do_not_contact": [{"portal_number": d.portal_number, "since": d.created_at, "source": d.source} for d in listed],
                "events": ConsentEventSerializer(events, many=True).data,
            }
        )
