"""The agent's calls in the adapter (SPEC B1–B3), under /apps/api/v1/agent/calls/ (session auth +
CSRF, like the rest of the adapter's REST actions). Each view parses, calls chats.calls (in_call_sms, sms_side), and
answers; refusals are 4xx with {"error": "<sentence>"}.

    GET  /apps/api/v1/agent/calls                     the calls the agent is on now
    GET  /apps/api/v1/agent/calls/{id}                one call, with its "Wait Time SMS Received" state
    GET  /apps/api/v1/agent/calls/{id}/messages       the call's SMS: what the banner opens
    GET  /apps/api/v1/agent/calls/{id}/presets        preset messages in the call's language (and that
                                                      language's name), custom message rules, app
                                                      links on offer
    POST /apps/api/v1/agent/calls/{id}/sms-session    open the in-call SMS session
    POST /apps/api/v1/agent/calls/{id}/sms            {"preset_id"} or {"body"} (custom, ≤ 918)
    POST /apps/api/v1/agent/calls/{id}/app-link       {"platform": "ios"|"android", "link": "download"|"launch"}

Live, the agent's socket hears `call.updated`, `call.banner` and `call.message` (chats/events.py)."""
from __future__ import annotations

from django.db.models import Q
from django.http import Http404
from rest_framework import serializers, status
from rest_framework.response import Response

from chats import events
from chats.calls import in_call_sms, sms_side
from chats.agent_api import AgentView
from chats.models import Call, CallStatus, Message
from chats.serializers import MessageSerializer, consumer_number_for
from chats.stats import today_start
from chats.errors import ChatActionError
from portal.languages import language_name
from portal.models import InCallSmsSettings, PresetMessage


class CallsAgentView(AgentView):
    def call_for_agent(self, call_id: int) -> Call:
        """A call the agent is or was on; anything else is 404."""
        call = Call.objects.select_related("queue", "chat").filter(pk=call_id, agent=self.agent).first()
        if call is None:
            raise Http404("No such call.")
        return call

    def call_json(self, call: Call) -> dict:
        body = events.call_payload(call)
        context = self.context()
        body["caller_number"] = consumer_number_for(self.request.user, call.caller_number, context["mask"])
        body["queue_name"] = call.queue.name if call.queue else ""
        received = sms_side.wait_time_sms_received(call)
        body["wait_time_sms"] = {
            **received,
            "banner": events.WAIT_TIME_SMS_BANNER if received["received"] else "",
            "messages_url": f"/apps/api/v1/agent/calls/{call.pk}/messages",
        }
        body["in_call_sms_available"] = not in_call_sms.in_call_refusal(call)
        return body


class CallListView(CallsAgentView):
    def get(self, request):
        """The calls the agent is on, and the ones they ended today: a reload keeps what the page
        showed (an ended call stays listed, its texts readable)."""
        calls = Call.objects.select_related("queue", "chat").filter(
            Q(status=CallStatus.ASSIGNED) | Q(status=CallStatus.ENDED, ended_at__gte=today_start()), agent=self.agent
        )
        return Response({"calls": [self.call_json(call) for call in calls.order_by("assigned_at", "pk")]})


class CallDetailView(CallsAgentView):
    def get(self, request, call_id):
        return Response(self.call_json(self.call_for_agent(call_id)))


class CallMessagesView(CallsAgentView):
    def get(self, request, call_id):
        call = self.call_for_agent(call_id)
        messages = (
            Message.objects.filter(chat_id=call.chat_id)
            .select_related("outbound", "agent")
            .prefetch_related("media")
            .order_by("created_at", "pk")
            if call.chat_id
            else Message.objects.none()
        )
        return Response({"call_id": call.pk, "chat_id": call.chat_id, "messages": MessageSerializer(messages, many=True).data})


class CallPresetsView(CallsAgentView):
    def get(self, request, call_id):
        call = self.call_for_agent(call_id)
        in_call = InCallSmsSettings.load()
        presets = in_call_sms.presets_for(call)
        language = presets[0].language if presets else call.language
        return Response(
            {
                "presets": [
                    {"id": p.pk, "label": p.label, "text": p.text, "language": p.language, "long": len(p.text) > 160}
                    for p in presets
                ],
                # The language the presets are in (the call's, else the default): the page says so.
                "language": language,
                "language_name": language_name(language),
                "custom_allowed": in_call.custom_messages_allowed,
                "custom_limit": in_call.custom_message_limit,
                "app_links": in_call_sms.available_app_links(),
                "refusal": in_call_sms.in_call_refusal(call, in_call),
            }
        )


class SessionView(CallsAgentView):
    def post(self, request, call_id):
        call = in_call_sms.open_in_call_session(agent=self.agent, call=self.call_for_agent(call_id))
        return Response(self.call_json(call))


class CallSmsSerializer(serializers.Serializer):
    preset_id = serializers.IntegerField(required=False)
    body = serializers.CharField(required=False, allow_blank=True, max_length=2000, trim_whitespace=False)


class CallSmsView(CallsAgentView):
    def post(self, request, call_id):
        call = self.call_for_agent(call_id)
        data = CallSmsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        preset = None
        if data.validated_data.get("preset_id") is not None:
            preset = PresetMessage.objects.filter(pk=data.validated_data["preset_id"]).first()
            if preset is None:
                raise ChatActionError("That preset message does not exist.", code="invalid")
        message = in_call_sms.send_in_call_sms(
            agent=self.agent, call=call, preset=preset, body=data.validated_data.get("body", "")
        )
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class AppLinkSerializer(serializers.Serializer):
    platform = serializers.ChoiceField(choices=["ios", "android"])
    link = serializers.ChoiceField(choices=["download", "launch"])


class AppLinkView(CallsAgentView):
    def post(self, request, call_id):
        call = self.call_for_agent(call_id)
        data = AppLinkSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = in_call_sms.send_app_link(agent=self.agent, call=call, **data.validated_data)
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)
