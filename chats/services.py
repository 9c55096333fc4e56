"""What happens to chats: every write the webhook, the adapter, the API, the timers and the tests
cause goes through these functions (DESIGN rule 1). Keyword-only arguments; the outermost caller
owns the transaction; side effects leave after commit."""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from chats import events
from chats.models import (
    Author,
    Chat,
    ChatEvent,
    ChatStatus,
    ChatType,
    Message,
    Offer,
    Participant,
    ParticipantType,
    StartType,
    Transfer,
)
from chats.states import save_and_announce, transition
from chats.deadlines import recompute_deadline
from portal import crm
from portal.aftercommit import AfterCommitBatch
from portal.models import AgentProfile, ChatSettings
from portal.presence import agent_connected, set_agent_status
from queues.hours import is_open
from queues.models import AnswerType, Queue, queue_text
from queues.routing import candidate_agents, is_eligible
from sms.models import NumberRole, PhoneNumber
from sms.pipeline import SendRefused, is_do_not_contact, queue_sms

log = logging.getLogger(__name__)


class ChatActionError(Exception):
    """An action refused, with a sentence for the agent or API client."""

    def __init__(self, message: str, *, code: str = "refused"):
        super().__init__(message)
        self.message = message
        self.code = code


# ---------------------------------------------------------------------------------------------
# Transcript


def add_message(
    *, chat: Chat, author: str, body: str, agent: AgentProfile | None = None, inbound=None, outbound=None
) -> Message:
    message = Message.objects.create(
        chat=chat, author=author, body=body, agent=agent, inbound=inbound, outbound=outbound
    )
    events.message_created(message)
    return message


def send_text(
    *, chat: Chat, body: str, author: str = Author.SYSTEM, agent: AgentProfile | None = None, kind: str = "system",
    proactive: bool = False, media_urls: list[str] | None = None,
) -> Message | None:
    """Text the consumer through the outbound pipeline and keep it in the transcript. An empty
    body sends nothing (a system message an admin left blank)."""
    if not body and not media_urls:
        return None
    outbound = queue_sms(
        to=chat.consumer_number,
        from_number=chat.portal_number.number,
        body=body,
        media_urls=media_urls or [],
        kind=kind,
        proactive=proactive,
        notify_group=events.chat_group(chat.pk),
    )
    return add_message(chat=chat, author=author, body=body, agent=agent, outbound=outbound)


def system_text(chat: Chat, kind: str) -> str:
    return queue_text(chat.queue, kind, chat.language, ChatSettings.load().default_language)


# ---------------------------------------------------------------------------------------------
# Queueing and assignment


def queue_chat(
    *, chat: Chat, queue: Queue, by: str = "system", send_notice: bool = True, extra_fields: tuple[str, ...] = ()
) -> None:
    """Put a chat in a leaf queue: the queued or after-hours text, then try to assign.
    `extra_fields`: chat fields the caller changed, saved in the same UPDATE."""
    now = timezone.now()
    open_now = is_open(queue, now)
    chat.queue = queue
    chat.queued_after_hours = not open_now
    chat.menu_queue = None
    fields = ["queue", "queued_after_hours", "menu_queue", *extra_fields]
    if chat.agent_id is not None:
        # A dismissed chat coming back: its former agent no longer holds it.
        Participant.objects.filter(chat=chat, type=ParticipantType.AGENT, ended_at__isnull=True).update(
            status="dismissed", ended_at=now
        )
        chat.agent = None
        fields.append("agent")
    transition(chat, ChatStatus.QUEUED, by=by, extra_fields=tuple(fields), queue_id=queue.pk)
    if send_notice:
        send_text(chat=chat, body=system_text(chat, "queued" if open_now else "after_hours"))
    assign_after_commit(queue)


def assign_after_commit(queue: Queue) -> None:
    """Run the queue's assignment after commit: once per queue for all the texts of a batch
    (`batched_assignments`), once per call otherwise."""
    _assignments.add([queue])


def _assign_queues(queues: list[Queue]) -> None:
    for queue in {queue.pk: queue for queue in queues}.values():
        assign_waiting_chats(queue_id=queue.pk, queue=queue)


_assignments = AfterCommitBatch("tern_assignments", _assign_queues)


def batched_assignments():
    return _assignments.collecting()


def agent_load(agent: AgentProfile) -> int:
    return Chat.objects.held_by(agent).count()


def assign_waiting_chats(*, queue_id: int, max_chats: int = 100, queue: Queue | None = None) -> int:
    """Give queued chats of a queue to eligible agents, oldest chat first, longest-idle agent
    first (auto answer), or offer them (manual answer). Returns how many chats were assigned or
    offered. Safe to run from several processes at once (DESIGN rule 4):

    - each chat in its own short transaction;
    - auto answer locks the agent first (capacity checked under that lock), then takes the
      oldest queued chat nobody else holds (skip_locked). A run never waits for a chat row while
      holding an agent, and never holds one agent row while waiting for another, so parallel
      runs, accept_offer and transfers (chat row, then agent row) cannot deadlock; and every chat
      a run locks is assigned, so parallel runs still serve the oldest chats first;
    - manual answer locks the chat (skip_locked) and offers it; offers take no agent lock.

    `queue`: the queue itself, when the caller has it (it is not read again)."""
    if queue is None or queue.pk != queue_id:
        queue = Queue.objects.filter(pk=queue_id).first()
    if queue is None:
        return 0
    manual = queue.answer_type == AnswerType.MANUAL
    if not candidate_agents(queue).exists():
        return 0  # nobody to give a chat to; decided without a transaction (on SQLite, a write lock)
    done = 0
    skipped: list[int] = []
    for _ in range(max_chats):
        if not Chat.objects.filter(queue=queue, status=ChatStatus.QUEUED).exclude(pk__in=skipped).exists():
            break
        with transaction.atomic():
            if manual:
                chat = _lock_oldest_queued(queue, exclude_ids=skipped)
                if chat is None:
                    break
                if offer_chat(chat=chat):
                    done += 1
                skipped.append(chat.pk)
                continue
            agent = _lock_agent_with_capacity(queue)
            if agent is None:
                break
            chat = _lock_oldest_queued(queue)
            if chat is None:
                break  # the rollback releases the agent
            _assign(chat=chat, agent=agent, start_type=StartType.AUTO)
            done += 1
    return done


def _lock_oldest_queued(queue: Queue, exclude_ids=()) -> Chat | None:
    return (
        Chat.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("portal_number", "queue")
        .filter(queue=queue, status=ChatStatus.QUEUED)
        .exclude(pk__in=list(exclude_ids))
        .order_by("queued_at", "pk")
        .first()
    )


def _over_capacity(agent: AgentProfile) -> ChatActionError:
    count = agent.max_concurrent_chats
    return ChatActionError(f"You already hold {count} chat{'' if count == 1 else 's'}, your maximum.", code="over_capacity")


class _NoRoom(Exception):
    pass


def _lock_agent_with_capacity(queue: Queue, exclude_ids=()) -> AgentProfile | None:
    """The first eligible agent of the queue (longest idle) with room, locked. The eligibility
    read before the lock is checked again under it. An agent found full is locked inside a
    savepoint whose rollback releases the row at once, so a caller never holds one agent while
    waiting for the next (two runs seeing the agents in different orders would deadlock)."""
    for candidate in candidate_agents(queue, exclude_ids=exclude_ids):
        try:
            with transaction.atomic():
                agent = AgentProfile.objects.select_for_update().filter(pk=candidate.pk).first()
                if agent is not None and is_eligible(agent) and agent_load(agent) < agent.max_concurrent_chats:
                    return agent
                raise _NoRoom
        except _NoRoom:
            continue
    return None


def offer_chat(*, chat: Chat) -> bool:
    """Offer a manual-answer chat to every eligible agent with room who was not offered it yet."""
    already = set(chat.offers.values_list("agent_id", flat=True))
    agent_ids = [
        agent.pk
        for agent in candidate_agents(chat.queue, exclude_ids=already)
        if agent_load(agent) < agent.max_concurrent_chats
    ]
    if not agent_ids:
        return False
    Offer.objects.bulk_create([Offer(chat=chat, agent_id=agent_id) for agent_id in agent_ids])
    ChatEvent.objects.create(chat=chat, kind="offered", data={"agent_ids": agent_ids})
    events.chat_offered(chat, agent_ids)
    return True


def accept_offer(*, agent: AgentProfile, chat: Chat) -> Chat:
    """The first agent to accept a manual-answer offer gets the chat; the others are told no."""
    with transaction.atomic():
        chat = Chat.objects.select_for_update(of=("self",)).select_related("portal_number", "queue").get(pk=chat.pk)
        offer = chat.offers.filter(agent=agent).first()
        if offer is None:
            raise ChatActionError("This chat was not offered to you.", code="not_offered")
        if chat.status == ChatStatus.FINISHED:
            # The consumer left (EXIT, STOP) or a timer ended it before anyone accepted.
            raise ChatActionError("This chat has ended.", code="finished")
        if chat.status != ChatStatus.QUEUED or offer.status != Offer.Status.OFFERED:
            raise ChatActionError("Another agent already accepted this chat.", code="taken")
        locked = AgentProfile.objects.select_for_update().get(pk=agent.pk)
        if agent_load(locked) >= locked.max_concurrent_chats:
            raise _over_capacity(locked)
        _assign(chat=chat, agent=locked, start_type=StartType.MANUAL)
    return chat


def _assign(*, chat: Chat, agent: AgentProfile, start_type: str) -> None:
    now = timezone.now()
    chat.agent = agent
    if not chat.start_type:
        chat.start_type = start_type
    transition(chat, ChatStatus.ASSIGNED, by=f"agent:{agent.pk}", extra_fields=("agent", "start_type"), agent_id=agent.pk)
    Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=agent)
    Offer.objects.filter(chat=chat, status=Offer.Status.OFFERED).exclude(agent=agent).update(
        status=Offer.Status.WITHDRAWN, answered_at=now
    )
    Offer.objects.filter(chat=chat, agent=agent).update(status=Offer.Status.ACCEPTED, answered_at=now)
    AgentProfile.objects.filter(pk=agent.pk).update(last_assignment_at=now)
    joined = system_text(chat, "agent_joined").replace("{agent}", str(agent))
    send_text(chat=chat, body=joined)
    open_crm_record(chat)


def capacity_appeared(*, agent: AgentProfile) -> None:
    """An agent became available or finished a chat: run assignment for each of their queues
    (chatwoot #10583: not only when a chat arrives)."""
    queue_ids = list(
        Queue.objects.filter(pk__in=agent_queue_ids(agent)).values_list("pk", flat=True)
    )

    def run():
        for queue_id in queue_ids:
            assign_waiting_chats(queue_id=queue_id)

    transaction.on_commit(run)


def change_agent_status(*, agent: AgentProfile, status: str) -> None:
    """The agent's status, set (SPEC S5); when it made them eligible, the chats waiting in their
    queues are assigned after commit. Raises ValueError for an unknown status."""
    with transaction.atomic():
        if set_agent_status(agent=agent, status=status):
            capacity_appeared(agent=agent)


def connect_adapter(*, agent: AgentProfile) -> None:
    """An adapter connection of the agent opened; when that made them eligible (offline before,
    or no adapter open), the chats waiting in their queues are assigned after commit."""
    with transaction.atomic():
        if agent_connected(agent=agent):
            capacity_appeared(agent=agent)


def agent_queue_ids(agent: AgentProfile) -> list[int]:
    direct = set(agent.queues.values_list("pk", flat=True))
    by_team = set(Queue.objects.filter(teams__agents=agent).values_list("pk", flat=True))
    return sorted(direct | by_team)


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
            message = send_text(chat=chat, body=body, author=Author.AGENT, agent=agent, kind="agent", media_urls=media_urls)
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
        holder = chat.agent
        if notify_consumer:
            # Before the transition: the agent's page hears the "chat ended" text while it still
            # follows the chat, then "finished", which makes it stop following.
            send_text(chat=chat, body=system_text(chat, "chat_ended"))
        chat.finish_reason = reason
        chat.disconnected_by = by
        transition(chat, ChatStatus.FINISHED, by=by, extra_fields=("finish_reason", "disconnected_by"), reason=reason)
        now = timezone.now()
        Participant.objects.filter(chat=chat, ended_at__isnull=True).update(status="ended", ended_at=now)
        Offer.objects.filter(chat=chat, status=Offer.Status.OFFERED).update(status=Offer.Status.WITHDRAWN, answered_at=now)
        _close_crm_record(chat)
        if holder is not None:
            capacity_appeared(agent=holder)
    return chat


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
        ChatEvent.objects.create(chat=chat, kind="transfer.began", by=f"agent:{agent.pk}", data={"transfer_id": transfer.pk})
        crm.add_entry(chat.crm_record, "transfer_began", _transfer_text(transfer))
        failure = _transfer_failure(chat, agent, to_agent, to_queue)
        if failure:
            transfer.status = Transfer.Status.FAILED
            transfer.reason = failure
            transfer.ended_at = timezone.now()
            transfer.save(update_fields=["status", "reason", "ended_at"])
            ChatEvent.objects.create(chat=chat, kind="transfer.failed", data={"transfer_id": transfer.pk, "reason": failure})
            crm.add_entry(chat.crm_record, "transfer_failed", failure)
            save_and_announce(chat)  # the agent's page learns the chat stayed with them
            return transfer
        Participant.objects.filter(chat=chat, agent=agent, ended_at__isnull=True).update(
            status="transferred", ended_at=timezone.now()
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
            transaction.on_commit(lambda: assign_waiting_chats(queue_id=to_queue.pk))
        transfer.status = Transfer.Status.ENDED
        transfer.ended_at = timezone.now()
        transfer.save(update_fields=["status", "ended_at"])
        ChatEvent.objects.create(chat=chat, kind="transfer.ended", data={"transfer_id": transfer.pk})
        crm.add_entry(chat.crm_record, "transfer_ended", _transfer_text(transfer))
        capacity_appeared(agent=agent)
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
        if agent_load(target) >= target.max_concurrent_chats:
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
    *, agent: AgentProfile, consumer_number: str, portal_number: PhoneNumber, body: str = ""
) -> Chat:
    """An agent texts a consumer first (SPEC S9)."""
    from sms.numbers import parse_e164

    chat_settings = ChatSettings.load()
    if not (chat_settings.sms_chat_enabled and chat_settings.outbound_sms_enabled):
        raise ChatActionError("Outbound SMS is turned off.", code="disabled")
    if parse_e164(consumer_number) is None:
        raise ChatActionError("Enter the consumer's number in E.164 form, e.g. +15551234567.", code="invalid_number")
    link = (
        portal_number.queue_links.filter(role=NumberRole.OUTBOUND, queue__in=agent_queue_ids(agent))
        .select_related("queue")
        .first()
    )
    if link is None:
        raise ChatActionError(f"{portal_number.number} is not an outbound number of your queues.", code="invalid_number")
    if is_do_not_contact(consumer_number, portal_number.number):
        raise ChatActionError("This consumer opted out (STOP) and cannot be texted.", code="do_not_contact")
    with transaction.atomic():
        locked = AgentProfile.objects.select_for_update().get(pk=agent.pk)
        if agent_load(locked) >= locked.max_concurrent_chats:
            raise _over_capacity(locked)
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
        ChatEvent.objects.create(chat=chat, kind="created", by=f"agent:{agent.pk}", data={"outbound": True})
        chat.agent = locked
        transition(chat, ChatStatus.ASSIGNED, by=f"agent:{agent.pk}", extra_fields=("agent",), agent_id=agent.pk)
        Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=locked)
        AgentProfile.objects.filter(pk=locked.pk).update(last_assignment_at=timezone.now())
        if body:
            try:
                send_text(chat=chat, body=body, author=Author.AGENT, agent=locked, kind="agent")
            except SendRefused as exc:
                raise ChatActionError(exc.message, code="send_refused") from exc
            chat.last_agent_message_at = timezone.now()
            chat.save(update_fields=sorted({"last_agent_message_at"} | recompute_deadline(chat)))
        open_crm_record(chat)
    return chat


def mark_read(*, agent: AgentProfile, chat: Chat) -> int:
    if chat.agent_id != agent.pk:
        raise ChatActionError("You are not connected to this chat.", code="not_held")
    return Message.objects.filter(chat=chat, author=Author.CONSUMER, read_at__isnull=True).update(read_at=timezone.now())


# ---------------------------------------------------------------------------------------------
# CRM (SPEC S12)


def open_crm_record(chat: Chat) -> None:
    if chat.crm_record_id:
        return
    record = crm.open_record(
        reference=f"chat:{chat.pk}",
        number=chat.consumer_number,
        language=chat.language,
        queue_name=chat.queue.name if chat.queue else "",
    )
    chat.crm_record = record
    chat.crm_needs_choice = record.needs_contact_choice
    chat.save(update_fields=["crm_record", "crm_needs_choice"])


def _close_crm_record(chat: Chat) -> None:
    if not chat.crm_record_id:
        return
    record = chat.crm_record
    crm.add_entry(record, "chat_ended", f"Chat ended: {chat.finish_reason} by {chat.disconnected_by}")
    # The full transcript with the consumer's pictures and videos (SPEC S12).
    lines = []
    for m in chat.messages.order_by("created_at", "pk").prefetch_related("media"):
        line = {"at": m.created_at.isoformat(), "author": m.author, "body": m.body}
        media = [{"content_type": item.content_type, "file": item.file.name} for item in m.media.all() if item.file]
        if media:
            line["media"] = media
        lines.append(line)
    crm.add_entry(record, "transcript", "\n".join(_transcript_line(line) for line in lines), lines=lines)


def _transcript_line(line: dict) -> str:
    attachments = " ".join(f"<{item['content_type']}: {item['file']}>" for item in line.get("media", []))
    return " ".join(part for part in (f"[{line['author']}]", line["body"], attachments) if part)


def choose_chat_contact(*, chat: Chat, contact=None, new_name: str = "") -> None:
    """The agent picks one of several CRM contacts sharing the number, or creates a new one."""
    with transaction.atomic():
        chat = Chat.objects.select_for_update(of=("self",)).get(pk=chat.pk)
        if chat.crm_record is None:
            open_crm_record(chat)
        crm.choose_contact(record=chat.crm_record, contact=contact, new_name=new_name)
        chat.crm_needs_choice = False
        save_and_announce(chat, ["crm_needs_choice"])
