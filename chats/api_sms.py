"""The Outbound SMS API's service (SPEC A1): `POST /apps/api/v1/sms` starts an API chat, or sends
on an agent's behalf in the chat they hold, after the documented checks in the documented order
(first failure wins, with the documented message). The request's body is read and its shape
checked by `chats.api_sms_request.OutboundSmsSerializer`; the rows that need the portal's state
are here (`check_enabled`, `sending_number`, then the chat, agent and ticket in `send_api_sms`).
Its replies: `api_chat_replied`."""
from __future__ import annotations

from typing import NamedTuple

from django.db import IntegrityError, transaction
from django.utils import timezone

from chats.deadlines import recompute_deadline
from chats.models import (
    ChatEventKind,
    API_INITIATED,
    Author,
    Chat,
    ChatEvent,
    ChatStatus,
    ChatType,
    Participant,
    ParticipantType,
    StartType,
)
from chats.crm_records import open_crm_record
from chats.errors import ChatActionError
from chats.services import send_agent_message
from chats.transcript import send_text
from chats.states import transition
from portal.models import AgentProfile, ChatSettings
from queues.models import Queue
from sms.models import NumberRole, PhoneNumber, QueueNumber
from sms.pipeline import SendRefused, is_do_not_contact


class ApiSmsError:
    """The documented refusals of POST /apps/api/v1/sms (seed 001), in the order they are checked."""

    SMS_OFF = "SMS service is not enabled"
    OUTBOUND_OFF = "Outbound SMS service is not enabled"
    BOTH_AGENT_FIELDS = "Only one of `agent_id` or `agent_email` can be provided."
    CHAT_TYPE_MISSING = "chat_type needs to be provided"
    CHAT_TYPE_INVALID = "Valid chat_type needs to be provided"
    CHAT_SUBTYPE_INVALID = "Valid chat_subtype needs to be provided"
    END_USER_MISSING = "end_user_number is required"
    END_USER_INVALID = "end_user_number is invalid"
    OUTBOUND_MISSING = "outbound_number is required"
    OUTBOUND_INVALID = "outbound_number is invalid"
    OUTBOUND_NOT_FOUND = "outbound_number is not found"
    NON_US = "Non US phone number service is not enabled"
    MESSAGE_MISSING = "message is required"
    MESSAGE_TOO_LONG = "message exceeds maximum number of characters by {over}"
    ACTIVE_SESSION = "Outbound SMS failed. Consumer is already in an active SMS session."
    AGENT_NOT_CONNECTED = "Outbound SMS failed. Agent is not connected to chat."
    AGENT_NOT_FOUND = "Outbound SMS failed. Agent is not found."
    TICKET_NOT_FOUND = "Ticket is not found"
    OPTED_OUT = "Outbound SMS failed. Consumer has opted out of SMS from this number."


class AgentRef(NamedTuple):
    """The agent a request names, by id or by e-mail; neither when the id given can name no one."""

    pk: int | None = None
    email: str | None = None


class TicketRef(NamedTuple):
    """The CRM record a ticket_id names, by id or by reference (chat:42); neither when it can name
    none."""

    pk: int | None = None
    reference: str | None = None


def check_enabled() -> None:
    """SPEC A1's first rows: SMS chat, then outbound SMS, switched on (chat settings)."""
    chat_settings = ChatSettings.load()
    if not chat_settings.sms_chat_enabled:
        raise ChatActionError(ApiSmsError.SMS_OFF, code="sms_disabled")
    if not chat_settings.outbound_sms_enabled:
        raise ChatActionError(ApiSmsError.OUTBOUND_OFF, code="outbound_disabled")


def sending_number(sender: str, consumer: str) -> tuple[PhoneNumber, Queue]:
    """SPEC A1's rows after the numbers' format: `sender` is a verified SMS-chat number of this
    portal assigned to a queue (else "not found"), and both numbers are US unless the chat
    settings allow others. Returns the number and the queue that takes the consumer's reply to
    an API chat: the number's incoming queue, else the first queue it is an outbound number of.
    One query for the number and its queues."""
    from sms.numbers import is_us_number

    links = QueueNumber.objects.filter(
        number__in=PhoneNumber.objects.verified().filter(number=sender, usage="sms_chat"),
        role__in=(NumberRole.INCOMING, NumberRole.OUTBOUND),
    ).select_related("number", "queue")
    link = min(links, key=lambda link: (link.role != NumberRole.INCOMING, link.pk), default=None)
    if link is None:
        raise ChatActionError(ApiSmsError.OUTBOUND_NOT_FOUND, code="not_found")
    if not ChatSettings.load().api_non_us_numbers_allowed and not (is_us_number(sender) and is_us_number(consumer)):
        raise ChatActionError(ApiSmsError.NON_US, code="non_us")
    return link.number, link.queue


def _find_agent(ref: AgentRef) -> AgentProfile | None:
    agents = AgentProfile.objects.select_related("user")
    if ref.pk is not None:
        return agents.filter(pk=ref.pk).first()
    if ref.email:
        return agents.filter(user__email__iexact=ref.email).order_by("pk").first()
    return None


def _find_ticket(ref: TicketRef):
    from portal.models import CrmRecord

    if ref.pk is not None:
        return CrmRecord.objects.filter(pk=ref.pk).first()
    if ref.reference:
        return CrmRecord.objects.filter(reference=ref.reference).first()
    return None


def send_api_sms(
    *, consumer: str, number: PhoneNumber, queue: Queue, body: str, agent: AgentRef | None = None,
    ticket: TicketRef | None = None, by: str = "api",
) -> tuple[Chat, bool]:
    """The Outbound SMS API (SPEC A1) once its request passed the rows up to the message
    (`chats.api_sms_request.OutboundSmsSerializer`, which calls `check_enabled` and
    `sending_number` at their place): the rows that need the chat, the agent and the ticket it
    names, in the documented order, then either an API chat started (`selecting`, or `assigned`
    to the agent given) or, when the chat exists and the agent given holds it, the message sent
    on the agent's behalf. Returns the chat and whether it was created."""
    with transaction.atomic():
        existing = (
            Chat.objects.select_for_update(of=("self",))
            .select_related("portal_number", "queue")
            .active_between(consumer, number)
            .first()
        )
        found = _find_agent(agent) if agent is not None else None
        if existing is not None:
            if agent is None:
                raise ChatActionError(ApiSmsError.ACTIVE_SESSION, code="active_chat")
            if found is None or existing.agent_id != found.pk or existing.status != ChatStatus.ASSIGNED:
                raise ChatActionError(ApiSmsError.AGENT_NOT_CONNECTED, code="not_held")
        elif agent is not None and found is None:
            raise ChatActionError(ApiSmsError.AGENT_NOT_FOUND, code="not_found")
        record = None
        if ticket is not None:
            record = _find_ticket(ticket)
            if record is None:
                raise ChatActionError(ApiSmsError.TICKET_NOT_FOUND, code="not_found")
        if existing is not None:
            send_agent_message(agent=found, chat=existing, body=body)
            return existing, False
        if is_do_not_contact(consumer, number.number):
            raise ChatActionError(ApiSmsError.OPTED_OUT, code="do_not_contact")
        chat = start_api_chat(
            consumer_number=consumer, portal_number=number, queue=queue, body=body, agent=found, crm_record=record,
            by=by,
        )
    return chat, True


def start_api_chat(
    *,
    consumer_number: str,
    portal_number: PhoneNumber,
    queue: Queue,
    body: str,
    agent: AgentProfile | None = None,
    crm_record=None,
    by: str = "api",
) -> Chat:
    """A chat started by the Outbound SMS API: `selecting` until the consumer replies (their
    reply enters `queue`'s flow, see chats.flow), or `assigned` at once to the agent given. The
    text is proactive (quiet hours) and goes through the whole outbound pipeline."""
    chat_settings = ChatSettings.load()
    chat = Chat(
        consumer_number=consumer_number,
        portal_number=portal_number,
        queue=queue,
        chat_type=ChatType.API_SMS,
        chat_subtype=API_INITIATED,
        start_type=StartType.OUTBOUND,
        language=chat_settings.default_language,
        language_chosen=True,
        crm_record=crm_record,
        ticket_id=str(crm_record.pk) if crm_record is not None else "",
    )
    recompute_deadline(chat, chat_settings=chat_settings)  # saved with the row, not by a second UPDATE
    # The caller's transaction when there is one (send_api_sms holds the chat lookup's locks in
    # it): no savepoint of its own, only the one the unique active-chat constraint needs.
    with transaction.atomic(savepoint=False):
        try:
            with transaction.atomic():
                chat.save(force_insert=True)
        except IntegrityError:
            raise ChatActionError(ApiSmsError.ACTIVE_SESSION, code="active_chat") from None
        Participant.objects.create(chat=chat, type=ParticipantType.END_USER)
        ChatEvent.objects.create(chat=chat, kind=ChatEventKind.CREATED, by=by[:40], data={"api": True, "queue_id": queue.pk})
        if agent is not None:
            locked = AgentProfile.objects.select_for_update().get(pk=agent.pk)
            chat.agent = locked
            transition(chat, ChatStatus.ASSIGNED, by=by[:40], extra_fields=("agent",), agent_id=locked.pk)
            Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=locked)
            AgentProfile.objects.filter(pk=locked.pk).update(last_assignment_at=timezone.now())
        try:
            send_text(
                chat=chat,
                body=body,
                author=Author.AGENT if agent is not None else Author.SYSTEM,
                agent=agent,
                kind="api",
                proactive=True,
            )
        except SendRefused as exc:
            raise ChatActionError(exc.message, code="send_refused") from exc
        if agent is not None:
            chat.last_agent_message_at = timezone.now()
            chat.save(update_fields=sorted({"last_agent_message_at"} | recompute_deadline(chat)))
        open_crm_record(chat)
    return chat


def api_chat_replied(*, chat: Chat) -> bool:
    """Whether a consumer text to this chat is the first reply to an API chat nobody holds yet:
    the reply then enters the queue flow of the chat's queue (chats.flow)."""
    return chat.status == ChatStatus.SELECTING and chat.chat_subtype == API_INITIATED and chat.menu_queue_id is None
