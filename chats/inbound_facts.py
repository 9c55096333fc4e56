"""What an inbound text looks up before the conversation acts on it (chats.flow): the portal
number texted, the consumer's active chat on it (locked FOR UPDATE), whether the consumer opted
out of that number, the command the text is, and for a new chat whether the consumer texted the
number before. Alone, a text looks them up in one or two queries (`look_up`); a batch of texts
reads them once for all its texts (`BatchFacts`, DESIGN rule 11)."""
from __future__ import annotations

from django.db.models import Exists, OuterRef, Subquery

from chats import surveys
from chats.models import ACTIVE_STATUSES, Chat
from portal.keywords import normalise_word
from portal.singletons import cached
from queues.models import MenuCommand
from sms.commands import Command, recognise_command
from sms.models import DoNotContact, InboundMessage, PhoneNumber

MENU_WORD_MAX = MenuCommand._meta.get_field("word").max_length


class BatchFacts:
    """What the texts of one batch look up, read once for the batch (DESIGN rule 11): the portal
    numbers texted, the active chats of the batch's consumers on them (locked FOR UPDATE, in id
    order), their opt-outs, the configured command words, which pairs await a CSAT answer and
    which pairs had a chat before (a first contact gets the opt-in). For one text per pair: a
    text may open or end its chat or opt out, so a pair's next text needs the facts read again
    (chats.intake runs a batch in rounds of one text per pair)."""

    def __init__(self, texts: list[InboundMessage]):
        consumers = {text.from_number for text in texts}
        numbers = {text.to_number for text in texts}
        self.numbers = cached(  # a batch's later rounds text the same numbers: read once
            ("batch_numbers", frozenset(numbers)),
            lambda: {number.number: number for number in PhoneNumber.objects.filter(number__in=numbers)},
        )
        self.chats = {
            (chat.consumer_number, chat.portal_number.number): chat
            for chat in Chat.objects.select_for_update(of=("self",))
            .select_related("portal_number", "queue")
            .filter(consumer_number__in=consumers, portal_number__number__in=numbers, status__in=ACTIVE_STATUSES)
            .order_by("pk")
        }
        self.opted_out = set(
            DoNotContact.objects.filter(consumer_number__in=consumers, portal_number__in=numbers).values_list(
                "consumer_number", "portal_number"
            )
        )
        for text in texts:  # the replies' do-not-contact check (sms.pipeline) asks no more
            opted_out = (text.from_number, text.to_number) in self.opted_out
            cached(("do_not_contact", text.from_number, text.to_number), lambda opted_out=opted_out: opted_out)
        self.menu_words = cached(
            ("menu_words",),
            lambda: {normalise_word(word): action for word, action in MenuCommand.objects.values_list("word", "action")},
        )
        new = {(text.from_number, text.to_number) for text in texts} - set(self.chats)  # no active chat
        # Pairs with no active chat whose CSAT survey awaits a reply (chats.surveys).
        self.surveys_open = surveys.open_surveys(new)
        # Pairs that had a chat before: the others are a first contact (the opt-in message).
        # Asked only for the pairs with no active chat (a batch of texts in chats asks nothing).
        self.known_pairs = set(self.chats)
        if new:
            self.known_pairs |= set(
                Chat.objects.filter(
                    consumer_number__in={consumer for consumer, _ in new},
                    portal_number__number__in={number for _, number in new},
                )
                .values_list("consumer_number", "portal_number__number")
                .distinct()
            )


def known(inbound: InboundMessage, facts: BatchFacts) -> tuple[PhoneNumber | None, Chat | None, bool, Command | None]:
    """`look_up`'s answer from the batch's facts: no query."""
    chat = facts.chats.get((inbound.from_number, inbound.to_number))
    number = chat.portal_number if chat is not None else facts.numbers.get(inbound.to_number)
    if number is None:
        return None, None, False, None
    if chat is not None:
        reuse_queue_as_menu(chat)
    word = "" if inbound.media else normalise_word(inbound.body)
    command = recognise_command(word, menu_words=facts.menu_words) if word else None
    return number, chat, (inbound.from_number, number.number) in facts.opted_out, command


def look_up(inbound: InboundMessage) -> tuple[PhoneNumber | None, Chat | None, bool, Command | None]:
    """The portal number texted, the consumer's active chat on it (locked FOR UPDATE), whether
    the consumer opted out of that number, and the command the text is. A text in a chat costs
    one query, a text with no chat two: the opt-out and the configured command words (BACK,
    EXIT, …) are read in the same query as the chat or the number. The chat comes with its
    number and queue, not its menu queue (each related row costs as much Python as a small
    query), which is read when a menu answer needs it, unless it is the queue itself."""
    consumer = inbound.from_number
    word = "" if inbound.media else normalise_word(inbound.body)
    fixed = recognise_command(word) if word else None  # STOP, START, HELP: no need to look
    # A configured word is one of at most MENU_WORD_MAX characters: a longer text is none.
    configured = bool(word) and fixed is None and len(word) <= MENU_WORD_MAX

    def facts(number_field: str) -> dict:
        found = {
            "consumer_opted_out": Exists(
                DoNotContact.objects.filter(consumer_number=consumer, portal_number=OuterRef(number_field))
            )
        }
        if configured:
            found["menu_action"] = Subquery(MenuCommand.objects.matching(word).order_by().values("action")[:1])
        return found

    chat = (
        Chat.objects.select_for_update(of=("self",))
        .select_related("portal_number", "queue")
        .filter(consumer_number=consumer, portal_number__number=inbound.to_number, status__in=ACTIVE_STATUSES)
        .annotate(**facts("portal_number__number"))
        .first()
    )
    found = chat if chat is not None else (
        PhoneNumber.objects.filter(number=inbound.to_number).annotate(**facts("number")).first()
    )
    if found is None:
        return None, None, False, None
    if chat is not None:
        reuse_queue_as_menu(chat)
    number = chat.portal_number if chat is not None else found
    action = getattr(found, "menu_action", None)
    command = fixed or (recognise_command(word, menu_words={word: action}) if action else None)
    return number, chat, found.consumer_opted_out, command


def reuse_queue_as_menu(chat: Chat) -> None:
    """A chat at its queue's own menu (the first level) needs no second read of that queue."""
    if chat.menu_queue_id is not None and chat.menu_queue_id == chat.queue_id:
        chat.menu_queue = chat.queue
