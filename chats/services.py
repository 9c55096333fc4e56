"""What agents do to chats (DESIGN rule 1): reply, end, transfer, start an outbound chat, mark read.
Beside it, one module per noun: `transcript` (what is said), `assignment` (queueing, routing,
offers), `crm_records` (a chat's CRM record), `api_sms` (the Outbound SMS API), `calls/` (calls).
Keyword-only arguments; the outermost caller owns the transaction; side effects leave after
commit; a refusal is `ChatActionError`."""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from chats import assignment, crm_records, surveys, transcript
from chats.models import (
    ParticipantStatus,
    ChatEventKind,
    Author,
    Chat,
    ChatEvent,
    ChatStatus,
    ChatType,
    DisconnectedBy,
    FinishReason,
    Message,
    Offer,
    Participant,
    ParticipantType,
    StartType,
    Transfer,
)
from chats.states import save_and_announce, transition, transition_many
from chats.deadlines import recompute_deadline
from chats.errors import ChatActionError
from portal import crm
from portal.models import AgentProfile, ChatSettings
from queues.hours import is_open
from queues.models import Queue
from queues.routing import is_eligible
from sms.models import ConsentSource, NumberRole, PhoneNumber
from sms.pipeline import SendRefused, add_do_not_contact, is_do_not_contact

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Agent actions


def _lock_held_chat(agent: AgentProfile, chat: Chat) -> Chat:
    chat = Chat.objects.select_for_update(of=("self",)).select_related("portal_number", "queue").get(pk=chat.pk)
    if chat.status == ChatStatus.FINISHED:
        raise ChatActionError("This chat has ended.", code="finished")
    if chat.agent_id != agent.pk or chat.status != ChatStatus.ASSIGNED:
        raise ChatActionError("You are not connected to this chat.", code="not_held")
    return chat


def send_agent_message(*, agent: AgentProfile, chat: Chat, body: str, media_urls: list[str] | None = None) -> Message:
    body = (body or "").strip()
    with transaction.atomic():
        chat = _lock_held_chat(agent, chat)
        try:
            message = transcript.send_text(chat=chat, body=body, author=Author.AGENT, agent=agent, kind="agent", media_urls=media_urls)
        except SendRefused as exc:
            raise ChatActionError(exc.message, code="send_refused") from exc
        if message is None:
            raise ChatActionError("Write a message first.", code="empty")
        chat.last_agent_message_at = timezone.now()
        fields = {"last_agent_message_at"} | recompute_deadline(chat)
        chat.save(update_fields=sorted(fields))
    return message


def end_chat(*, chat: Chat, by: str, reason: str, agent: AgentProfile | None = None, notify_consumer: bool = True) -> Chat:
    """Finish a chat (agent, consumer EXIT/STOP, timer). Frees the agent's capacity."""
    with transaction.atomic():
        if agent is not None:
            chat = _lock_held_chat(agent, chat)
        else:
            chat = Chat.objects.select_for_update(of=("self",)).select_related("portal_number", "queue").get(pk=chat.pk)
            if chat.status == ChatStatus.FINISHED:
                return chat
        if notify_consumer:
            # Before the transition: the agent's page hears the "chat ended" text while it still
            # follows the chat, then "finished", which makes it stop following.
            transcript.send_text(chat=chat, body=transcript.system_text(chat, "chat_ended"))
        finish_chats([chat], by=by, reasons={chat.pk: reason})
        surveys.send_survey(chat)
    return chat


def mark_do_not_contact(*, agent: AgentProfile, chat: Chat) -> Chat:
    """The consumer asked in words not to be texted any more (SPEC R2, FCC 2025: "any reasonable
    means"): their number goes on the do-not-contact list of this portal number, the consent
    ledger says which agent did it, they get the STOP confirmation, and the chat ends."""
    with transaction.atomic():
        chat = _lock_held_chat(agent, chat)
        add_do_not_contact(
            consumer_number=chat.consumer_number,
            portal_number=chat.portal_number.number,
            source=ConsentSource.AGENT,
            by=agent.user,
            text=f"Marked do not contact by {agent} in chat {chat.pk}",
        )
        transcript.send_text(chat=chat, body=ChatSettings.load().stop_confirmation, ignore_do_not_contact=True)
        finish_chats([chat], by=DisconnectedBy.AGENT, reasons={chat.pk: FinishReason.END_USER_STOPPED})
    return chat


def finish_chats(chats: list[Chat], *, by: str, reasons: dict[int, str]) -> None:
    """The one finish, for a chat or a batch of them (the timers' expiry), locked by the caller:
    each finished with its reason and who ended it, its participants ended and open offers
    withdrawn, its CRM record given the transcript, and each agent who held one given their next
    chat. Set-based: an UPDATE per finish reason, one INSERT of events, one UPDATE each for
    participants and offers."""
    if not chats:
        return
    for chat in chats:
        chat.finish_reason = reasons[chat.pk]
        chat.disconnected_by = by
    holders = {chat.agent_id: chat.agent for chat in chats if chat.agent_id}
    transition_many(
        chats,
        ChatStatus.FINISHED,
        by=by,
        extra_fields=("finish_reason", "disconnected_by"),
        data={chat.pk: {"reason": chat.finish_reason} for chat in chats},
    )
    now = timezone.now()
    Participant.objects.filter(chat__in=chats, ended_at__isnull=True).update(status=ParticipantStatus.ENDED, ended_at=now)
    Offer.objects.filter(chat__in=chats, status=Offer.Status.OFFERED).update(status=Offer.Status.WITHDRAWN, answered_at=now)
    for chat in chats:
        crm_records.close_crm_record(chat)
    for holder in holders.values():
        assignment.route_to_agent(agent=holder)


def transfer_chat(
    *, agent: AgentProfile, chat: Chat, to_agent: AgentProfile | None = None, to_queue: Queue | None = None
) -> Transfer:
    """Hand a chat to another agent (who must be eligible now) or put it in another queue. A
    failed transfer leaves the chat with the first agent (SPEC S7)."""
    if (to_agent is None) == (to_queue is None):
        raise ChatActionError("Choose either an agent or a queue to transfer to.", code="invalid")
    with transaction.atomic():
        chat = _lock_held_chat(agent, chat)
        transfer = Transfer.objects.create(chat=chat, from_agent=agent, to_agent=to_agent, to_queue=to_queue)
        ChatEvent.objects.create(chat=chat, kind=ChatEventKind.TRANSFER_BEGAN, by=f"agent:{agent.pk}", data={"transfer_id": transfer.pk})
        crm.add_entry(chat.crm_record, "transfer_began", _transfer_text(transfer))
        failure = _transfer_failure(chat, agent, to_agent, to_queue)
        if failure:
            transfer.status = Transfer.Status.FAILED
            transfer.reason = failure
            transfer.ended_at = timezone.now()
            transfer.save(update_fields=["status", "reason", "ended_at"])
            ChatEvent.objects.create(chat=chat, kind=ChatEventKind.TRANSFER_FAILED, data={"transfer_id": transfer.pk, "reason": failure})
            crm.add_entry(chat.crm_record, "transfer_failed", failure)
            save_and_announce(chat)  # the agent's page learns the chat stayed with them
            return transfer
        Participant.objects.filter(chat=chat, agent=agent, ended_at__isnull=True).update(
            status=ParticipantStatus.TRANSFERRED, ended_at=timezone.now()
        )
        if to_agent is not None:
            locked = AgentProfile.objects.select_for_update().get(pk=to_agent.pk)
            chat.agent = locked
            save_and_announce(chat, ["agent"], previous_status=chat.status, previous_agent_id=agent.pk)
            Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=locked)
            AgentProfile.objects.filter(pk=locked.pk).update(last_assignment_at=timezone.now())
        else:
            chat.agent = None
            chat.queue = to_queue
            # The new queue's hours decide which unanswered expiration applies (SPEC C3, S5).
            chat.queued_after_hours = not is_open(to_queue, timezone.now())
            transition(
                chat,
                ChatStatus.QUEUED,
                by=f"agent:{agent.pk}",
                extra_fields=("agent", "queue", "queued_after_hours"),
                previous_agent_id=agent.pk,
                transfer_id=transfer.pk,
            )
            transaction.on_commit(lambda: assignment.assign_waiting_chats(queue_id=to_queue.pk))
        transfer.status = Transfer.Status.ENDED
        transfer.ended_at = timezone.now()
        transfer.save(update_fields=["status", "ended_at"])
        ChatEvent.objects.create(chat=chat, kind=ChatEventKind.TRANSFER_ENDED, data={"transfer_id": transfer.pk})
        crm.add_entry(chat.crm_record, "transfer_ended", _transfer_text(transfer))
        assignment.route_to_agent(agent=agent)
    return transfer


def _transfer_failure(chat, agent, to_agent, to_queue) -> str:
    if to_agent is not None:
        if to_agent.pk == agent.pk:
            return "You already hold this chat."
        # Locked (chat row first, then agent row, as everywhere) so the capacity read here
        # still holds when the chat is handed over.
        target = AgentProfile.objects.select_for_update().filter(pk=to_agent.pk).first()
        if target is None or not is_eligible(target):
            return f"{to_agent} is not available."
        if assignment.agent_load(target) >= target.max_concurrent_chats:
            return f"{to_agent} has no room for another chat."
        return ""
    if not to_queue.sms_enabled:
        return f"Queue {to_queue.name} does not take SMS chats."
    if to_queue.children.exists():
        return f"{to_queue.name} is a menu; pick one of its queues."
    return ""


def _transfer_text(transfer: Transfer) -> str:
    target = transfer.to_agent or transfer.to_queue
    return f"Transfer from {transfer.from_agent} to {target}"


def start_outbound_chat(
    *, agent: AgentProfile, consumer_number: str, portal_number: PhoneNumber, body: str
) -> Chat:
    """An agent texts a consumer first (SPEC S9); `body` is the first message, required."""
    from sms.numbers import parse_e164

    chat_settings = ChatSettings.load()
    if not (chat_settings.sms_chat_enabled and chat_settings.outbound_sms_enabled):
        raise ChatActionError("Outbound SMS is turned off.", code="disabled")
    if parse_e164(consumer_number) is None:
        raise ChatActionError("Enter the consumer's number in E.164 form, e.g. +15551234567.", code="invalid_number")
    if not body.strip():
        raise ChatActionError("Write the first message: it is what the consumer sees.", code="invalid")
    link = (
        portal_number.queue_links.filter(role=NumberRole.OUTBOUND, queue__in=assignment.agent_queue_ids(agent))
        .select_related("queue")
        .first()
    )
    if link is None:
        raise ChatActionError(f"{portal_number.number} is not an outbound number of your queues.", code="invalid_number")
    if is_do_not_contact(consumer_number, portal_number.number):
        raise ChatActionError("This consumer opted out (STOP) and cannot be texted.", code="do_not_contact")
    with transaction.atomic():
        locked = AgentProfile.objects.select_for_update().get(pk=agent.pk)
        if assignment.agent_load(locked) >= locked.max_concurrent_chats:
            raise assignment._over_capacity(locked)
        try:
            with transaction.atomic():
                chat = Chat.objects.create(
                    consumer_number=consumer_number,
                    portal_number=portal_number,
                    queue=link.queue,
                    chat_type=ChatType.OUTBOUND_SMS,
                    start_type=StartType.OUTBOUND,
                    language=chat_settings.default_language,
                    language_chosen=True,
                )
        except IntegrityError:
            raise ChatActionError(
                "There is already an active chat between this consumer and that number.", code="active_chat"
            ) from None
        Participant.objects.create(chat=chat, type=ParticipantType.END_USER)
        ChatEvent.objects.create(chat=chat, kind=ChatEventKind.CREATED, by=f"agent:{agent.pk}", data={"outbound": True})
        chat.agent = locked
        transition(chat, ChatStatus.ASSIGNED, by=f"agent:{agent.pk}", extra_fields=("agent",), agent_id=agent.pk)
        Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=locked)
        AgentProfile.objects.filter(pk=locked.pk).update(last_assignment_at=timezone.now())
        try:
            transcript.send_text(chat=chat, body=body, author=Author.AGENT, agent=locked, kind="agent")
        except SendRefused as exc:
            raise ChatActionError(exc.message, code="send_refused") from exc
        chat.last_agent_message_at = timezone.now()
        chat.save(update_fields=sorted({"last_agent_message_at"} | recompute_deadline(chat)))
        crm_records.open_crm_record(chat)
    return chat


def mark_read(*, agent: AgentProfile, chat: Chat) -> int:
    if chat.agent_id != agent.pk:
        raise ChatActionError("You are not connected to this chat.", code="not_held")
    return Message.objects.filter(chat=chat, author=Author.CONSUMER, read_at__isnull=True).update(read_at=timezone.now())


