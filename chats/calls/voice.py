"""Twilio Voice webhooks for wait-time SMS (SPEC B1), under /sms/twilio/voice/. Every request's
X-Twilio-Signature is checked (403 otherwise) exactly like the SMS webhooks. The views parse,
call chats.calls (consent, lifecycle), and answer TwiML built with the SDK's VoiceResponse.

Set up in Twilio:
- the voice number's "A call comes in" webhook: POST https://<host>/sms/twilio/voice/incoming/?queue=<queue id or name>&lang=<code>
  (without `queue`: the first queue with wait-time SMS on); its status callback:
  POST https://<host>/sms/twilio/voice/status/;
- the agent's side takes a caller with `<Dial><Queue url="https://<host>/sms/twilio/voice/connect/?agent=<agent id or username>">tern-queue-<queue id></Queue></Dial>`:
  Twilio fetches that URL for the dequeued caller just before bridging, which tells the portal
  which agent the call reached.

The flow: incoming → `<Enqueue waitUrl=/sms/twilio/voice/wait/>`; Twilio fetches the wait URL
while the caller holds: either the consent prompt in a `<Gather numDigits="1" timeout="10"
actionOnEmptyResult="true" action=/sms/twilio/voice/consent/>`, or hold (music or a pause) and a
`<Redirect>` back to the wait URL; the consent URL applies the digit. With pre-session SMS
deflection on (SPEC B4) the wait URL may offer "press 3" in the same `<Gather>`; on 3 the consent
URL says goodbye and answers `<Hangup/>` (the SMS chat has started)."""
from __future__ import annotations

import functools
import logging

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from twilio.twiml.voice_response import VoiceResponse

from chats.calls import consent, lifecycle, rules
from chats.errors import ChatActionError
from portal.models import AgentProfile, BlendingMessages, InCallSmsSettings
from queues.models import Queue
from sms.signatures import is_valid_twilio_request

log = logging.getLogger(__name__)

WAIT_URL = "/sms/twilio/voice/wait/"
CONSENT_URL = "/sms/twilio/voice/consent/"
DEQUEUED_URL = "/sms/twilio/voice/dequeued/"

# Twilio <Say> language codes for the portal's languages.
SAY_LANGUAGES = {
    "en": "en-US", "es": "es-US", "fr": "fr-FR", "de": "de-DE", "pt": "pt-BR",
    "it": "it-IT", "zh": "cmn-CN", "vi": "vi-VN", "ko": "ko-KR", "ja": "ja-JP",
}
ENDED_CALL_STATUSES = {"completed", "busy", "failed", "no-answer", "canceled"}
LEFT_QUEUE_RESULTS = {"hangup", "leave", "queue-full", "system-error", "error", "redirected"}


def twilio_queue_name(queue: Queue) -> str:
    """The Twilio queue a portal queue's callers wait in (the agent side dequeues by this name)."""
    return f"tern-queue-{queue.pk}"


def twilio_voice(view):
    """POST only, CSRF-exempt, and refused with 403 unless Twilio signed it."""

    @csrf_exempt
    @require_POST
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_valid_twilio_request(request):
            log.warning("voice webhook %s refused: bad signature sid=%s", request.path, request.POST.get("CallSid", ""))
            return HttpResponseForbidden("Invalid Twilio signature.")
        return view(request, *args, **kwargs)

    return wrapper


def _twiml(response: VoiceResponse) -> HttpResponse:
    return HttpResponse(str(response), content_type="text/xml")


def _absolute(request, path: str) -> str:
    return (settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")) + path


def _speak(request, verb, prompt: rules.Prompt) -> None:
    """Add the prompt to a <Response> or <Gather>: the recording when there is one, else <Say>."""
    if prompt.audio:
        verb.play(_absolute(request, f"/sms/twilio/voice/prompt/{prompt.language}/{prompt.kind}/"))
    elif prompt.text:
        verb.say(prompt.text, language=SAY_LANGUAGES.get(prompt.language, "en-US"))


def _consent_gather(request, response: VoiceResponse, prompts: list[rules.Prompt]) -> None:
    gather = response.gather(
        num_digits=1,
        timeout=consent.CONSENT_TIMEOUT_SECONDS,
        action=CONSENT_URL,
        method="POST",
        action_on_empty_result=True,
    )
    for prompt in prompts:
        _speak(request, gather, prompt)


def _hold(response: VoiceResponse, seconds: int) -> None:
    music = getattr(settings, "VOICE_HOLD_MUSIC_URL", "")
    if music:
        response.play(music)
    else:
        response.pause(length=seconds)
    response.redirect(WAIT_URL, method="POST")


def _queue_for(value: str) -> Queue | None:
    leaves = Queue.objects.filter(children__isnull=True)
    if value:
        if value.isdigit():
            return leaves.filter(pk=int(value)).first()
        return leaves.filter(name__iexact=value).order_by("pk").first()
    return leaves.filter(wait_time_sms_enabled=True).order_by("pk").first()


@twilio_voice
def voice_incoming(request):
    call_sid = request.POST.get("CallSid", "")
    caller = request.POST.get("From", "").strip()
    if not call_sid or not caller:
        return HttpResponse("CallSid and From are required.", status=400)
    queue = _queue_for(request.GET.get("queue", "").strip())
    response = VoiceResponse()
    if queue is None:
        log.warning("call %s: no queue for %r", call_sid, request.GET.get("queue", ""))
        response.say("Sorry, this line is not set up yet. Goodbye.")
        response.hangup()
        return _twiml(response)
    lifecycle.queue_call(
        call_sid=call_sid,
        caller_number=caller,
        queue=queue,
        language=request.GET.get("lang", "").strip(),
        dialed_number=request.POST.get("To", "").strip(),
    )
    response.enqueue(
        twilio_queue_name(queue), wait_url=WAIT_URL, wait_url_method="POST", action=DEQUEUED_URL, method="POST"
    )
    return _twiml(response)


@twilio_voice
def voice_wait(request):
    response = VoiceResponse()
    try:
        _, step = consent.wait_step(call_sid=request.POST.get("CallSid", ""))
    except ChatActionError:
        _hold(response, consent.HOLD_MAX_SECONDS)  # a call the portal does not know: just hold
        return _twiml(response)
    if step.action in ("consent", "deflect"):
        _consent_gather(request, response, [step.prompt])
    else:
        _hold(response, step.hold_seconds)
    return _twiml(response)


@twilio_voice
def voice_consent(request):
    response = VoiceResponse()
    try:
        _, result = consent.apply_digit(call_sid=request.POST.get("CallSid", ""), digit=request.POST.get("Digits", ""))
    except ChatActionError:
        response.redirect(WAIT_URL, method="POST")
        return _twiml(response)
    if result.ask_again:
        _speak(request, response, result.prompts[0])
        _consent_gather(request, response, result.prompts[1:])
        return _twiml(response)
    if result.hang_up:  # deflected to SMS (SPEC B4): the goodbye, then the call ends
        for prompt in result.prompts:
            _speak(request, response, prompt)
        response.hangup()
        return _twiml(response)
    for prompt in result.prompts:
        _speak(request, response, prompt)
    response.redirect(WAIT_URL, method="POST")
    return _twiml(response)


@twilio_voice
def voice_connect(request):
    """The agent's <Dial><Queue url=…?agent=…> dequeued this caller."""
    value = request.GET.get("agent", "").strip()
    agent = (
        AgentProfile.objects.filter(pk=int(value)).first()
        if value.isdigit()
        else AgentProfile.objects.filter(user__username=value).first()
    )
    if agent is None:
        log.warning("call %s connected to unknown agent %r", request.POST.get("CallSid", ""), value)
    else:
        try:
            lifecycle.assign_call(call_sid=request.POST.get("CallSid", ""), agent=agent)
        except ChatActionError as exc:
            log.warning("call %s not assigned: %s", request.POST.get("CallSid", ""), exc.message)
    return _twiml(VoiceResponse())


@twilio_voice
def voice_dequeued(request):
    """<Enqueue action>: the caller left the queue. Bridged calls are told by the status callback
    when they end; a caller who hung up (or was sent out of the queue) abandoned the call."""
    if request.POST.get("QueueResult", "") in LEFT_QUEUE_RESULTS:
        _end(request.POST.get("CallSid", ""))
    return _twiml(VoiceResponse())


@twilio_voice
def voice_status(request):
    if request.POST.get("CallStatus", "") in ENDED_CALL_STATUSES:
        _end(request.POST.get("CallSid", ""))
    return HttpResponse(status=204)


def _end(call_sid: str) -> None:
    try:
        lifecycle.end_call(call_sid=call_sid)
    except ChatActionError:
        log.info("status for unknown call %s ignored", call_sid)


@require_GET
def voice_prompt(request, language: str, kind: str):
    """The uploaded consent recording, for Twilio's <Play> (public: it is what callers hear)."""
    if kind != "consent":
        raise Http404
    row = BlendingMessages.objects.filter(settings=InCallSmsSettings.load(), language=language).first()
    if row is None or not row.consent_prompt_audio:
        raise Http404
    return FileResponse(row.consent_prompt_audio.open("rb"))
