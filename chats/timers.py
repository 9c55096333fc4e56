"""Acting on chat deadlines (DESIGN rule 5): one sweeper takes the chats whose deadline passed
(`chats.deadlines` says what is due when) and expires or dismisses them, in small locked
batches."""
from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from chats import assignment, services, transcript
from chats.deadlines import DeadlineFacts, DeadlineKind, recompute_deadline
from chats.models import (
    ParticipantStatus,
    ACTIVE_STATUSES,
    Chat,
    ChatStatus,
    DisconnectedBy,
)
from chats.states import transition
from portal.bulk import update_each
from portal.models import ChatSettings
from portal.realtime import batched_pushes
from portal.singletons import cached_singletons
from queues.models import Queue, queue_text
from sms.models import PhoneNumber

log = logging.getLogger(__name__)


SWEEP_BATCH = 100

EXPIRY_REASONS = {
    DeadlineKind.SELECTING: "expired_selecting",
    DeadlineKind.UNANSWERED: "expired_unanswered",
    DeadlineKind.UNANSWERED_AFTER_HOURS: "expired_unanswered",
    DeadlineKind.CHAT_TIMEOUT: "timeout_end_user_no_message",
    DeadlineKind.OUTBOUND_INACTIVE: "timeout_outbound_inactive",
}


def sweep(now: dt.datetime | None = None) -> int:
    """Act on every chat whose deadline passed, in small locked batches (skip_locked, so several
    workers share the work and none acts twice), one transaction per batch. Each chat's deadline
    is recomputed under its lock; the batch's due chats are expired together (`expire_chats`).
    When that fails, each chat is tried again on its own, in a savepoint of its own: one that
    fails is logged and left for the next run, the others go on. Returns how many chats were
    expired or dismissed. Tests call this after moving the clock with time_machine."""
    now = now or timezone.now()
    acted = 0
    failed: set[int] = set()
    shared = _SharedRows()
    # The settings, queues and numbers are read once per run; each batch's browser pushes leave
    # together once it committed.
    with cached_singletons():
        while True:
            with batched_pushes(), transaction.atomic():
                due = shared.attach(_lock_due(now, exclude=failed))
                acted += _act_on_batch(due, now=now, failed=failed, shared=shared)
            if len(due) < SWEEP_BATCH:
                return acted


def _lock_due(now: dt.datetime, *, exclude=(), ids=None) -> list[Chat]:
    chats = Chat.objects.select_for_update(skip_locked=True, of=("self",)).select_related("agent")
    if ids is not None:
        return list(chats.filter(pk__in=ids).order_by("deadline_at", "pk"))
    return list(
        chats.filter(status__in=ACTIVE_STATUSES, deadline_at__lte=now)
        .exclude(pk__in=exclude)
        .order_by("deadline_at")[:SWEEP_BATCH]
    )


class _SharedRows:
    """The queues (with their system messages) and portal numbers of a sweeper run's chats, read
    once per run and shared: a batch's chats have few of them between them, and building each
    again for every chat costs more than the chat's own row."""

    def __init__(self):
        self.queues: dict[int, Queue] = {}
        self.numbers: dict[int, PhoneNumber] = {}

    def attach(self, chats: list[Chat]) -> list[Chat]:
        queue_ids = {chat.queue_id for chat in chats if chat.queue_id and chat.queue_id not in self.queues}
        if queue_ids:
            self.queues.update(Queue.objects.prefetch_related("messages").in_bulk(queue_ids))
        number_ids = {chat.portal_number_id for chat in chats if chat.portal_number_id not in self.numbers}
        if number_ids:
            self.numbers.update(PhoneNumber.objects.in_bulk(number_ids))
        for chat in chats:
            if chat.queue_id in self.queues:
                chat.queue = self.queues[chat.queue_id]
            if chat.portal_number_id in self.numbers:
                chat.portal_number = self.numbers[chat.portal_number_id]
        return chats


def _act_on_batch(due: list[Chat], *, now: dt.datetime, failed: set[int], shared: _SharedRows) -> int:
    chat_settings = ChatSettings.load()
    facts = DeadlineFacts(due)
    moved, expiring, dismissing = [], [], []
    for chat in due:
        changed = recompute_deadline(chat, now=now, chat_settings=chat_settings, facts=facts)
        if chat.deadline_at is None or chat.deadline_at > now:
            if changed:  # a message arrived since, or the queue's hours changed
                moved.append(chat)
        elif chat.deadline_kind == DeadlineKind.DISMISSAL:
            dismissing.append(chat)
        else:
            expiring.append(chat)
    if moved:
        update_each(Chat, moved, ["deadline_at", "deadline_kind"])
    acted = 0
    one_by_one = dismissing
    if expiring:
        try:
            with transaction.atomic():
                expire_chats(expiring)
            acted += len(expiring)
        except Exception:  # noqa: BLE001 — find the chat that fails, and expire the others
            log.warning("expiring %d chats together failed; trying each on its own", len(expiring), exc_info=True)
            # Read again (still locked by us): the failed attempt changed them in memory.
            one_by_one = shared.attach(_lock_due(now, ids=[chat.pk for chat in expiring])) + dismissing
    for chat in one_by_one:
        try:
            with transaction.atomic():
                acted += act_on_deadline(chat, now=now, chat_settings=chat_settings)
        except Exception:  # noqa: BLE001 — one chat's failure must not stop the others
            log.exception(
                "chat %s: acting on its %s deadline failed; retried next sweep", chat.pk, chat.deadline_kind
            )
            failed.add(chat.pk)
    return acted


def act_on_deadline(chat: Chat, *, now: dt.datetime, chat_settings: ChatSettings | None = None) -> int:
    """Expire or dismiss one locked chat whose deadline passed; 0 when, recomputed, it is not due
    (a message arrived since, or the queue's hours changed)."""
    changed = recompute_deadline(chat, now=now, chat_settings=chat_settings)
    if changed:
        chat.save(update_fields=sorted(changed))
    if chat.deadline_at is None or chat.deadline_at > now:
        return 0
    if chat.deadline_kind == DeadlineKind.DISMISSAL:
        _dismiss(chat, now=now)
    else:
        expire_chats([chat])
    return 1


def _dismiss(chat: Chat, *, now: dt.datetime) -> None:
    holder = chat.agent
    # The chat leaves the agent's adapter (SPEC S8); chat.agent stays until the chat is queued
    # again, so the event of this move still reaches that agent.
    chat.participants.filter(type="agent", ended_at__isnull=True).update(status=ParticipantStatus.DISMISSED, ended_at=now)
    transition(chat, ChatStatus.DISMISSED, by="timer")
    if holder is not None:
        assignment.route_to_agent(agent=holder)


def expire_chats(chats: list[Chat]) -> None:
    """End locked chats whose expiry deadline passed (SPEC C3, S8): each is sent its queue's
    "expired" text (if set) through the outbound pipeline and finishes, ended by the system,
    with the finish reason of its deadline kind (`services.finish_chats`, the one finish).
    Set-based, so a batch costs about a dozen statements however many chats it holds."""
    _send_expired_texts(chats)
    services.finish_chats(
        chats,
        by=DisconnectedBy.SYSTEM,
        reasons={chat.pk: EXPIRY_REASONS.get(chat.deadline_kind, "failed") for chat in chats},
    )


def _send_expired_texts(chats: list[Chat]) -> None:
    """The queues' "expired" texts, each in its chat's language, through the outbound pipeline
    and into the transcripts. An empty text sends nothing."""
    default_language = ChatSettings.load().default_language
    texts: dict[tuple[int | None, str], str] = {}
    to_send = []
    for chat in chats:
        key = (chat.queue_id, chat.language)
        if key not in texts:
            texts[key] = queue_text(chat.queue, "expired", chat.language, default_language)
        if texts[key].strip():
            to_send.append((chat, texts[key]))
    transcript.send_texts(to_send)
