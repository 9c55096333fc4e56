"""The JSON IVR API (SPEC B1) under /apps/api/v1/ivr/: the same wait-time SMS flow as the Twilio
Voice webhooks, for IVRs that are not Twilio's. HTTP Basic with an API credential, like the rest
of /apps/api/v1/. The IVR reports what happens; the portal answers what to play.

    POST /apps/api/v1/ivr/calls                       a caller entered a queue
         {"call_id", "caller_number", "queue_id", "language"?, "dialed_number"?}
    GET  /apps/api/v1/ivr/calls/{call_id}             the call, with its estimated wait
    POST /apps/api/v1/ivr/calls/{call_id}/wait        the caller is on hold: what now?
         → {"action": "consent", "prompts": [...], "timeout_seconds": 10}: play the prompts,
           collect one digit for 10 s and report it (or nothing: after 10 s the portal counts
           no_response by itself)
         → {"action": "deflect", "prompts": [...], "timeout_seconds": 10}: the offer to continue by
           text (SPEC B4); collect one digit and report it as for the consent prompt
         → {"action": "hold", "check_again_in_seconds": N}
    POST /apps/api/v1/ivr/calls/{call_id}/digit       {"digit": "1" | "2" | "3" | other | ""}
         → {"outcome", "prompts": [...], "then": "gather" | "wait" | "hangup", "timeout_seconds"?}
           ("deflected" and "hangup": play the prompts and end the call; the SMS chat has started)
    POST /apps/api/v1/ivr/calls/{call_id}/assigned    {"agent_id"} or {"agent_email"}
    POST /apps/api/v1/ivr/calls/{call_id}/ended       the call is over (abandoned if never assigned)

A prompt is {"kind", "text", "language", "audio_url"}: read the text in the language, or play
the recording when audio_url is set. Errors are 4xx with {"error": "<sentence>"}."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from chats import events
from chats.calls import consent, lifecycle, rules, sms_side
from chats.models import Call, CallSource
from chats.errors import ChatActionError
from portal.models import AgentProfile
from portal.public_api import COMMON_ERRORS, PublicApiView, error_response
from queues.models import Queue
from sms.numbers import parse_e164


def prompt_json(request, prompt: rules.Prompt) -> dict:
    audio_url = None
    if prompt.audio:
        base = settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")
        audio_url = f"{base}/sms/twilio/voice/prompt/{prompt.language}/{prompt.kind}/"
    return {"kind": prompt.kind, "text": prompt.text, "language": prompt.language, "audio_url": audio_url}


class CallOutSerializer(serializers.Serializer):
    """A call as the IVR API answers it (chats.events.call_payload)."""

    id = serializers.IntegerField()
    call_sid = serializers.CharField(help_text="The IVR's call id.")
    status = serializers.ChoiceField(choices=["queued", "assigned", "ended", "abandoned"])
    queue_id = serializers.IntegerField(allow_null=True)
    agent_id = serializers.IntegerField(allow_null=True)
    language = serializers.CharField()
    caller_number = serializers.CharField()
    wait_time_sms_status = serializers.ChoiceField(choices=["none", "allowed", "denied", "no_response"])
    prompt_plays = serializers.IntegerField()
    sms_chat_id = serializers.IntegerField(allow_null=True, help_text="The chat holding the call's SMS.")
    in_call_sms_open = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    assigned_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)


class PromptSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["consent", "sms_sent", "incorrect_selection", "deflection", "deflection_goodbye"])
    text = serializers.CharField(help_text="Read this in `language`…")
    language = serializers.CharField()
    audio_url = serializers.URLField(allow_null=True, help_text="…or play this recording when set.")


class WaitAnswerSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["consent", "deflect", "hold"])
    prompts = PromptSerializer(many=True, required=False)
    timeout_seconds = serializers.IntegerField(required=False, help_text="Collect one digit this long.")
    check_again_in_seconds = serializers.IntegerField(required=False)
    reason = serializers.CharField(required=False, help_text="Why the consent prompt is not played now.")
    call = CallOutSerializer()


class DigitAnswerSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["allowed", "denied", "incorrect", "no_response", "ignored", "deflected"])
    prompts = PromptSerializer(many=True)
    then = serializers.ChoiceField(
        choices=["gather", "wait", "hangup"], help_text="gather: collect a digit again; hangup: end the call after the prompts."
    )
    timeout_seconds = serializers.IntegerField(required=False)
    call = CallOutSerializer()


CALLER_INVALID = "caller_number is invalid"

IVR_ERRORS = {
    **COMMON_ERRORS,
    400: error_response(
        "A field is missing or wrong.", ("Unknown queue", "queue_id is not found"), ("Caller not E.164", CALLER_INVALID)
    ),
    404: error_response("No call with that id.", ("Unknown call", "There is no call CA123.")),
}


class IvrView(PublicApiView):
    """API credentials, the per-credential rate limit and {"error": …} answers, as the rest of
    the public API (portal/public_api.py)."""

    def handle_exception(self, exc):
        if isinstance(exc, ChatActionError):
            code = {"not_found": 404, "finished": 409}.get(exc.code, 400)
            return Response({"error": exc.message}, status=code)
        return super().handle_exception(exc)

    def call(self, call_id: str) -> Call:
        call = Call.objects.select_related("queue").filter(call_sid=call_id).first()
        if call is None:
            raise lifecycle.CallNotFound(call_id)
        return call


class CallQueuedSerializer(serializers.Serializer):
    call_id = serializers.CharField(max_length=64)
    caller_number = serializers.CharField(max_length=20, help_text="E.164, e.g. +15557654321.")
    queue_id = serializers.IntegerField()
    language = serializers.CharField(max_length=8, required=False, allow_blank=True)
    dialed_number = serializers.CharField(max_length=20, required=False, allow_blank=True)

    def validate_caller_number(self, value: str) -> str:
        value = value.strip()
        if parse_e164(value) is None:
            raise serializers.ValidationError(CALLER_INVALID)
        return value


class CallsView(IvrView):
    @extend_schema(
        tags=["IVR"], summary="A caller entered a queue", request=CallQueuedSerializer,
        responses={201: CallOutSerializer, **IVR_ERRORS},
    )
    def post(self, request):
        data = CallQueuedSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        queue = Queue.objects.filter(pk=values["queue_id"], children__isnull=True).first()
        if queue is None:
            raise ChatActionError("queue_id is not found", code="invalid")
        call = lifecycle.queue_call(
            call_sid=values["call_id"],
            caller_number=values["caller_number"],
            queue=queue,
            language=values.get("language", ""),
            dialed_number=values.get("dialed_number", ""),
            source=CallSource.IVR_API,
        )
        return Response(events.call_payload(call), status=status.HTTP_201_CREATED)


class CallView(IvrView):
    @extend_schema(tags=["IVR"], summary="One call, with its estimated wait", responses={200: CallOutSerializer, **IVR_ERRORS})
    def get(self, request, call_id):
        call = self.call(call_id)
        body = events.call_payload(call)
        if call.status == "queued":
            body["estimated_wait_seconds"] = consent.estimated_wait_seconds(call)
        body["wait_time_sms"] = sms_side.wait_time_sms_received(call)
        return Response(body)


class WaitView(IvrView):
    @extend_schema(
        tags=["IVR"], summary="The caller is on hold: play the deflection offer or the consent prompt now, or hold",
        request=None, responses={200: WaitAnswerSerializer, **IVR_ERRORS},
    )
    def post(self, request, call_id):
        call, step = consent.wait_step(call_sid=call_id)
        if step.action in ("consent", "deflect"):
            return Response(
                {
                    "action": step.action,
                    "prompts": [prompt_json(request, step.prompt)],
                    "timeout_seconds": consent.CONSENT_TIMEOUT_SECONDS,
                    "call": events.call_payload(call),
                }
            )
        return Response(
            {
                "action": "hold",
                "check_again_in_seconds": step.hold_seconds,
                "reason": step.reason,
                "call": events.call_payload(call),
            }
        )


class DigitSerializer(serializers.Serializer):
    digit = serializers.CharField(max_length=1, required=False, allow_blank=True, trim_whitespace=True)


class DigitView(IvrView):
    @extend_schema(
        tags=["IVR"], summary="The digit the caller pressed after the consent prompt or the deflection offer (empty: none)",
        request=DigitSerializer, responses={200: DigitAnswerSerializer, **IVR_ERRORS},
    )
    def post(self, request, call_id):
        data = DigitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        call, result = consent.apply_digit(call_sid=call_id, digit=data.validated_data.get("digit", ""))
        body = {
            "outcome": result.outcome,
            "prompts": [prompt_json(request, prompt) for prompt in result.prompts],
            "then": "hangup" if result.hang_up else "gather" if result.ask_again else "wait",
            "call": events.call_payload(call),
        }
        if result.ask_again:
            body["timeout_seconds"] = consent.CONSENT_TIMEOUT_SECONDS
        return Response(body)


class AssignedSerializer(serializers.Serializer):
    agent_id = serializers.IntegerField(required=False)
    agent_email = serializers.EmailField(required=False)


class AssignedView(IvrView):
    @extend_schema(
        tags=["IVR"], summary="The call reached an agent", request=AssignedSerializer,
        responses={200: CallOutSerializer, **IVR_ERRORS},
    )
    def post(self, request, call_id):
        call = self.call(call_id)
        data = AssignedSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if ("agent_id" in values) == ("agent_email" in values):
            raise ChatActionError("Give one of agent_id or agent_email.", code="invalid")
        if "agent_id" in values:
            agent = AgentProfile.objects.filter(pk=values["agent_id"]).first()
        else:
            agent = AgentProfile.objects.filter(user__email__iexact=values["agent_email"]).first()
        if agent is None:
            raise ChatActionError("Agent is not found", code="invalid")
        call = lifecycle.assign_call(call_sid=call.call_sid, agent=agent)
        return Response(events.call_payload(call))


class EndedView(IvrView):
    @extend_schema(
        tags=["IVR"], summary="The call is over (abandoned when it never reached an agent)",
        request=None, responses={200: CallOutSerializer, **IVR_ERRORS},
    )
    def post(self, request, call_id):
        call = lifecycle.end_call(call_sid=self.call(call_id).call_sid)
        return Response(events.call_payload(call))
