"""A waiting consumer's place in the queue and the estimated wait, by SMS (issue 14, item 11):
`{position}` and `{wait}` in the queued, after-hours and "place in queue" texts; the WHERE word
(a menu command word, `queues.models.MenuAction.WHERE`) answered at once; and a queue's periodic
updates, due in the chat's `position_update_at` column and sent by the sweeper.

The estimate comes from the queue's recent assignments: with at least three chats assigned in
the last hour, each place takes (60 minutes ÷ that count); with fewer, each place takes the
average wait of the queue's last assigned chats; with no history, "a few minutes"."""
from __future__ import annotations

import datetime as dt
import math

from django.db import transaction
from django.db.models import Avg, DurationField, ExpressionWrapper, F, Q
from django.utils import timezone

from chats import transcript
from chats.models import Chat, ChatStatus, ChatType
from portal.models import ChatSettings
from queues.models import Queue
from sms.quiet_hours import quiet_hours_for

RATE_WINDOW = dt.timedelta(hours=1)
HISTORY_WINDOW = dt.timedelta(days=7)
HISTORY_CHATS = 20
UPDATES_PER_SWEEP = 200
# Fewer assignments than this in the last hour say little about the rate (one would mean "an
# hour per place"): the recent waits are used instead.
MIN_RATE_ASSIGNMENTS = 3


def position(chat: Chat) -> int:
    """1 for the chat next in line: the queued chats of its queue queued before it, plus one."""
    if chat.queue_id is None or chat.queued_at is None:
        return 1
    ahead = Chat.objects.filter(queue_id=chat.queue_id, status=ChatStatus.QUEUED).filter(
        Q(queued_at__lt=chat.queued_at) | Q(queued_at=chat.queued_at, pk__lt=chat.pk)
    )
    return ahead.count() + 1


def estimated_wait_seconds(queue: Queue, place: int, *, now: dt.datetime | None = None) -> float | None:
    now = now or timezone.now()
    recent = Chat.objects.filter(queue=queue, assigned_at__isnull=False, queued_at__isnull=False)
    assigned_last_hour = recent.filter(assigned_at__gte=now - RATE_WINDOW).count()
    if assigned_last_hour >= MIN_RATE_ASSIGNMENTS:
        return place * RATE_WINDOW.total_seconds() / assigned_last_hour
    last = recent.filter(assigned_at__gte=now - HISTORY_WINDOW).order_by("-assigned_at").values_list("pk", flat=True)[:HISTORY_CHATS]
    average = (
        Chat.objects.filter(pk__in=list(last))
        .annotate(wait=ExpressionWrapper(F("assigned_at") - F("queued_at"), output_field=DurationField()))
        .aggregate(avg=Avg("wait"))["avg"]
    )
    return place * average.total_seconds() if average is not None else None


def wait_words(seconds: float | None) -> str:
    if seconds is None:
        return "a few minutes"
    minutes = math.ceil(seconds / 60)
    if minutes <= 1:
        return "about a minute"
    return f"about {minutes} minutes"


def fill(text: str, chat: Chat) -> str:
    """`text` with {position} and {wait} filled in for the queued chat (nothing read unless asked)."""
    if "{position}" not in text and "{wait}" not in text:
        return text
    place = position(chat)
    text = text.replace("{position}", str(place))
    if "{wait}" in text:
        text = text.replace("{wait}", wait_words(estimated_wait_seconds(chat.queue, place)))
    return text


def send_position(chat: Chat) -> bool:
    """The "place in queue" text now (the consumer's WHERE, or a periodic update)."""
    return transcript.send_if_set(chat, fill(transcript.system_text(chat, "position_update"), chat), what="place in queue")


def first_update_at(queue: Queue, now: dt.datetime) -> dt.datetime | None:
    """When a chat just queued in `queue` gets its first periodic update (None: the queue sends none)."""
    return now + dt.timedelta(minutes=queue.position_update_minutes) if queue.position_update_minutes else None


def send_updates(now: dt.datetime | None = None) -> int:
    """The sweeper's part: each queued chat whose update is due gets one, up to the queue's limit;
    an API-initiated chat's update falls in quiet hours is skipped to the next one. Each chat is
    locked and rechecked, so sweepers on several machines send each update once."""
    now = now or timezone.now()
    due = list(
        Chat.objects.filter(status=ChatStatus.QUEUED, position_update_at__lte=now)
        .order_by("position_update_at")
        .values_list("pk", flat=True)[:UPDATES_PER_SWEEP]
    )
    sent = 0
    chat_settings = ChatSettings.load()
    for pk in due:
        with transaction.atomic():
            chat = (
                Chat.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("queue", "portal_number")
                .filter(pk=pk, status=ChatStatus.QUEUED, position_update_at__lte=now)
                .first()
            )
            if chat is None or chat.queue is None:
                continue
            quiet = chat.chat_type == ChatType.API_SMS and quiet_hours_for(chat.consumer_number, now, chat_settings).is_held(now)
            if not quiet and send_position(chat):
                chat.position_updates_sent += 1
                sent += 1
            more = chat.position_updates_sent < chat.queue.position_update_limit and chat.queue.position_update_minutes
            chat.position_update_at = now + dt.timedelta(minutes=chat.queue.position_update_minutes) if more else None
            chat.save(update_fields=["position_update_at", "position_updates_sent"])
    return sent
