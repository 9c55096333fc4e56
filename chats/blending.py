"""Blended SMS: SMS beside an IVR call (SPEC B1 wait-time SMS, B2 in-call SMS, B3 app links).

A `Call` is a caller waiting in (then connected from) an IVR queue: Twilio Voice through the
signed webhooks of chats/voice.py, or any other IVR through the JSON API of chats/ivr_api.py.
Both drive the functions here, so the rules live in one place:

- `wait_step()` — the caller is on hold: is this the moment for the consent prompt? (the
  announcement interval since the last prompt, or since the call was queued; the estimated wait
  inside the min/max; plays below the limit; not already allowed or denied; the caller's number
  can be texted). It counts the play; for IVR API calls it also sets `consent_deadline_at`
  (10 s), which the one sweeper turns into `no_response` when no digit arrives.
- `apply_digit()` — 1 allowed (the wait-time SMS goes out through the outbound pipeline),
  2 denied (never asked again), another digit: the incorrect-selection prompt and the consent
  prompt again, no digit: `no_response` (asked again at the next interval).
- `call_assigned()` / `call_ended()` — the call reaches an agent (the CRM record opens, the
  texts received so far are posted to it, and the agent's adapter hears the "Wait Time SMS
  Received" banner), or ends (the SMS side closes with the closing SMS; an abandoned call with
  SMS data gets a CRM ticket when the operation settings say so, SPEC C8).

The SMS side of a call is a chat of type Wait-time SMS or In-call SMS (SPEC S10) between the
caller and an in-call SMS number (`sms_number`). It is never routed (no queue), never timed
(no deadline), and never in the SMS adapter's chat list (no `chat.agent`; the agent is the
call's), so an agent on a call keeps their SMS chat capacity. Its statuses follow the call:
queued while the call waits, assigned when it reaches an agent, finished (`call_ended`) with
it. The caller's texts to that number attach to it (chats.flow sends them here).

Estimated wait time (EWT), in seconds, for a queued call:

    EWT = ceil((calls ahead + 1) × AHT ÷ max(available agents, 1))

where *calls ahead* are the queue's calls still queued that were queued before this one, *AHT*
is the average handle time (assigned → ended) of the queue's last 20 answered calls of the last
7 days (300 s when there are none yet), and *available agents* are the queue's agents, directly
or through a team, whose status is available."""
from __future__ import annotations

import datetime as dt
import logging
import math
from typing import NamedTuple

import phonenumbers
from django.db import IntegrityError, transaction
from django.db.models import Avg, DurationField, ExpressionWrapper, F, Q
from django.utils import timezone

from chats import events, services
from chats.models import (
    BLENDED_CHAT_TYPES,
    Author,
    Call,
    CallSource,
    CallStatus,
    Chat,
    ChatEvent,
    ChatStatus,
    ChatType,
    DisconnectedBy,
    FinishReason,
    Message,
    Participant,
    ParticipantType,
    StartType,
    WaitTimeSmsStatus,
)
from chats.services import ChatActionError
from chats.states import transition
from portal import crm
from portal.models import (
    AgentProfile,
    AgentStatus,
    BlendingMessages,
    ChatSettings,
    InCallSmsSettings,
    OperationSettings,
    PresetMessage,
)
from queues.models import Queue
from queues.routing import queue_agents
from sms.models import InboundMessage, NumberUsage, PhoneNumber
from sms.numbers import is_us_number, parse_e164
from sms.pipeline import SendRefused, is_do_not_contact, queue_sms

log = logging.getLogger(__name__)

CONSENT_TIMEOUT_SECONDS = 10
DEFAULT_HANDLE_SECONDS = 300
RECENT_CALLS = 20
RECENT_WINDOW = dt.timedelta(days=7)
HOLD_MIN_SECONDS = 5
HOLD_MAX_SECONDS = 30

APP_LINK_TEXTS = {
    "download": "Download our app here: {url}",
    "launch": "Open our app here: {url}",
}


class CallNotFound(ChatActionError):
    def __init__(self, call_sid: str):
        super().__init__(f"There is no call {call_sid}.", code="not_found")


# ---------------------------------------------------------------------------------------------
# Settings: the queue's override, else the in-call SMS settings (SPEC C5, C7)


class WaitTimeRules(NamedTuple):
    enabled: bool
    interval_seconds: int
    play_limit: int | None
    min_wait_seconds: int | None
    max_wait_seconds: int | None


def _override(queue: Queue | None, name: str, in_call: InCallSmsSettings):
    value = getattr(queue, name, None) if queue is not None else None
    return value if value is not None else getattr(in_call, name)


def wait_time_rules(queue: Queue | None, in_call: InCallSmsSettings | None = None) -> WaitTimeRules:
    in_call = in_call or InCallSmsSettings.load()
    return WaitTimeRules(
        enabled=bool(in_call.wait_time_sms_enabled and queue is not None and queue.wait_time_sms_enabled),
        interval_seconds=_override(queue, "announcement_interval_seconds", in_call),
        play_limit=_override(queue, "consent_play_limit", in_call),
        min_wait_seconds=_override(queue, "min_estimated_wait_seconds", in_call),
        max_wait_seconds=_override(queue, "max_estimated_wait_seconds", in_call),
    )


def messages_for(language: str, in_call: InCallSmsSettings | None = None) -> BlendingMessages:
    """The prompts and texts in the call's language, else the default language, else any
    language set up, else the built-in defaults."""
    in_call = in_call or InCallSmsSettings.load()
    rows = {row.language: row for row in in_call.messages.all()}
    for code in (language, ChatSettings.load().default_language):
        if code in rows:
            return rows[code]
    if rows:
        return next(iter(rows.values()))
    return BlendingMessages(settings=in_call, language=language)


class Prompt(NamedTuple):
    """Something the caller hears: text read in `language`, or a recording (`audio`)."""

    text: str
    language: str
    audio: bool = False
    kind: str = ""


def consent_prompt(call: Call) -> Prompt:
    messages = messages_for(call.language)
    return Prompt(messages.consent_prompt, messages.language, bool(messages.consent_prompt_audio), "consent")


def sms_sent_prompt(call: Call) -> Prompt:
    messages = messages_for(call.language)
    return Prompt(messages.sms_sent_prompt, messages.language, False, "sms_sent")


def incorrect_selection_prompt(call: Call) -> Prompt:
    messages = messages_for(call.language)
    return Prompt(messages.incorrect_selection_prompt, messages.language, False, "incorrect_selection")


# ---------------------------------------------------------------------------------------------
# Calls arrive


def sms_number_for(dialed_number: str = "") -> PhoneNumber | None:
    """The in-call SMS number of a call: the number the caller dialed when it is one, else the
    first verified in-call SMS number."""
    numbers = PhoneNumber.objects.verified().filter(usage=NumberUsage.IN_CALL)
    if dialed_number:
        dialed = numbers.filter(number=dialed_number).first()
        if dialed is not None:
            return dialed
    return numbers.order_by("number").first()


def call_queued(
    *, call_sid: str, caller_number: str, queue: Queue, language: str = "", dialed_number: str = "",
    source: str = CallSource.TWILIO,
) -> Call:
    """A caller entered the queue. Idempotent on the call id (a retried webhook finds the call)."""
    existing = Call.objects.filter(call_sid=call_sid).first()
    if existing is not None:
        return existing
    chat_settings = ChatSettings.load()
    if language not in (chat_settings.enabled_languages or []):
        language = chat_settings.default_language
    try:
        with transaction.atomic():
            call = Call.objects.create(
                call_sid=call_sid,
                source=source,
                caller_number=caller_number,
                dialed_number=dialed_number,
                sms_number=sms_number_for(dialed_number),
                queue=queue,
                language=language,
                queued_at=timezone.now(),
            )
    except IntegrityError:
        return Call.objects.get(call_sid=call_sid)
    events.call_updated(call)
    log.info("call %s from %s queued in %s", call_sid, caller_number, queue)
    return call


def _lock_call(call_sid: str) -> Call:
    call = (
        Call.objects.select_for_update(of=("self",))
        .select_related("queue", "sms_number", "chat")
        .filter(call_sid=call_sid)
        .first()
    )
    if call is None:
        raise CallNotFound(call_sid)
    return call


# ---------------------------------------------------------------------------------------------
# Estimated wait time


def average_handle_seconds(queue: Queue | None, *, now: dt.datetime | None = None) -> float:
    now = now or timezone.now()
    recent = (
        Call.objects.filter(
            queue=queue, status=CallStatus.ENDED, assigned_at__isnull=False, ended_at__gte=now - RECENT_WINDOW
        )
        .order_by("-ended_at")
        .values_list("pk", flat=True)[:RECENT_CALLS]
    )
    average = (
        Call.objects.filter(pk__in=list(recent))
        .annotate(handled=ExpressionWrapper(F("ended_at") - F("assigned_at"), output_field=DurationField()))
        .aggregate(avg=Avg("handled"))["avg"]
    )
    return average.total_seconds() if average else DEFAULT_HANDLE_SECONDS


def estimated_wait_seconds(call: Call, *, now: dt.datetime | None = None) -> int:
    """EWT = ceil((calls ahead + 1) × AHT ÷ max(available agents, 1)); see the module's text."""
    queue = call.queue
    ahead = (
        Call.objects.filter(queue=queue, status=CallStatus.QUEUED, queued_at__lt=call.queued_at)
        .exclude(pk=call.pk)
        .count()
        if call.queued_at
        else 0
    )
    agents = queue_agents(queue).filter(status=AgentStatus.AVAILABLE).count() if queue is not None else 0
    return math.ceil((ahead + 1) * average_handle_seconds(queue, now=now) / max(agents, 1))


# ---------------------------------------------------------------------------------------------
# The consent prompt (B1)


def can_receive_sms(number: str) -> bool:
    """A number written in E.164 that is not a fixed line (anonymous and withheld caller ids,
    short codes and landlines cannot be texted)."""
    parsed = parse_e164(number)
    if parsed is None:
        return False
    return phonenumbers.number_type(parsed) != phonenumbers.PhoneNumberType.FIXED_LINE


def texting_refusal(call: Call, *, non_us_allowed: bool) -> str:
    """Why the caller cannot be texted from the call's SMS number ("" when they can)."""
    if call.sms_number is None:
        return "No in-call SMS number is set up."
    if not can_receive_sms(call.caller_number):
        return "The caller's number cannot receive text messages."
    if not non_us_allowed and not is_us_number(call.caller_number):
        return "Non US phone number service is not enabled"
    if is_do_not_contact(call.caller_number, call.sms_number.number):
        return "The caller opted out of text messages (STOP)."
    return ""


def _due_at(call: Call, rules: WaitTimeRules) -> dt.datetime | None:
    reference = call.last_prompt_at or call.queued_at or call.created_at
    return reference + dt.timedelta(seconds=rules.interval_seconds) if reference else None


def consent_refusal(call: Call, *, now: dt.datetime | None = None, in_call: InCallSmsSettings | None = None) -> str:
    """Why the consent prompt is not played now ("" when it is due). The cheap checks come
    first; the estimated wait last."""
    now = now or timezone.now()
    in_call = in_call or InCallSmsSettings.load()
    rules = wait_time_rules(call.queue, in_call)
    if call.status != CallStatus.QUEUED:
        return "The call is not waiting in a queue."
    if not rules.enabled:
        return "Wait-time SMS is off for this queue."
    if call.wait_time_sms_status in (WaitTimeSmsStatus.ALLOWED, WaitTimeSmsStatus.DENIED):
        return f"The caller already answered: {call.wait_time_sms_status}."
    if rules.play_limit is not None and call.prompt_plays >= rules.play_limit:
        return "The consent prompt was played as often as allowed."
    refusal = texting_refusal(call, non_us_allowed=in_call.non_us_wait_time_allowed)
    if refusal:
        return refusal
    if call.consent_deadline_at is not None and call.consent_deadline_at > now:
        return "The caller is being asked right now."
    due = _due_at(call, rules)
    if due is not None and now < due:
        return "Not yet: the announcement interval has not passed."
    if rules.min_wait_seconds is not None or rules.max_wait_seconds is not None:
        wait = estimated_wait_seconds(call, now=now)
        if rules.min_wait_seconds is not None and wait < rules.min_wait_seconds:
            return f"The estimated wait ({wait} s) is below the minimum."
        if rules.max_wait_seconds is not None and wait > rules.max_wait_seconds:
            return f"The estimated wait ({wait} s) is above the maximum."
    return ""


class WaitStep(NamedTuple):
    """What the caller on hold hears next: the consent prompt, or hold for `hold_seconds`."""

    action: str  # "consent" | "hold"
    prompt: Prompt | None
    hold_seconds: int
    reason: str = ""


def wait_step(*, call_sid: str, now: dt.datetime | None = None) -> tuple[Call, WaitStep]:
    """The caller is on hold and the IVR asks what comes next. When the consent prompt is due
    it is counted as played now."""
    now = now or timezone.now()
    with transaction.atomic():
        call = _lock_call(call_sid)
        in_call = InCallSmsSettings.load()
        reason = consent_refusal(call, now=now, in_call=in_call)
        if not reason:
            call.prompt_plays += 1
            call.last_prompt_at = now
            fields = ["prompt_plays", "last_prompt_at"]
            if call.source == CallSource.IVR_API:
                call.consent_deadline_at = now + dt.timedelta(seconds=CONSENT_TIMEOUT_SECONDS)
                fields.append("consent_deadline_at")
            call.save(update_fields=fields)
            events.call_updated(call)
            return call, WaitStep("consent", consent_prompt(call), 0)
        due = _due_at(call, wait_time_rules(call.queue, in_call))
        seconds = (due - now).total_seconds() if due is not None and due > now else HOLD_MAX_SECONDS
        hold = int(min(max(seconds, HOLD_MIN_SECONDS), HOLD_MAX_SECONDS))
        return call, WaitStep("hold", None, hold, reason)


class DigitOutcome(NamedTuple):
    outcome: str  # allowed | denied | incorrect | no_response | ignored
    prompts: list[Prompt]
    ask_again: bool  # the consent prompt follows at once (after an incorrect digit)


def apply_digit(*, call_sid: str, digit: str, now: dt.datetime | None = None) -> tuple[Call, DigitOutcome]:
    """The caller's answer to the consent prompt (SPEC B1). A digit for a call that was not asked,
    or that already answered, changes nothing (`ignored`): a retried webhook sends no second SMS."""
    now = now or timezone.now()
    digit = (digit or "").strip()
    with transaction.atomic():
        call = _lock_call(call_sid)
        answered = call.wait_time_sms_status in (WaitTimeSmsStatus.ALLOWED, WaitTimeSmsStatus.DENIED)
        if call.status != CallStatus.QUEUED or answered or call.prompt_plays == 0:
            return call, DigitOutcome("ignored", [], False)
        call.consent_deadline_at = None
        if digit == "1":
            call.wait_time_sms_status = WaitTimeSmsStatus.ALLOWED
            call.save(update_fields=["wait_time_sms_status", "consent_deadline_at"])
            _send_wait_time_sms(call)
            result = DigitOutcome("allowed", [sms_sent_prompt(call)], False)
        elif digit == "2":
            call.wait_time_sms_status = WaitTimeSmsStatus.DENIED
            call.save(update_fields=["wait_time_sms_status", "consent_deadline_at"])
            result = DigitOutcome("denied", [], False)
        elif not digit:
            call.wait_time_sms_status = WaitTimeSmsStatus.NO_RESPONSE
            call.save(update_fields=["wait_time_sms_status", "consent_deadline_at"])
            result = DigitOutcome("no_response", [], False)
        else:
            # Asked again at once; not counted as another play (it is the same offer).
            if call.source == CallSource.IVR_API:
                call.consent_deadline_at = now + dt.timedelta(seconds=CONSENT_TIMEOUT_SECONDS)
            call.save(update_fields=["consent_deadline_at"])
            result = DigitOutcome("incorrect", [incorrect_selection_prompt(call), consent_prompt(call)], True)
        log.info("call %s: digit %r → %s", call_sid, digit, result.outcome)
        events.call_updated(call)
        return call, result


def _send_wait_time_sms(call: Call) -> None:
    chat = _open_sms_side(call, ChatType.WAIT_TIME_SMS)
    body = messages_for(call.language).wait_time_sms_text
    try:
        services.send_text(chat=chat, body=body, kind="blending")
    except SendRefused as exc:
        ChatEvent.objects.create(chat=chat, kind="wait_time_sms.refused", data={"error": exc.message})
        log.warning("call %s: wait-time SMS refused: %s", call.call_sid, exc.message)


def sweep_calls(now: dt.datetime | None = None) -> int:
    """IVR API calls whose consent prompt got no digit in 10 seconds: `no_response`, asked again
    at the next interval. Run by chats.sweepers.run_sweepers."""
    now = now or timezone.now()
    done = 0
    with transaction.atomic():
        due = list(
            Call.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(consent_deadline_at__lte=now)
            .order_by("consent_deadline_at")[:500]
        )
        for call in due:
            call.consent_deadline_at = None
            fields = ["consent_deadline_at"]
            if call.status == CallStatus.QUEUED and call.wait_time_sms_status in (
                WaitTimeSmsStatus.NONE, WaitTimeSmsStatus.NO_RESPONSE
            ):
                call.wait_time_sms_status = WaitTimeSmsStatus.NO_RESPONSE
                fields.append("wait_time_sms_status")
                done += 1
                events.call_updated(call)
            call.save(update_fields=fields)
    return done


# ---------------------------------------------------------------------------------------------
# The SMS side of a call


def _open_sms_side(call: Call, chat_type: str) -> Chat:
    """The call's chat with the caller, created on first use. The caller holds the call's lock."""
    if call.chat is not None and call.chat.is_active:
        return call.chat
    # A blended chat an earlier call left open between the same two numbers ends first (one
    # active chat per pair).
    for old in Chat.objects.active_between(call.caller_number, call.sms_number).filter(chat_type__in=BLENDED_CHAT_TYPES):
        services.end_chat(chat=old, by=DisconnectedBy.SYSTEM, reason=FinishReason.CALL_ENDED, notify_consumer=False)
    chat = Chat.objects.create(
        consumer_number=call.caller_number,
        portal_number=call.sms_number,
        chat_type=chat_type,
        start_type=StartType.OUTBOUND,
        language=call.language,
        language_chosen=True,
        crm_record=call.crm_record,
    )
    Participant.objects.create(chat=chat, type=ParticipantType.END_USER)
    ChatEvent.objects.create(chat=chat, kind="created", by=f"call:{call.pk}", data={"call_id": call.pk})
    if call.status == CallStatus.ASSIGNED:
        _connect_sms_side(chat, call)
    else:
        transition(chat, ChatStatus.QUEUED, by=f"call:{call.pk}", call_id=call.pk)
    call.chat = chat
    call.save(update_fields=["chat"])
    if call.status == CallStatus.ASSIGNED:
        events.call_updated(call)  # the agent's page follows the new SMS side (sms_chat_id)
    return chat


def _connect_sms_side(chat: Chat, call: Call) -> None:
    if chat.status == ChatStatus.ASSIGNED:
        return
    chat.crm_record = call.crm_record
    transition(chat, ChatStatus.ASSIGNED, by=f"call:{call.pk}", extra_fields=("crm_record",), call_id=call.pk, agent_id=call.agent_id)
    Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=call.agent)


def _consumer_messages(chat: Chat | None):
    if chat is None:
        return Message.objects.none()
    return Message.objects.filter(chat=chat, author=Author.CONSUMER)


def _message_lines(chat: Chat) -> list[dict]:
    lines = []
    for message in chat.messages.order_by("created_at", "pk").prefetch_related("media"):
        line = {"at": message.created_at.isoformat(), "author": message.author, "body": message.body}
        media = [{"content_type": m.content_type, "media_id": m.pk, "file": m.file.name} for m in message.media.all()]
        if media:
            line["media"] = media
        lines.append(line)
    return lines


def _post_received_texts(call: Call, kind: str) -> None:
    """Post what the caller sent so far to the call's CRM record (SPEC B1)."""
    chat = call.chat
    if chat is None or call.crm_record is None or not _consumer_messages(chat).exists():
        return
    lines = [line for line in _message_lines(chat) if line["author"] == Author.CONSUMER]
    text = "\n".join(
        " ".join([line["body"], *(f"<{m['content_type']}>" for m in line.get("media", []))]).strip() for line in lines
    )
    crm.add_entry(call.crm_record, kind, text, lines=lines, chat_id=chat.pk)


def sms_side_for_text(*, consumer_number: str, number: PhoneNumber) -> Chat | None:
    """A text to an in-call SMS number with no active chat: when the sender has an active call
    that allowed wait-time SMS or has an in-call session, the SMS side of that call opens again
    and the text attaches to it (chats.flow records it)."""
    call = (
        Call.objects.active()
        .select_for_update(of=("self",))
        .select_related("queue", "sms_number", "chat")
        .filter(caller_number=consumer_number, sms_number=number)
        .filter(Q(wait_time_sms_status=WaitTimeSmsStatus.ALLOWED) | Q(in_call_sms_open=True))
        .order_by("-pk")
        .first()
    )
    if call is None:
        return None
    chat_type = ChatType.IN_CALL_SMS if call.in_call_sms_open else ChatType.WAIT_TIME_SMS
    return _open_sms_side(call, chat_type)


def caller_texted(*, chat: Chat, message: Message) -> str:
    """The caller's text (or picture, or video) on the SMS side of a call, already in the chat's
    transcript: the agent on the call hears it live, and it goes to the call's CRM record."""
    call = Call.objects.filter(chat=chat).order_by("-pk").first()
    if call is None:
        return "message"
    if call.status == CallStatus.ASSIGNED and call.agent_id:
        events.call_message(call, message)
        first = chat.chat_type == ChatType.WAIT_TIME_SMS and _consumer_messages(chat).count() == 1
        if call.chat_id == chat.pk and first:
            events.call_banner(call, message_count=1, media_count=message.media.count())
        media = [{"content_type": m.content_type, "media_id": m.pk} for m in message.media.all()]
        crm.add_entry(call.crm_record, "call_sms", message.body, media=media, chat_id=chat.pk)
    return "call_sms"


def answer_after_session(*, inbound: InboundMessage, number: PhoneNumber) -> str:
    """A text to an in-call SMS number from a caller whose SMS session ended: the after-session
    auto response, if on (SPEC B2). Returns "" when nothing applies."""
    in_call = InCallSmsSettings.load()
    last = (
        Chat.objects.filter(
            consumer_number=inbound.from_number, portal_number=number, chat_type__in=BLENDED_CHAT_TYPES,
            status=ChatStatus.FINISHED,
        )
        .order_by("-ends_at", "-pk")
        .first()
    )
    if last is None or not in_call.after_session_auto_response_enabled:
        return ""
    body = messages_for(last.language, in_call).after_session_auto_response
    if body:
        try:
            queue_sms(to=inbound.from_number, from_number=number.number, body=body, kind="blending")
        except SendRefused as exc:  # the same answer a moment ago (duplicate limiter): once is enough
            log.info("after-session auto response to %s not sent: %s", inbound.from_number, exc.message)
    return "after_session_auto_response"


# ---------------------------------------------------------------------------------------------
# The call reaches an agent, or ends


def call_assigned(*, call_sid: str, agent: AgentProfile) -> Call:
    """The call reached `agent`: its CRM record opens with what the caller texted while waiting,
    and the agent's adapter hears the call (and the banner when texts were received)."""
    with transaction.atomic():
        call = _lock_call(call_sid)
        if call.status == CallStatus.ASSIGNED and call.agent_id == agent.pk:
            return call
        if call.status != CallStatus.QUEUED:
            raise ChatActionError(f"Call {call_sid} is {call.status}; it cannot be assigned.", code="finished")
        call.status = CallStatus.ASSIGNED
        call.agent = agent
        call.assigned_at = timezone.now()
        call.consent_deadline_at = None
        call.crm_record = crm.open_record(
            reference=f"call:{call.pk}",
            number=call.caller_number,
            language=call.language,
            queue_name=call.queue.name if call.queue else "",
        )
        call.save(update_fields=["status", "agent", "assigned_at", "consent_deadline_at", "crm_record"])
        crm.add_entry(call.crm_record, "call_connected", f"Call {call.call_sid} connected to {agent}", agent_id=agent.pk)
        received = media = 0
        if call.chat_id is not None:
            # The SMS side's own row lock, as every move of a chat takes (the caller may be texting
            # STOP to it right now); after the call's, in the order call_ended takes them.
            call.chat = Chat.objects.select_for_update(of=("self",)).get(pk=call.chat_id)
        if call.chat is not None and call.chat.is_active:
            _connect_sms_side(call.chat, call)
            received = _consumer_messages(call.chat).count()
            media = _consumer_messages(call.chat).filter(media__isnull=False).distinct().count()
            _post_received_texts(call, "wait_time_sms")
        events.call_updated(call)
        if received:
            events.call_banner(call, message_count=received, media_count=media)
    return call


def call_ended(*, call_sid: str) -> Call:
    """The call is over: a call that never reached an agent is abandoned. The SMS side ends with
    it (the closing SMS first, when on); an abandoned call may get a CRM ticket (SPEC C8)."""
    with transaction.atomic():
        call = _lock_call(call_sid)
        if not call.is_active:
            return call
        abandoned = call.status == CallStatus.QUEUED
        call.status = CallStatus.ABANDONED if abandoned else CallStatus.ENDED
        call.ended_at = timezone.now()
        call.consent_deadline_at = None
        call.save(update_fields=["status", "ended_at", "consent_deadline_at"])
        if abandoned:
            _abandoned_call_ticket(call)
        _end_sms_side(call)
        events.call_updated(call)
    return call


def _end_sms_side(call: Call) -> None:
    chat = call.chat
    if chat is None or not chat.is_active:
        return
    in_call = InCallSmsSettings.load()
    if in_call.closing_sms_enabled:
        body = messages_for(chat.language, in_call).closing_sms
        if body:
            try:
                services.send_text(chat=chat, body=body, kind="blending")
            except SendRefused as exc:
                log.info("call %s: closing SMS not sent: %s", call.call_sid, exc.message)
    services.end_chat(chat=chat, by=DisconnectedBy.SYSTEM, reason=FinishReason.CALL_ENDED, notify_consumer=False)


def _abandoned_call_ticket(call: Call) -> None:
    operation = OperationSettings.load()
    if not operation.abandoned_call_ticket:
        return
    has_sms = _consumer_messages(call.chat).exists()
    if operation.abandoned_ticket_only_with_sms and not has_sms:
        return
    call.crm_record = crm.open_record(
        reference=f"call:{call.pk}", number=call.caller_number, language=call.language,
        queue_name=call.queue.name if call.queue else "",
    )
    call.save(update_fields=["crm_record"])
    crm.add_entry(call.crm_record, "abandoned_call", f"Call {call.call_sid} abandoned before reaching an agent")
    if call.chat is not None:
        Chat.objects.filter(pk=call.chat_id).update(crm_record=call.crm_record)
        call.chat.crm_record = call.crm_record
        _post_received_texts(call, "wait_time_sms")


# ---------------------------------------------------------------------------------------------
# In-call SMS (B2) and app links (B3), by the agent on the call


def _lock_agents_call(agent: AgentProfile, call: Call) -> Call:
    call = _lock_call(call.call_sid)
    if call.agent_id != agent.pk or call.status != CallStatus.ASSIGNED:
        raise ChatActionError("You are not on this call.", code="not_held")
    return call


def in_call_refusal(call: Call, in_call: InCallSmsSettings | None = None) -> str:
    in_call = in_call or InCallSmsSettings.load()
    if not (in_call.in_call_sms_enabled and call.queue is not None and call.queue.in_call_sms_enabled):
        return "In-call SMS is not enabled for this queue."
    return texting_refusal(call, non_us_allowed=in_call.non_us_in_call_allowed)


def open_in_call_session(*, agent: AgentProfile, call: Call) -> Call:
    """The agent opens an SMS session with the caller (SPEC B2). The caller's texts, pictures and
    videos then reach the agent live until the call ends."""
    with transaction.atomic():
        call = _lock_agents_call(agent, call)
        refusal = in_call_refusal(call)
        if refusal:
            raise ChatActionError(refusal, code="refused")
        _open_sms_side(call, ChatType.IN_CALL_SMS)
        if not call.in_call_sms_open:
            call.in_call_sms_open = True
            call.save(update_fields=["in_call_sms_open"])
            ChatEvent.objects.create(chat=call.chat, kind="in_call_sms.opened", by=f"agent:{agent.pk}", data={"call_id": call.pk})
            events.call_updated(call)
    return call


def presets_for(call: Call) -> list[PresetMessage]:
    """The preset messages in the call's language (else the default language)."""
    presets = list(PresetMessage.objects.filter(language=call.language))
    if not presets:
        presets = list(PresetMessage.objects.filter(language=ChatSettings.load().default_language))
    return presets


def send_in_call_sms(
    *, agent: AgentProfile, call: Call, preset: PresetMessage | None = None, body: str = ""
) -> Message:
    """A preset message, or a custom one of at most 918 characters when custom messages are
    allowed. Opens the session first if the agent had not yet."""
    in_call = InCallSmsSettings.load()
    if preset is None:
        body = (body or "").strip()
        if not in_call.custom_messages_allowed:
            raise ChatActionError("Only the preset messages can be sent; custom messages are off.", code="custom_off")
        if not body:
            raise ChatActionError("Write a message first.", code="empty")
        if len(body) > in_call.custom_message_limit:
            raise ChatActionError(
                f"The message has {len(body)} characters; the most is {in_call.custom_message_limit}.",
                code="too_long",
            )
    else:
        body = preset.text
    open_in_call_session(agent=agent, call=call)
    with transaction.atomic():
        call = _lock_agents_call(agent, call)
        return _agent_sends(call, agent, body)


def _agent_sends(call: Call, agent: AgentProfile, body: str) -> Message:
    chat = Chat.objects.select_for_update(of=("self",)).select_related("portal_number").get(pk=call.chat_id)
    try:
        message = services.send_text(chat=chat, body=body, author=Author.AGENT, agent=agent, kind="blending")
    except SendRefused as exc:
        raise ChatActionError(exc.message, code="send_refused") from exc
    chat.last_agent_message_at = timezone.now()
    chat.save(update_fields=["last_agent_message_at"])
    crm.add_entry(call.crm_record, "call_sms_sent", body, agent_id=agent.pk, chat_id=chat.pk)
    events.call_message(call, message)
    return message


def app_link_url(platform: str, link: str, operation: OperationSettings | None = None) -> str:
    operation = operation or OperationSettings.load()
    return {
        ("ios", "download"): operation.ios_app_store_url,
        ("ios", "launch"): operation.ios_open_url,
        ("android", "download"): operation.google_play_url,
        ("android", "launch"): operation.android_open_url,
    }.get((platform, link), "")


def available_app_links(operation: OperationSettings | None = None) -> list[dict]:
    operation = operation or OperationSettings.load()
    if not operation.app_links_enabled:
        return []
    return [
        {"platform": platform, "link": link}
        for platform in ("ios", "android")
        for link in ("download", "launch")
        if app_link_url(platform, link, operation)
    ]


def send_app_link(*, agent: AgentProfile, call: Call, platform: str, link: str) -> Message:
    """One click: the download or launch link of the company's app for the caller's platform
    (SPEC B3, C8). Needs the app links on, not in-call SMS."""
    operation = OperationSettings.load()
    if not operation.app_links_enabled:
        raise ChatActionError("Sending app links is turned off.", code="disabled")
    if platform not in ("ios", "android") or link not in APP_LINK_TEXTS:
        raise ChatActionError("Pick ios or android, and download or launch.", code="invalid")
    url = app_link_url(platform, link, operation)
    if not url:
        name = "iOS" if platform == "ios" else "Android"
        raise ChatActionError(f"No {name} {link} link is set up in the operation settings.", code="invalid")
    with transaction.atomic():
        call = _lock_agents_call(agent, call)
        refusal = texting_refusal(call, non_us_allowed=InCallSmsSettings.load().non_us_in_call_allowed)
        if refusal:
            raise ChatActionError(refusal, code="refused")
        _open_sms_side(call, ChatType.IN_CALL_SMS)
        message = _agent_sends(call, agent, APP_LINK_TEXTS[link].format(url=url))
        ChatEvent.objects.create(
            chat_id=call.chat_id, kind="app_link.sent", by=f"agent:{agent.pk}", data={"platform": platform, "link": link}
        )
    return message


def wait_time_sms_received(call: Call) -> dict:
    """What the banner says: how many texts and pictures the caller sent on the call's SMS side."""
    messages = _consumer_messages(call.chat)
    return {
        "received": messages.exists(),
        "message_count": messages.count(),
        "media_count": messages.filter(media__isnull=False).distinct().count(),
    }
