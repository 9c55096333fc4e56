"""Chat deadlines in columns (DESIGN rule 5): each chat carries its next deadline and its kind,
recomputed at each transition and each message from the chat's own timestamps, and one sweeper
acts on the chats whose deadline passed.

The kinds (SPEC C3, S8), each value in minutes from the queue's override or the global chat
settings (`Queue.timer_minutes`):

- queue-selecting expiration: `selecting` since the later of creation and the consumer's last
  text (an API chat nobody answered included);
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
from django.utils import timezone

from chats.models import ACTIVE_STATUSES, BLENDED_CHAT_TYPES, Chat, ChatStatus, ChatType
from portal.models import ChatSettings
from portal.realtime import batched_pushes
from portal.singletons import cached_singletons
from queues.hours import hours_period

log = logging.getLogger(__name__)


class DeadlineKind:
    SELECTING = "expired_selecting"
    UNANSWERED = "expired_unanswered"
    UNANSWERED_AFTER_HOURS = "expired_unanswered_after_hours"
    CHAT_TIMEOUT = "timeout_end_user_no_message"
    OUTBOUND_INACTIVE = "timeout_outbound_inactive"
    DISMISSAL = "dismissal"


def _minutes(chat: Chat, name: str, chat_settings: ChatSettings) -> int:
    if chat.queue is not None:
        return chat.queue.timer_minutes(name, chat_settings)
    return getattr(chat_settings, name)


def _latest(*times, default: dt.datetime) -> dt.datetime:
    return max([t for t in times if t] or [default])


def _queued_deadline(chat: Chat, now: dt.datetime, chat_settings: ChatSettings) -> tuple[str, dt.datetime]:
    start = chat.queued_at or now
    if chat.queue is None:
        open_now, since, until = not chat.queued_after_hours, None, None
    else:
        open_now, since, until = hours_period(chat.queue, now)
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
    chat: Chat, *, now: dt.datetime | None = None, chat_settings: ChatSettings | None = None
) -> set[str]:
    """Set chat.deadline_at/deadline_kind for its current state; returns the fields changed."""
    now = now or timezone.now()
    chat_settings = chat_settings or ChatSettings.load()
    kind, at = "", None
    if chat.chat_type in BLENDED_CHAT_TYPES:
        pass
    elif chat.status == ChatStatus.SELECTING:
        kind = DeadlineKind.SELECTING
        since = _latest(chat.created_at, chat.last_consumer_message_at, default=now)
        at = since + dt.timedelta(minutes=_minutes(chat, "selecting_expiration_minutes", chat_settings))
    elif chat.status == ChatStatus.QUEUED:
        kind, at = _queued_deadline(chat, now, chat_settings)
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


SWEEP_BATCH = 50

EXPIRY_REASONS = {
    DeadlineKind.SELECTING: "expired_selecting",
    DeadlineKind.UNANSWERED: "expired_unanswered",
    DeadlineKind.UNANSWERED_AFTER_HOURS: "expired_unanswered",
    DeadlineKind.CHAT_TIMEOUT: "timeout_end_user_no_message",
    DeadlineKind.OUTBOUND_INACTIVE: "timeout_outbound_inactive",
}


def sweep(now: dt.datetime | None = None) -> int:
    """Act on every chat whose deadline passed, in small locked batches (skip_locked, so several
    workers share the work and none acts twice). Each chat is re-checked under its lock and acted
    on in a savepoint of its own: one that fails is logged and left for the next run, the others
    go on. Returns how many chats were expired or dismissed. Tests call this after moving the
    clock with time_machine."""
    now = now or timezone.now()
    acted = 0
    failed: set[int] = set()
    # The settings are read once per run, and each batch's browser pushes leave together once it
    # committed (both cost more than the expiry itself, chat by chat).
    with cached_singletons():
        while True:
            with batched_pushes(), transaction.atomic():
                due = list(
                    Chat.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("portal_number", "queue")
                    .prefetch_related("queue__messages")
                    .filter(status__in=ACTIVE_STATUSES, deadline_at__lte=now)
                    .exclude(pk__in=failed)
                    .order_by("deadline_at")[:SWEEP_BATCH]
                )
                chat_settings = ChatSettings.load()
                for chat in due:
                    try:
                        with transaction.atomic():
                            acted += act_on_deadline(chat, now=now, chat_settings=chat_settings)
                    except Exception:  # noqa: BLE001 — one chat's failure must not stop the others
                        log.exception(
                            "chat %s: acting on its %s deadline failed; retried next sweep", chat.pk, chat.deadline_kind
                        )
                        failed.add(chat.pk)
            if len(due) < SWEEP_BATCH:
                return acted


def act_on_deadline(chat: Chat, *, now: dt.datetime, chat_settings: ChatSettings | None = None) -> int:
    """Expire or dismiss one locked chat whose deadline passed; 0 when, recomputed, it is not due
    (a message arrived since, or the queue's hours changed)."""
    from chats import services
    from chats.models import DisconnectedBy
    from chats.states import transition

    changed = recompute_deadline(chat, now=now, chat_settings=chat_settings)
    if changed:
        chat.save(update_fields=sorted(changed))
    if chat.deadline_at is None or chat.deadline_at > now:
        return 0
    kind = chat.deadline_kind
    if kind == DeadlineKind.DISMISSAL:
        holder = chat.agent
        # The chat leaves the agent's adapter (SPEC S8); chat.agent stays until the chat is
        # queued again, so the event of this move still reaches that agent.
        chat.participants.filter(type="agent", ended_at__isnull=True).update(status="dismissed", ended_at=now)
        transition(chat, ChatStatus.DISMISSED, by="timer")
        if holder is not None:
            services.capacity_appeared(agent=holder)
    else:
        services.send_text(chat=chat, body=services.system_text(chat, "expired"))
        services.end_chat(
            chat=chat, by=DisconnectedBy.SYSTEM, reason=EXPIRY_REASONS.get(kind, "failed"), notify_consumer=False
        )
    return 1
