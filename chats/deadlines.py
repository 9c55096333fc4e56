"""What is due when: each chat's next deadline and its kind (DESIGN rule 5), computed from the
chat's own timestamps — pure arithmetic and reads, no action. `chats.timers` acts on the chats
whose deadline passed.

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

from django.db.models import Min, Q
from django.utils import timezone

from chats.models import API_INITIATED, BLENDED_CHAT_TYPES, Chat, ChatStatus, ChatType, Message
from portal.models import ChatSettings
from queues.hours import HoursPeriod, hours_period
from queues.models import Queue
from sms.models import MessageStatus


class DeadlineKind:
    SELECTING = "expired_selecting"
    UNANSWERED = "expired_unanswered"
    UNANSWERED_AFTER_HOURS = "expired_unanswered_after_hours"
    CHAT_TIMEOUT = "timeout_end_user_no_message"
    OUTBOUND_INACTIVE = "timeout_outbound_inactive"
    DISMISSAL = "dismissal"


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
    # A deflected caller's chat keeps the call's place (an earlier queued_at) but gets the whole
    # unanswered time from when it was created.
    start = _latest(chat.queued_at, chat.created_at, default=now) if chat.queued_at else now
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


def _held_deadline(chat: Chat, now: dt.datetime, chat_settings: ChatSettings) -> tuple[str, dt.datetime]:
    """An assigned or dismissed chat: its timeout (inbound) or inactivity (outbound, API), or its
    dismissal when that comes first."""
    last_activity = _latest(chat.assigned_at, chat.last_consumer_message_at, chat.last_agent_message_at, default=now)
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
        and chat.chat_subtype != API_INITIATED
        and chat.chat_type == ChatType.SMS
    )
    if dismissible:
        dismiss_at = last_activity + dt.timedelta(minutes=_minutes(chat, "dismissal_minutes", chat_settings))
        if dismiss_at < at:
            return DeadlineKind.DISMISSAL, dismiss_at
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
        kind, at = _held_deadline(chat, now, chat_settings)
    changed = set()
    if chat.deadline_at != at:
        chat.deadline_at = at
        changed.add("deadline_at")
    if chat.deadline_kind != kind:
        chat.deadline_kind = kind
        changed.add("deadline_kind")
    return changed
