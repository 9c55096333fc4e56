"""The SMS side of a call (SPEC B1, B2): a chat of type Wait-time SMS or In-call SMS between the
caller and an in-call SMS number. Never routed (no queue), never timed (no deadline), never in
the SMS adapter's list (no `chat.agent`: the agent is the call's). Its statuses follow the call:
queued while the call waits, assigned when it reaches an agent, finished with it. The caller's
texts to that number attach to it (chats.flow sends them here: `on_caller_text`)."""
from __future__ import annotations

import logging

from django.db.models import Q

from chats import events, services, transcript
from chats.calls import rules
from chats.models import (
    ChatEventKind,
    BLENDED_CHAT_TYPES,
    Author,
    Call,
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
from chats.states import transition
from portal import crm
from portal.models import (
    InCallSmsSettings,
)
from sms.models import InboundMessage, PhoneNumber
from sms.pipeline import SendRefused, queue_sms

log = logging.getLogger(__name__)


def open_sms_side(call: Call, chat_type: str) -> Chat:
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
    ChatEvent.objects.create(chat=chat, kind=ChatEventKind.CREATED, by=f"call:{call.pk}", data={"call_id": call.pk})
    if call.status == CallStatus.ASSIGNED:
        connect_sms_side(chat, call)
    else:
        transition(chat, ChatStatus.QUEUED, by=f"call:{call.pk}", call_id=call.pk)
    call.chat = chat
    call.save(update_fields=["chat"])
    if call.status == CallStatus.ASSIGNED:
        events.call_updated(call)  # the agent's page follows the new SMS side (sms_chat_id)
    return chat


def connect_sms_side(chat: Chat, call: Call) -> None:
    if chat.status == ChatStatus.ASSIGNED:
        return
    chat.crm_record = call.crm_record
    transition(chat, ChatStatus.ASSIGNED, by=f"call:{call.pk}", extra_fields=("crm_record",), call_id=call.pk, agent_id=call.agent_id)
    Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=call.agent)


def consumer_messages(chat: Chat | None):
    if chat is None:
        return Message.objects.none()
    return Message.objects.filter(chat=chat, author=Author.CONSUMER)


def post_received_texts(call: Call, kind: str) -> None:
    """Post what the caller sent so far to the call's CRM record (SPEC B1)."""
    chat = call.chat
    if chat is None or call.crm_record is None or not consumer_messages(chat).exists():
        return
    lines = [line for line in transcript.transcript_lines(chat) if line["author"] == Author.CONSUMER]
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
    return open_sms_side(call, chat_type)


def on_caller_text(*, chat: Chat, message: Message) -> str:
    """The caller's text (or picture, or video) on the SMS side of a call, already in the chat's
    transcript: the agent on the call hears it live, and it goes to the call's CRM record."""
    call = Call.objects.filter(chat=chat).order_by("-pk").first()
    if call is None:
        return "message"
    if call.status == CallStatus.ASSIGNED and call.agent_id:
        events.call_message(call, message)
        first = chat.chat_type == ChatType.WAIT_TIME_SMS and consumer_messages(chat).count() == 1
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
    call = last.calls.select_related("queue").order_by("-pk").first()
    body = rules.messages_for(last.language, in_call, queue=call.queue if call else None).after_session_auto_response
    if body:
        try:
            queue_sms(to=inbound.from_number, from_number=number.number, body=body, kind="blending")
        except SendRefused as exc:  # the same answer a moment ago (duplicate limiter): once is enough
            log.info("after-session auto response to %s not sent: %s", inbound.from_number, exc.message)
    return "after_session_auto_response"


def end_sms_side(call: Call) -> None:
    chat = call.chat
    if chat is None or not chat.is_active:
        return
    in_call = InCallSmsSettings.load()
    if in_call.closing_sms_enabled:
        body = rules.messages_for(chat.language, in_call, queue=call.queue).closing_sms
        transcript.send_if_set(chat, body, what="closing SMS", kind="blending")
    services.end_chat(chat=chat, by=DisconnectedBy.SYSTEM, reason=FinishReason.CALL_ENDED, notify_consumer=False)


def wait_time_sms_received(call: Call) -> dict:
    """What the banner says: how many texts and pictures the caller sent on the call's SMS side."""
    messages = consumer_messages(call.chat)
    return {
        "received": messages.exists(),
        "message_count": messages.count(),
        "media_count": messages.filter(media__isnull=False).distinct().count(),
    }
