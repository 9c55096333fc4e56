"""The call's own lifecycle (SPEC B1): a caller enters an IVR queue (`queue_call`), reaches an
agent (`assign_call`: the CRM record opens with what the caller texted while waiting, and the
agent's adapter hears the call and the "Wait Time SMS Received" banner), or ends (`end_call`:
the SMS side closes with the closing SMS; an abandoned call with SMS data gets a CRM ticket when
the operation settings say so, SPEC C8). `Call.status` moves only through `move_call`, by the
table CALL_MOVES."""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from chats import events
from chats.calls import sms_side
from chats.models import (
    Call,
    CallSource,
    CallStatus,
    Chat,
)
from chats.errors import ChatActionError
from portal import crm
from portal.models import (
    AgentProfile,
    ChatSettings,
    OperationSettings,
)
from queues.models import Queue
from sms.models import NumberUsage, PhoneNumber

log = logging.getLogger(__name__)


class CallNotFound(ChatActionError):
    def __init__(self, call_sid: str):
        super().__init__(f"There is no call {call_sid}.", code="not_found")


def sms_number_for(dialed_number: str = "") -> PhoneNumber | None:
    """The in-call SMS number of a call: the number the caller dialed when it is one, else the
    first verified in-call SMS number."""
    numbers = PhoneNumber.objects.verified().filter(usage=NumberUsage.IN_CALL)
    if dialed_number:
        dialed = numbers.filter(number=dialed_number).first()
        if dialed is not None:
            return dialed
    return numbers.order_by("number").first()


def queue_call(
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


def lock_call(call_sid: str) -> Call:
    call = (
        Call.objects.select_for_update(of=("self",))
        .select_related("queue", "sms_number", "chat")
        .filter(call_sid=call_sid)
        .first()
    )
    if call is None:
        raise CallNotFound(call_sid)
    return call


# The one transition table of a call's status (DESIGN rule 2).
CALL_MOVES = {
    CallStatus.QUEUED: {CallStatus.ASSIGNED, CallStatus.ABANDONED, CallStatus.DEFLECTED},
    CallStatus.ASSIGNED: {CallStatus.ENDED},
    CallStatus.ABANDONED: set(),
    CallStatus.ENDED: set(),
    CallStatus.DEFLECTED: set(),
}


def move_call(call: Call, new_status: str) -> None:
    """Set the call's status by CALL_MOVES (the caller holds its row lock and saves it); raises
    ChatActionError for a move the table does not allow."""
    if new_status not in CALL_MOVES.get(call.status, set()):
        raise ChatActionError(f"Call {call.call_sid} is {call.status}; it cannot be {new_status}.", code="finished")
    call.status = new_status


def assign_call(*, call_sid: str, agent: AgentProfile) -> Call:
    """The call reached `agent`: its CRM record opens with what the caller texted while waiting,
    and the agent's adapter hears the call (and the banner when texts were received)."""
    with transaction.atomic():
        call = lock_call(call_sid)
        if call.status == CallStatus.ASSIGNED and call.agent_id == agent.pk:
            return call
        move_call(call, CallStatus.ASSIGNED)
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
            call.chat = (
                Chat.objects.select_for_update(of=("self",))
                .select_related("portal_number", "queue")
                .get(pk=call.chat_id)
            )
        if call.chat is not None and call.chat.is_active:
            sms_side.connect_sms_side(call.chat, call)
            received = sms_side.consumer_messages(call.chat).count()
            media = sms_side.consumer_messages(call.chat).filter(media__isnull=False).distinct().count()
            sms_side.post_received_texts(call, "wait_time_sms")
        events.call_updated(call)
        if received:
            events.call_banner(call, message_count=received, media_count=media)
    return call


def end_call(*, call_sid: str) -> Call:
    """The call is over: a call that never reached an agent is abandoned. The SMS side ends with
    it (the closing SMS first, when on); an abandoned call may get a CRM ticket (SPEC C8)."""
    with transaction.atomic():
        call = lock_call(call_sid)
        if not call.is_active:
            return call
        abandoned = call.status == CallStatus.QUEUED
        move_call(call, CallStatus.ABANDONED if abandoned else CallStatus.ENDED)
        call.ended_at = timezone.now()
        call.consent_deadline_at = None
        call.save(update_fields=["status", "ended_at", "consent_deadline_at"])
        if abandoned:
            _abandoned_call_ticket(call)
        sms_side.end_sms_side(call)
        events.call_updated(call)
    return call


def _abandoned_call_ticket(call: Call) -> None:
    operation = OperationSettings.load()
    if not operation.abandoned_call_ticket:
        return
    has_sms = sms_side.consumer_messages(call.chat).exists()
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
        sms_side.post_received_texts(call, "wait_time_sms")
