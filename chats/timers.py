"""Chat deadlines in columns (DESIGN rule 5): each chat carries its next deadline and its kind,
recomputed at each transition and each message from the chat's own timestamps, and one sweeper
acts on the chats whose deadline passed.

The kinds (SPEC C3, S8), each value in minutes from the queue's override or the global chat
settings (`Queue.timer_minutes`):

- queue-selecting expiration: `selecting` since the later of creation and the consumer's last
  text (an API chat nobody answered included — from when its text went out: while quiet hours
  hold the text, the consumer has not seen it and the chat is not due);
- unanswered expiration in hours / after hours: `queued`, by the queue's hours *as they are
  now*: while the queue is open the in-hours value runs from the later of `queued_at` and the
  moment it opened; while closed the after-hours value runs from the later of `queued_at` and
  the moment it closed. When the queue opens or closes before that deadline, the deadline is
  the opening or closing itself, and the sweeper then decides again under the new period;
- chat timeout: `assigned` or `dismissed` inbound chats, from the later of assignment and the
  consumer's last text;
- outbound inactivity: `assigned` agent- and API-started chats, from the last activity;
- dismissal: `assigned` inbound chats where both sides wrote, never API-initiated ones, when
  dismissal is on and its deadline comes before the chat timeout.

Blended chats (the SMS side of a call) have no deadline: the call ends them."""
from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from chats import events
from chats.models import (
    ACTIVE_STATUSES,
    BLENDED_CHAT_TYPES,
    Author,
    Chat,
    ChatStatus,
    ChatType,
    DisconnectedBy,
    Message,
    Offer,
    Participant,
)
from portal.models import ChatSettings
from portal.realtime import batched_pushes
from portal.singletons import cached_singletons
from queues.hours import HoursPeriod, hours_period
from queues.models import Queue, queue_text
from sms.models import MessageStatus, PhoneNumber
from sms.pipeline import queue_sms_many

log = logging.getLogger(__name__)


class DeadlineKind:
    SELECTING = "expired_selecting"
    UNANSWERED = "expired_unanswered"
    UNANSWERED_AFTER_HOURS = "expired_unanswered_after_hours"
    CHAT_TIMEOUT = "timeout_end_user_no_message"
    OUTBOUND_INACTIVE = "timeout_outbound_inactive"
    DISMISSAL = "dismissal"


API_INITIATED = "api_initiated"
NOT_OUT_YET = (MessageStatus.PENDING, MessageStatus.HELD)


class DeadlineFacts:
    """What a deadline depends on besides the chat's own columns: its queue's hours, and for an
    API chat nobody answered, when its text went out. Made for a sweep batch, it reads each of
    these once for all the batch's chats; without one (a single chat), the chat reads its own."""

    def __init__(self, chats: list[Chat] = ()):
        self._periods: dict[tuple[int, dt.datetime], HoursPeriod] = {}
        self._api_ids = [chat.pk for chat in chats if _waits_on_api_text(chat)]
        self._api_texts: dict[int, tuple[dt.datetime | None, dt.datetime | None]] | None = None

    def hours_period(self, queue: Queue, now: dt.datetime) -> HoursPeriod:
        key = (queue.pk, now)
        if key not in self._periods:
            self._periods[key] = hours_period(queue, now)
        return self._periods[key]

    def api_text(self, chat: Chat) -> tuple[dt.datetime | None, dt.datetime | None] | None:
        if chat.pk not in self._api_ids:
            return api_texts_out([chat.pk]).get(chat.pk)
        if self._api_texts is None:
            self._api_texts = api_texts_out(self._api_ids)
        return self._api_texts.get(chat.pk)


def _waits_on_api_text(chat: Chat) -> bool:
    return (
        chat.pk is not None
        and chat.status == ChatStatus.SELECTING
        and chat.chat_subtype == API_INITIATED
        and chat.last_consumer_message_at is None
    )


def api_texts_out(chat_ids: list[int]) -> dict[int, tuple[dt.datetime | None, dt.datetime | None]]:
    """For each API chat that has its text: (when it went out — its first status past pending
    and held: at once, or when quiet hours released it — or None while it is still held; when
    a held text is due to go). One query for all the chats."""
    rows = (
        Message.objects.filter(chat_id__in=chat_ids, outbound__kind="api")
        .values("chat_id", "outbound_id", "outbound__status", "outbound__next_attempt_at")
        .annotate(
            out_at=Min(
                "outbound__status_events__at", filter=~Q(outbound__status_events__status__in=NOT_OUT_YET)
            )
        )
    )
    texts: dict[int, tuple[dt.datetime | None, dt.datetime | None]] = {}
    for row in rows:
        chat_id = row["chat_id"]
        if row["outbound__status"] in NOT_OUT_YET or row["out_at"] is None:
            out_at, opens = None, row["outbound__next_attempt_at"]
        else:
            out_at, opens = row["out_at"], None
        if chat_id in texts:  # several texts: the chat waits on the last one to go out
            earlier_out, earlier_opens = texts[chat_id]
            if earlier_out is None or out_at is None:
                out_at = None
                opens = max([t for t in (opens, earlier_opens) if t], default=None)
            else:
                out_at = max(out_at, earlier_out)
        texts[chat_id] = (out_at, opens)
    return texts


def _minutes(chat: Chat, name: str, chat_settings: ChatSettings) -> int:
    if chat.queue is not None:
        return chat.queue.timer_minutes(name, chat_settings)
    return getattr(chat_settings, name)


def _latest(*times, default: dt.datetime) -> dt.datetime:
    return max([t for t in times if t] or [default])


def _queued_deadline(
    chat: Chat, now: dt.datetime, chat_settings: ChatSettings, facts: DeadlineFacts
) -> tuple[str, dt.datetime]:
    start = chat.queued_at or now
    if chat.queue is None:
        open_now, since, until = not chat.queued_after_hours, None, None
    else:
        open_now, since, until = facts.hours_period(chat.queue, now)
    if since is not None and since > start:
        start = since
    if open_now:
        kind = DeadlineKind.UNANSWERED
        minutes = _minutes(chat, "unanswered_expiration_minutes", chat_settings)
    else:
        kind = DeadlineKind.UNANSWERED_AFTER_HOURS
        minutes = _minutes(chat, "after_hours_expiration_minutes", chat_settings)
    at = start + dt.timedelta(minutes=minutes)
    if until is not None and until < at:
        at = until  # the hours change first: decide again then
    return kind, at


def recompute_deadline(
    chat: Chat,
    *,
    now: dt.datetime | None = None,
    chat_settings: ChatSettings | None = None,
    facts: DeadlineFacts | None = None,
) -> set[str]:
    """Set chat.deadline_at/deadline_kind for its current state; returns the fields changed."""
    now = now or timezone.now()
    chat_settings = chat_settings or ChatSettings.load()
    facts = facts or DeadlineFacts()
    kind, at = "", None
    if chat.chat_type in BLENDED_CHAT_TYPES:
        pass
    elif chat.status == ChatStatus.SELECTING:
        kind = DeadlineKind.SELECTING
        since = _latest(chat.created_at, chat.last_consumer_message_at, default=now)
        minutes = dt.timedelta(minutes=_minutes(chat, "selecting_expiration_minutes", chat_settings))
        at = since + minutes
        if at <= now and _waits_on_api_text(chat):
            # Due, counted from creation; but the API's text may have been held by quiet hours
            # (looked at only now, so that other recomputes cost no query).
            text = facts.api_text(chat)
            if text is not None:
                out_at, opens = text
                # Still held, the consumer has not seen it: not due before it goes out.
                since = max(since, out_at) if out_at is not None else max(now, opens or now)
                at = since + minutes
    elif chat.status == ChatStatus.QUEUED:
        kind, at = _queued_deadline(chat, now, chat_settings, facts)
    elif chat.status in (ChatStatus.ASSIGNED, ChatStatus.DISMISSED):
        last_activity = _latest(
            chat.assigned_at, chat.last_consumer_message_at, chat.last_agent_message_at, default=now
        )
        if chat.chat_type in (ChatType.OUTBOUND_SMS, ChatType.API_SMS):
            kind = DeadlineKind.OUTBOUND_INACTIVE
            at = last_activity + dt.timedelta(minutes=_minutes(chat, "outbound_inactivity_minutes", chat_settings))
        else:
            kind = DeadlineKind.CHAT_TIMEOUT
            since = _latest(chat.assigned_at, chat.last_consumer_message_at, default=now)
            at = since + dt.timedelta(minutes=_minutes(chat, "chat_timeout_minutes", chat_settings))
        both_wrote = chat.last_consumer_message_at and chat.last_agent_message_at
        dismissible = (
            chat.status == ChatStatus.ASSIGNED
            and chat_settings.dismissal_enabled
            and both_wrote
            and chat.chat_subtype != "api_initiated"
            and chat.chat_type == ChatType.SMS
        )
        if dismissible:
            dismiss_at = last_activity + dt.timedelta(minutes=_minutes(chat, "dismissal_minutes", chat_settings))
            if dismiss_at < at:
                kind, at = DeadlineKind.DISMISSAL, dismiss_at
    changed = set()
    if chat.deadline_at != at:
        chat.deadline_at = at
        changed.add("deadline_at")
    if chat.deadline_kind != kind:
        chat.deadline_kind = kind
        changed.add("deadline_kind")
    return changed


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
        Chat.objects.bulk_update(moved, ["deadline_at", "deadline_kind"])
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
    from chats import services
    from chats.states import transition

    holder = chat.agent
    # The chat leaves the agent's adapter (SPEC S8); chat.agent stays until the chat is queued
    # again, so the event of this move still reaches that agent.
    chat.participants.filter(type="agent", ended_at__isnull=True).update(status="dismissed", ended_at=now)
    transition(chat, ChatStatus.DISMISSED, by="timer")
    if holder is not None:
        services.capacity_appeared(agent=holder)


def expire_chats(chats: list[Chat]) -> None:
    """End locked chats whose expiry deadline passed (SPEC C3, S8): each is sent its queue's
    "expired" text (if set) through the outbound pipeline and finishes with the finish reason of
    its deadline kind, ended by the system; its agent's capacity is given back. Set-based, so a
    batch costs about a dozen statements however many chats it holds: the texts through
    `queue_sms_many`, their transcript entries in one insert, the chats through
    `transition_many` (an UPDATE per finish reason, one INSERT of ChatEvents), participants and
    offers in one UPDATE each. A chat linked to a CRM record is finished by `services.end_chat`, one by one:
    its transcript goes to the record."""
    from chats import services
    from chats.states import transition_many

    _send_expired_texts(chats)
    plain = [chat for chat in chats if not chat.crm_record_id]
    for chat in chats:
        chat.finish_reason = EXPIRY_REASONS.get(chat.deadline_kind, "failed")
        chat.disconnected_by = DisconnectedBy.SYSTEM
        if chat.crm_record_id:
            services.end_chat(chat=chat, by=DisconnectedBy.SYSTEM, reason=chat.finish_reason, notify_consumer=False)
    if not plain:
        return
    holders = {chat.agent_id: chat.agent for chat in plain if chat.agent_id}
    transition_many(
        plain,
        ChatStatus.FINISHED,
        by=DisconnectedBy.SYSTEM,
        extra_fields=("finish_reason", "disconnected_by"),
        data={chat.pk: {"reason": chat.finish_reason} for chat in plain},
    )
    now = timezone.now()
    Participant.objects.filter(chat__in=plain, ended_at__isnull=True).update(status="ended", ended_at=now)
    Offer.objects.filter(chat__in=plain, status=Offer.Status.OFFERED).update(
        status=Offer.Status.WITHDRAWN, answered_at=now
    )
    for holder in holders.values():
        services.capacity_appeared(agent=holder)


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
    outbound = queue_sms_many(
        [
            {
                "to": chat.consumer_number,
                "from_number": chat.portal_number.number,
                "portal_number": chat.portal_number,
                "body": body,
                "kind": "system",
                "notify_group": events.chat_group(chat.pk),
            }
            for chat, body in to_send
        ]
    )
    messages = Message.objects.bulk_create(
        [
            Message(chat=chat, author=Author.SYSTEM, body=body, outbound=sent)
            for (chat, body), sent in zip(to_send, outbound)
        ]
    )
    for message in messages:
        events.message_created(message)
