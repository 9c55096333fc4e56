"""Pre-session SMS deflection (SPEC B4, seed 001 "SMS Product Line Overview"): a caller waiting in
an IVR queue with deflection on, whose estimated wait reaches the queue's threshold, is offered
once to continue by text ("press 3"). On 3 the IVR is told to hang up, the call becomes
`deflected`, and an SMS chat starts in the queue's deflection queue — chat type SMS, start type
Deflection, already `queued` with the caller's place (its `queued_at` is the call's), texted from
the call's in-call number, else that queue's outbound number. The call's CRM record gets both events
and is the chat's record.

`chats.calls.consent` asks `offer_refusal` at each wait step (before the wait-time SMS prompt)
and hands digit 3 to `deflect`; the Twilio Voice webhooks and the JSON IVR API answer from there."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone

from chats import assignment
from chats.calls import lifecycle, rules
from chats.models import (
    ACTIVE_STATUSES,
    Call,
    CallStatus,
    Chat,
    ChatEvent,
    ChatEventKind,
    ChatType,
    Participant,
    ParticipantType,
    StartType,
)
from portal import crm
from portal.models import ChatSettings
from queues.models import Queue, QueueBlendingMessages
from sms.models import NumberRole, PhoneNumber, Verification
from sms.pipeline import is_do_not_contact

log = logging.getLogger(__name__)

DIGIT = "3"
DEFAULT_PROMPT = "To continue by text message instead, press 3. We will keep your place in line."
DEFAULT_GOODBYE = "We are texting you now. Goodbye."


def target_queue(call: Call) -> Queue | None:
    queue = call.queue
    if queue is None:
        return None
    return queue.deflection_queue or queue


def sms_number(call: Call) -> PhoneNumber | None:
    """The number the chat texts from: the call's in-call SMS number (the one its wait-time SMS
    would come from), else the target queue's verified outbound number."""
    if call.sms_number is not None:
        return call.sms_number
    queue = target_queue(call)
    if queue is None:
        return None
    return (
        PhoneNumber.objects.filter(
            queue_links__queue=queue, queue_links__role=NumberRole.OUTBOUND, verification=Verification.VERIFIED
        )
        .order_by("pk")
        .first()
    )


def offer_refusal(call: Call, estimated_wait: Callable[[], int]) -> str:
    """Why the offer is not made now ("" when it is): deflection off for the queue, already
    offered, a caller who cannot be texted or opted out, no number to text from, an active chat
    on that number already, or an estimated wait below the queue's threshold (asked last)."""
    queue = call.queue
    if call.status != CallStatus.QUEUED or queue is None or not queue.deflection_enabled:
        return "Deflection is off for this queue."
    if call.deflection_offered_at is not None:
        return "Deflection was offered already."
    if not rules.can_receive_sms(call.caller_number):
        return "The caller's number cannot receive text messages."
    number = sms_number(call)
    if number is None:
        return "No number to text the caller from."
    if is_do_not_contact(call.caller_number, number.number):
        return "The caller opted out of text messages (STOP)."
    if Chat.objects.filter(consumer_number=call.caller_number, portal_number=number, status__in=ACTIVE_STATUSES).exists():
        return "The caller already has a chat on that number."
    wait = estimated_wait()
    if wait < queue.deflection_min_wait_seconds:
        return f"The estimated wait ({wait} s) is below the deflection threshold."
    return ""


def mark_offered(call: Call, now: dt.datetime) -> rules.Prompt:
    """The offer is made now (the caller holds the call's lock): counted, and its prompt."""
    call.deflection_offered_at = now
    call.save(update_fields=["deflection_offered_at"])
    return rules.Prompt(_text(call, "deflection_prompt", DEFAULT_PROMPT), call.language, False, "deflection")


def can_accept(call: Call) -> bool:
    return call.status == CallStatus.QUEUED and call.deflection_offered_at is not None and call.deflected_chat_id is None


def deflect(call: Call) -> rules.Prompt | None:
    """Digit 3 after the offer (the caller holds the call's lock): the SMS chat starts, queued
    with the caller's place; the call is `deflected`. Returns the goodbye prompt, or None when the
    chat could not start (then the caller keeps waiting on the line)."""
    queue, number = target_queue(call), sms_number(call)
    if queue is None or number is None:
        return None
    chat_settings = ChatSettings.load()
    language = call.language if call.language in (chat_settings.enabled_languages or [call.language]) else chat_settings.default_language
    try:
        with transaction.atomic():
            chat = Chat.objects.create(
                consumer_number=call.caller_number,
                portal_number=number,
                chat_type=ChatType.SMS,
                start_type=StartType.DEFLECTION,
                language=language,
                language_chosen=True,
            )
    except IntegrityError:
        log.info("call %s: not deflected, the caller already has a chat on %s", call.call_sid, number.number)
        return None
    Participant.objects.create(chat=chat, type=ParticipantType.END_USER)
    ChatEvent.objects.create(chat=chat, kind=ChatEventKind.CREATED, by=f"call:{call.pk}", data={"deflected_from_call": call.pk})
    if call.crm_record is None:
        call.crm_record = crm.open_record(
            reference=f"call:{call.pk}", number=call.caller_number, language=call.language, queue_name=call.queue.name
        )
    crm.add_entry(call.crm_record, "deflection_offered", "Offered to continue by text", at=call.deflection_offered_at.isoformat())
    crm.add_entry(call.crm_record, "deflected", f"Continued by text: chat {chat.pk} in {queue}", chat_id=chat.pk)
    chat.crm_record = call.crm_record
    chat.save(update_fields=["crm_record"])
    lifecycle.move_call(call, CallStatus.DEFLECTED)
    call.deflected_chat = chat
    call.ended_at = timezone.now()
    call.consent_deadline_at = None
    call.save(update_fields=["status", "deflected_chat", "ended_at", "consent_deadline_at", "crm_record"])
    assignment.queue_chat(chat=chat, queue=queue, by=f"call:{call.pk}", queued_at=call.queued_at)
    log.info("call %s deflected to chat %s in %s", call.call_sid, chat.pk, queue)
    return rules.Prompt(_text(call, "deflection_goodbye", DEFAULT_GOODBYE), call.language, False, "deflection_goodbye")


def _text(call: Call, field: str, default: str) -> str:
    row = QueueBlendingMessages.objects.filter(queue=call.queue, language=call.language).first() if call.queue else None
    return (getattr(row, field, "") or "").strip() or default
