"""The CSAT survey by SMS (issue 14, item 12): after an agent ends a chat, the queue's survey text
asks for a score; within the survey window a reply of 1 to 5 is the chat's `rating`, the next
text its `feedback`. Anything else starts a new conversation as before.

The survey's texts are the queue's system messages (`csat_survey`, `csat_thanks`, by language,
`queues.models.queue_text`); the window is the chat settings' `survey_window_minutes`."""
from __future__ import annotations

import datetime as dt

from django.db.models import Q
from django.utils import timezone

from chats import transcript
from chats.models import Author, Chat, ChatEvent, ChatEventKind, ChatStatus, ChatType, FinishReason
from portal import crm
from portal.models import ChatSettings
from sms.models import InboundMessage, PhoneNumber

SURVEYED_TYPES = {ChatType.SMS, ChatType.OUTBOUND_SMS, ChatType.API_SMS}
SCORES = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5}


def send_survey(chat: Chat) -> bool:
    """Text the queue's survey after an agent ended the chat (the caller holds its lock). Returns
    True when one was sent."""
    if chat.finish_reason != FinishReason.AGENT_ENDED or chat.chat_type not in SURVEYED_TYPES or chat.queue is None:
        return False
    if not transcript.send_if_set(chat, transcript.system_text(chat, "csat_survey"), what="survey"):
        return False
    chat.survey_sent_at = timezone.now()
    chat.save(update_fields=["survey_sent_at"])
    ChatEvent.objects.create(chat=chat, kind=ChatEventKind.SURVEY_SENT, by="system")
    return True


def open_surveys(pairs, *, now: dt.datetime | None = None) -> set[tuple[str, str]]:
    """The (consumer, portal number) pairs among `pairs` with a survey still awaiting a score or
    feedback: one query for a batch of texts."""
    pairs = set(pairs)
    if not pairs:
        return set()
    consumers = {consumer for consumer, _ in pairs}
    numbers = {number for _, number in pairs}
    found = _awaiting(now).filter(consumer_number__in=consumers, portal_number__number__in=numbers)
    return {pair for pair in found.values_list("consumer_number", "portal_number__number") if pair in pairs}


def on_reply(*, inbound: InboundMessage, number: PhoneNumber) -> str:
    """A text with no active chat: the survey's score or feedback when one is awaited, else ''
    (the text starts a conversation as usual)."""
    chat = (
        _awaiting()
        .select_for_update(of=("self",))
        .select_related("queue", "crm_record")
        .filter(consumer_number=inbound.from_number, portal_number=number)
        .order_by("-survey_sent_at", "-pk")
        .first()
    )
    if chat is None:
        return ""
    if chat.rating is None:
        score = SCORES.get(" ".join(inbound.body.split()).rstrip("."))
        if score is None or inbound.media:
            return ""
        transcript.add_message(chat=chat, author=Author.CONSUMER, body=inbound.body, inbound=inbound)
        chat.rating = score
        chat.save(update_fields=["rating"])
        ChatEvent.objects.create(chat=chat, kind=ChatEventKind.SURVEY_ANSWERED, by="end_user", data={"rating": score})
        crm.add_entry(chat.crm_record, "csat", f"Satisfaction score {score} of 5", rating=score)
        transcript.send_if_set(chat, transcript.system_text(chat, "csat_thanks"), what="survey thanks")
        return "survey_score"
    transcript.add_message(chat=chat, author=Author.CONSUMER, body=inbound.body, inbound=inbound)
    chat.feedback = inbound.body
    chat.save(update_fields=["feedback"])
    ChatEvent.objects.create(chat=chat, kind=ChatEventKind.SURVEY_FEEDBACK, by="end_user")
    crm.add_entry(chat.crm_record, "csat_feedback", inbound.body)
    return "survey_feedback"


def _awaiting(now: dt.datetime | None = None):
    """Finished chats whose survey is inside its window and still awaits a score, or feedback
    after the score."""
    now = now or timezone.now()
    since = now - dt.timedelta(minutes=ChatSettings.load().survey_window_minutes)
    return Chat.objects.filter(status=ChatStatus.FINISHED, survey_sent_at__gte=since).filter(
        Q(rating__isnull=True) | Q(feedback="")
    )
