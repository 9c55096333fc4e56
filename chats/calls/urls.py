"""The URLs of blended SMS (SPEC B1–B3): the signed Twilio Voice webhooks, the JSON IVR API and
the agent's call actions. Appended to portal/urls.py's urlpatterns. The /apps/api/v1/ paths
answer with and without their trailing slash, like the rest of the API."""
from django.urls import path, re_path

from chats.calls import agent_api, ivr_api, voice

API = r"^apps/api/v1/"
CALL_ID = r"(?P<call_id>[^/]+)"  # any id the IVR uses; unknown ones get a JSON 404
AGENT_CALL = API + r"agent/calls/(?P<call_id>[0-9]{1,18})"

urlpatterns = [
    path("sms/twilio/voice/incoming/", voice.voice_incoming, name="twilio-voice-incoming"),
    path("sms/twilio/voice/wait/", voice.voice_wait, name="twilio-voice-wait"),
    path("sms/twilio/voice/consent/", voice.voice_consent, name="twilio-voice-consent"),
    path("sms/twilio/voice/connect/", voice.voice_connect, name="twilio-voice-connect"),
    path("sms/twilio/voice/dequeued/", voice.voice_dequeued, name="twilio-voice-dequeued"),
    path("sms/twilio/voice/status/", voice.voice_status, name="twilio-voice-status"),
    path("sms/twilio/voice/prompt/<str:language>/<str:kind>/", voice.voice_prompt, name="twilio-voice-prompt"),
    re_path(API + r"ivr/calls/?$", ivr_api.CallsView.as_view(), name="api-ivr-calls"),
    re_path(API + r"ivr/calls/" + CALL_ID + r"/?$", ivr_api.CallView.as_view(), name="api-ivr-call"),
    re_path(API + r"ivr/calls/" + CALL_ID + r"/wait/?$", ivr_api.WaitView.as_view(), name="api-ivr-wait"),
    re_path(API + r"ivr/calls/" + CALL_ID + r"/digit/?$", ivr_api.DigitView.as_view(), name="api-ivr-digit"),
    re_path(API + r"ivr/calls/" + CALL_ID + r"/assigned/?$", ivr_api.AssignedView.as_view(), name="api-ivr-assigned"),
    re_path(API + r"ivr/calls/" + CALL_ID + r"/ended/?$", ivr_api.EndedView.as_view(), name="api-ivr-ended"),
    re_path(API + r"agent/calls/?$", agent_api.CallListView.as_view(), name="agent-calls"),
    re_path(AGENT_CALL + r"/?$", agent_api.CallDetailView.as_view(), name="agent-call"),
    re_path(AGENT_CALL + r"/messages/?$", agent_api.CallMessagesView.as_view(), name="agent-call-messages"),
    re_path(AGENT_CALL + r"/presets/?$", agent_api.CallPresetsView.as_view(), name="agent-call-presets"),
    re_path(AGENT_CALL + r"/sms-session/?$", agent_api.SessionView.as_view(), name="agent-call-session"),
    re_path(AGENT_CALL + r"/sms/?$", agent_api.CallSmsView.as_view(), name="agent-call-sms"),
    re_path(AGENT_CALL + r"/app-link/?$", agent_api.AppLinkView.as_view(), name="agent-call-app-link"),
]
