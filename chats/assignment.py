"""Queueing and assignment (SPEC S5): a chat enters a leaf queue, the oldest waiting chat goes to
the longest-idle eligible agent with room (`queues.routing` says who is eligible), a
manual-answer chat is offered; an agent whose status or adapter makes them eligible, or who
finishes a chat, has their queues' waiting chats assigned."""
from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from chats import crm_records, events, queue_position, transcript
from chats.models import (
    ParticipantStatus,
    ChatEventKind,
    Chat,
    ChatEvent,
    ChatStatus,
    Offer,
    Participant,
    ParticipantType,
    StartType,
)
from chats.states import transition
from chats.errors import ChatActionError
from portal.aftercommit import AfterCommitBatch
from portal.models import AgentProfile
from portal.presence import agent_connected, set_agent_status
from queues.hours import is_open
from queues.models import AnswerType, Queue
from queues.routing import candidate_agents, is_eligible

log = logging.getLogger(__name__)


def queue_chat(
    *, chat: Chat, queue: Queue, by: str = "system", send_notice: bool = True, extra_fields: tuple[str, ...] = (),
    queued_at: dt.datetime | None = None, entries_before: list | tuple = (),
) -> None:
    """Put a chat in a leaf queue: the queued or after-hours text, then try to assign.
    `extra_fields`: chat fields the caller changed, saved in the same UPDATE. `queued_at`: the
    place in line the chat keeps (a deflected caller's, SPEC B4) instead of now.
    `entries_before`: unsaved transcript entries inserted ahead of the notice's, with it."""
    now = timezone.now()
    open_now = is_open(queue, now)
    chat.queue = queue
    chat.queued_after_hours = not open_now
    chat.menu_queue = None
    chat.position_update_at = queue_position.first_update_at(queue, now)
    chat.position_updates_sent = 0
    fields = ["queue", "queued_after_hours", "menu_queue", "position_update_at", "position_updates_sent", *extra_fields]
    if chat.agent_id is not None:
        # A dismissed chat coming back: its former agent no longer holds it.
        Participant.objects.filter(chat=chat, type=ParticipantType.AGENT, ended_at__isnull=True).update(
            status=ParticipantStatus.DISMISSED, ended_at=now
        )
        chat.agent = None
        fields.append("agent")
    transition(chat, ChatStatus.QUEUED, by=by, extra_fields=tuple(fields), queue_id=queue.pk)
    if queued_at is not None:
        chat.queued_at = queued_at
        chat.save(update_fields=["queued_at"])
    notice = transcript.system_text(chat, "queued" if open_now else "after_hours") if send_notice else ""
    if notice or entries_before:
        transcript.send_texts([(chat, queue_position.fill(notice, chat))] if notice else [], entries_before=entries_before)
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
    ChatEvent.objects.create(chat=chat, kind=ChatEventKind.OFFERED, data={"agent_ids": agent_ids})
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
    joined = transcript.system_text(chat, "agent_joined").replace("{agent}", str(agent))
    transcript.send_text(chat=chat, body=joined)
    crm_records.open_crm_record(chat)


def route_to_agent(*, agent: AgentProfile) -> None:
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
            route_to_agent(agent=agent)


def connect_adapter(*, agent: AgentProfile) -> None:
    """An adapter connection of the agent opened; when that made them eligible (offline before,
    or no adapter open), the chats waiting in their queues are assigned after commit."""
    with transaction.atomic():
        if agent_connected(agent=agent):
            route_to_agent(agent=agent)


def agent_queue_ids(agent: AgentProfile) -> list[int]:
    direct = set(agent.queues.values_list("pk", flat=True))
    by_team = set(Queue.objects.filter(teams__agents=agent).values_list("pk", flat=True))
    return sorted(direct | by_team)
