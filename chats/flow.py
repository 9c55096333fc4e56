"""The consumer's path through a conversation (SPEC S2–S4, S8): commands first, then the menu,
queueing, and the messages of an active chat. Called for each stored text by the batch worker
(chats.intake), inside its batch's transaction."""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from chats import api_sms, assignment, held, inbound_facts, queue_position, services, surveys, transcript
from chats.calls import sms_side
from chats.models import (
    ChatEventKind,
    ACTIVE_STATUSES,
    BLENDED_CHAT_TYPES,
    Author,
    Chat,
    ChatEvent,
    ChatStatus,
    DisconnectedBy,
    FinishReason,
    Media,
    Message,
    Participant,
    ParticipantType,
)
from chats.deadlines import recompute_deadline
from portal.keywords import is_opt_out_phrase
from portal.languages import language_name
from portal.models import ChatSettings
from portal.singletons import cached
from queues.models import Queue, queue_text
from sms.commands import Command
from sms.models import (
    InboundMessage,
    NumberDirection,
    NumberRole,
    NumberUsage,
    OutboundMessage,
    PhoneNumber,
)
from sms.pipeline import add_do_not_contact, queue_sms, remove_do_not_contact

log = logging.getLogger(__name__)

def handle_inbound(inbound: InboundMessage, facts: inbound_facts.BatchFacts | None = None) -> str:
    """Act on one stored inbound text; returns the outcome (kept on the InboundMessage by the
    batch worker, chats.intake). The caller holds a transaction; `facts`, the batch's lookups."""
    held.write_first(inbound.from_number)  # what the consumer's earlier texts held: this one may read or change it
    outcome = _handle(inbound, facts)
    log.info("inbound %s from=%s to=%s: %s", inbound.message_sid, inbound.from_number, inbound.to_number, outcome)
    return outcome


def _reply(inbound: InboundMessage, body: str, *, ignore_do_not_contact: bool = False, chat: Chat | None = None):
    if not body:
        return None
    if chat is not None:
        return transcript.send_text(chat=chat, body=body)
    held.write_first(inbound.from_number)  # a reply a batch held goes out first
    return queue_sms(
        to=inbound.from_number, from_number=inbound.to_number, body=body, ignore_do_not_contact=ignore_do_not_contact
    )


def _handle(inbound: InboundMessage, facts: inbound_facts.BatchFacts | None) -> str:
    chat_settings = ChatSettings.load()
    number, chat, opted_out, command = inbound_facts.known(inbound, facts) if facts is not None else inbound_facts.look_up(inbound)
    if number is None:
        return "unknown_number"
    consumer = inbound.from_number
    if chat is not None:
        _assign_again_after_commit(chat)
    if command is None and not inbound.media and is_opt_out_phrase(inbound.body, chat_settings.opt_out_phrases):
        command = Command.STOP  # "please stop texting me" (SPEC R2)

    # Commands first (S2), also inside an active chat.
    if command == Command.STOP:
        if chat is not None:
            _record_consumer(chat, inbound)
            services.end_chat(
                chat=chat, by=DisconnectedBy.END_USER, reason=FinishReason.END_USER_STOPPED, notify_consumer=False
            )
        added = add_do_not_contact(
            consumer_number=consumer, portal_number=number.number, source="stop", text=inbound.body, message_sid=inbound.message_sid
        )
        if added:
            _reply(inbound, chat_settings.stop_confirmation, ignore_do_not_contact=True)
        return "stop"
    if command == Command.START:
        if chat is not None:
            # "Yes" inside a chat is also the agent's answer: keep it in the transcript.
            _record_consumer(chat, inbound)
        remove_do_not_contact(
            consumer_number=consumer, portal_number=number.number, text=inbound.body, message_sid=inbound.message_sid
        )
        _reply(inbound, chat_settings.start_confirmation, chat=chat)
        return "start"
    if opted_out:
        return "do_not_contact"
    if command == Command.HELP:
        if chat is not None:
            _record_consumer(chat, inbound)
        _reply(inbound, chat_settings.support_contact_text, chat=chat)
        return "help"

    if chat is None and number.usage == NumberUsage.IN_CALL:
        # A caller texting the in-call SMS number during their call (SPEC B1, B2), or after it.
        chat = sms_side.sms_side_for_text(consumer_number=consumer, number=number)
        if chat is None:
            outcome = sms_side.answer_after_session(inbound=inbound, number=number)
            if outcome:
                return outcome
    if chat is None and (facts is None or (consumer, number.number) in facts.surveys_open):
        outcome = surveys.on_reply(inbound=inbound, number=number)
        if outcome:
            return outcome
    if chat is None:
        known = (consumer, number.number) in facts.known_pairs if facts is not None else None
        return _start_conversation(inbound, number, command, chat_settings, known_before=known)

    return _continue_chat(chat, inbound, command, chat_settings)


def _continue_chat(chat: Chat, inbound: InboundMessage, command, chat_settings: ChatSettings) -> str:
    """A text inside an active chat (the caller holds the chat's row lock). One that only goes
    into the transcript is held for the batch's end when the batch holds its writes (chats.held)."""
    step = _step(chat, command)
    if step is None and not inbound.media and held.holding():
        held.hold_message(_consumer_entry(chat, inbound))
        held.hold_chat_fields(chat, _consumer_texted(chat))
        return "message"
    if step == "menu" and not inbound.media:
        # The answer's transcript entry goes in with the replies' entries, and the chat's last
        # text time with the step's own UPDATE of the chat.
        unsaved = tuple(sorted(_consumer_texted(chat)))
        return _menu_answer(chat, inbound.body, command, chat_settings, unsaved, [_consumer_entry(chat, inbound)])
    message = _record_consumer(chat, inbound)
    if step == "exit":
        services.end_chat(chat=chat, by=DisconnectedBy.END_USER, reason=FinishReason.END_USER_EXIT)
        return "exit"
    if step == "where":
        queue_position.send_position(chat)
        return "where"
    if step == "call":
        return sms_side.on_caller_text(chat=chat, message=message)
    if step == "api_reply":
        return _api_chat_reply(chat, chat_settings)
    if step == "menu":
        return _menu_answer(chat, inbound.body, command, chat_settings)  # a choice with pictures, recorded above
    if step == "dismissed":
        transcript.send_text(chat=chat, body=chat_settings.dismissed_chat_auto_response)
        assignment.queue_chat(chat=chat, queue=chat.queue, by="end_user", send_notice=False)
        return "dismissed_requeued"
    return "message"


def _step(chat: Chat, command) -> str | None:
    """What a text in an active chat does besides going into the transcript; None: nothing."""
    if command == Command.EXIT:
        return "exit"
    if command == Command.WHERE and chat.status == ChatStatus.QUEUED:
        return "where"
    if chat.chat_type in BLENDED_CHAT_TYPES:
        return "call"  # the call's SMS side (SPEC B1, B2)
    if api_sms.api_chat_replied(chat=chat):
        return "api_reply"
    if chat.status == ChatStatus.SELECTING:
        return "menu"
    if chat.status == ChatStatus.DISMISSED:
        return "dismissed"
    return None


def _assign_again_after_commit(chat: Chat) -> None:
    """This transaction holds a queued chat's row lock, and an assignment run going on now skips
    locked chats (skip_locked): run the queue's assignment again after commit, or the chat could
    wait for the next chat or agent to come along (two quick texts from a new consumer do this:
    the second holds the chat while the first one's assignment runs)."""
    if chat.status == ChatStatus.QUEUED and chat.queue_id:
        assignment.assign_after_commit(chat.queue)


def _record_consumer(chat: Chat, inbound: InboundMessage, *, save_chat: bool = True):
    """The consumer's text in the transcript (with its pictures and videos) and, unless the caller
    saves the chat itself, the chat's last consumer message time and deadline."""
    message = transcript.add_entry(_consumer_entry(chat, inbound))
    if inbound.media:
        items = [
            Media(message=message, content_type=item.get("content_type", ""), source_url=item.get("url", "")[:500])
            for item in inbound.media
        ]
        Media.objects.bulk_create(items)
        media_ids = [m.pk for m in Media.objects.filter(message=message).order_by("pk")]
        transaction.on_commit(lambda: _enqueue_media_fetch(media_ids))
    if save_chat:
        chat.save(update_fields=sorted(_consumer_texted(chat)))
    return message


def _consumer_entry(chat: Chat, inbound: InboundMessage) -> Message:
    """The consumer's text as a transcript entry, not yet saved."""
    return Message(chat=chat, author=Author.CONSUMER, body=inbound.body, inbound=inbound)


def _consumer_texted(chat: Chat) -> set[str]:
    """The chat's last consumer message time is now, its deadline moves with it: the fields changed."""
    chat.last_consumer_message_at = timezone.now()
    return {"last_consumer_message_at"} | recompute_deadline(chat)


def _enqueue_media_fetch(media_ids: list[int]) -> None:
    from django_q.tasks import async_task

    for media_id in media_ids:
        async_task("chats.tasks.fetch_media", media_id, task_name=f"fetch-media-{media_id}")


def _entry_queue(number: PhoneNumber) -> Queue | None:
    """The queue a number's new conversations start in (read once per batch)."""
    if number.direction == NumberDirection.OUTBOUND_ONLY:
        return None

    def load():
        link = number.queue_links.filter(role=NumberRole.INCOMING).select_related("queue").first()
        return link.queue if link is not None and link.queue.sms_enabled else None

    return cached(("entry_queue", number.pk), load)


def _menu_options(queue: Queue) -> list[Queue]:
    """A menu's options (read once per batch)."""
    return cached(("menu_options", queue.pk), lambda: list(Queue.objects.menu_options(queue)))


def _start_conversation(
    inbound: InboundMessage, number: PhoneNumber, command, chat_settings: ChatSettings, known_before: bool | None = None
) -> str:
    """A new chat for a consumer with none active. `known_before`: whether the consumer had a chat
    with this number before (the batch's facts know it), else it is looked up."""
    queue = _entry_queue(number)
    if queue is None:
        if not _answered_recently(inbound, chat_settings.do_not_reply_message):
            _reply(inbound, chat_settings.do_not_reply_message)
        return "not_an_incoming_number"
    if not chat_settings.sms_chat_enabled:
        return "sms_chat_off"
    if command == Command.EXIT:
        return "exit_without_chat"
    if known_before is None:
        known_before = Chat.objects.filter(consumer_number=inbound.from_number, portal_number=number).exists()
    languages = [code for code in chat_settings.enabled_languages or [] if not queue.languages or code in queue.languages]
    chat = Chat(
        consumer_number=inbound.from_number,
        portal_number=number,
        queue=queue,
        menu_queue=queue,
        language=chat_settings.default_language,
        language_chosen=len(languages) <= 1,
        last_consumer_message_at=timezone.now(),
    )
    recompute_deadline(chat, chat_settings=chat_settings)  # the first deadline, saved with the row
    try:
        with transaction.atomic():
            chat.save(force_insert=True)
    except IntegrityError:
        # Another text from the same consumer created the chat a moment ago: use that one.
        # Handle this text as if it had come just after that one (a menu answer stays one).
        chat = (
            Chat.objects.select_for_update(of=("self",))
            .select_related("portal_number", "queue")
            .get(consumer_number=inbound.from_number, portal_number=number, status__in=ACTIVE_STATUSES)
        )
        inbound_facts.reuse_queue_as_menu(chat)
        _assign_again_after_commit(chat)
        return _continue_chat(chat, inbound, command, chat_settings)
    held.save_row(Participant(chat=chat, type=ParticipantType.END_USER))
    held.save_row(ChatEvent(chat=chat, kind=ChatEventKind.CREATED, by="end_user", data={"queue_id": queue.pk}))
    # The text into the transcript (its time and deadline went in with the row): with its
    # replies' entries in one INSERT, ahead of them; one with pictures now, for their rows.
    entry = []
    if inbound.media:
        _record_consumer(chat, inbound, save_chat=False)
    else:
        entry = [_consumer_entry(chat, inbound)]
    greeting = queue_text(queue, "greeting", chat.language, chat_settings.default_language)
    first = [greeting] if known_before else [chat_settings.opt_in_message, greeting]
    if not chat.language_chosen:
        transcript.send_texts([(chat, body) for body in [*first, _language_menu(languages)]], entries_before=entry)
        chat.menu_path = []
        return "language_menu"
    return _enter_queue(chat, queue, chat_settings, texts_before=first, entries_before=entry)


DO_NOT_REPLY_QUIET_HOURS = 24


def _answered_recently(inbound: InboundMessage, body: str) -> bool:
    """The do-not-reply text goes out once a day per sender, so an auto-responder on the other
    side cannot start an endless exchange."""
    since = timezone.now() - timezone.timedelta(hours=DO_NOT_REPLY_QUIET_HOURS)
    return OutboundMessage.objects.filter(
        to_number=inbound.from_number, from_number=inbound.to_number, body=body, created_at__gte=since
    ).exists()


def _api_chat_reply(chat: Chat, chat_settings: ChatSettings) -> str:
    """The consumer answered an API-initiated text (SPEC A1): the chat enters the queue flow of
    the outbound number's queue — its greeting, then its menu or the queue itself."""
    queue = chat.queue
    if queue is None:
        return "message"  # its queue was deleted since: the text stays in the transcript
    greeting = queue_text(queue, "greeting", chat.language, chat_settings.default_language)
    return _enter_queue(chat, queue, chat_settings, texts_before=[greeting])


def _language_menu(languages: list[str]) -> str:
    return "Reply " + ", ".join(f"{i} for {language_name(code)}" for i, code in enumerate(languages, 1)) + "."


def _enter_queue(
    chat: Chat, queue: Queue, chat_settings: ChatSettings, unsaved: tuple[str, ...] = (),
    texts_before: list[str] | tuple[str, ...] = (), entries_before: list[Message] | tuple = (),
) -> str:
    """A leaf queues the chat; a menu sends its options and waits for a choice. `unsaved`: chat
    fields the caller changed, saved with this step's own change. `texts_before`: texts that go
    out first (the opt-in message, the greeting), sent together with the menu; `entries_before`:
    unsaved transcript entries inserted with theirs (`transcript.send_texts`)."""
    options = _menu_options(queue)
    if not options:
        if texts_before:
            transcript.send_texts([(chat, body) for body in texts_before], entries_before=entries_before)
            entries_before = ()
        assignment.queue_chat(chat=chat, queue=queue, extra_fields=unsaved, entries_before=entries_before)
        return "queued"
    fields = list(unsaved)
    if chat.menu_queue_id != queue.pk:
        chat.menu_queue = queue
        fields.append("menu_queue")
    _save_fields(chat, fields)
    transcript.send_texts(
        [(chat, body) for body in [*texts_before, _menu_text(chat, queue, options, chat_settings)]],
        entries_before=entries_before,
    )
    return "menu"


def _menu_text(chat: Chat, queue: Queue, options: list[Queue], chat_settings: ChatSettings) -> str:
    prompt = queue_text(queue, "menu_prompt", chat.language, chat_settings.default_language) or "Reply"
    pattern = queue_text(queue, "menu_option", chat.language, chat_settings.default_language) or "{number} for {name}"
    return f"{prompt} " + ", ".join(_fill(pattern, i, option.name) for i, option in enumerate(options, 1)) + "."


def _fill(pattern: str, number: int, name: str) -> str:
    return pattern.replace("{number}", str(number)).replace("{name}", name)


def _menu_answer(
    chat: Chat, body: str, command, chat_settings: ChatSettings, unsaved: tuple[str, ...] = (),
    entries: list[Message] | tuple = (),
) -> str:
    """A text in a chat at a menu (or its language menu). `unsaved`, `entries`: the consumer's
    text not yet written (the chat's changed fields, its transcript entry), which go in with
    the step's own writes."""
    if not chat.language_chosen:
        return _language_answer(chat, body, chat_settings, unsaved, entries)
    menu = chat.menu_queue or chat.queue
    if command == Command.BACK:
        parent = menu.parent if menu and menu.parent_id and chat.menu_path else None
        if parent is not None:
            chat.menu_path = chat.menu_path[:-1]
            return _enter_queue(chat, parent, chat_settings, unsaved=("menu_path", *unsaved), entries_before=entries)
        return _enter_queue(chat, menu, chat_settings, unsaved=unsaved, entries_before=entries)
    options = _menu_options(menu)
    choice = _pick(options, body)
    if choice is None:
        invalid = queue_text(menu, "invalid_choice", chat.language, chat_settings.default_language)
        _save_fields(chat, unsaved)
        transcript.send_texts([(chat, invalid), (chat, _menu_text(chat, menu, options, chat_settings))], entries_before=entries)
        return "invalid_choice"
    chat.menu_path = [*chat.menu_path, choice.pk]
    return _enter_queue(chat, choice, chat_settings, unsaved=("menu_path", *unsaved), entries_before=entries)


def _save_fields(chat: Chat, fields) -> None:
    if fields:
        chat.save(update_fields=sorted(set(fields)))


def _pick(options: list[Queue], body: str) -> Queue | None:
    answer = " ".join((body or "").split()).upper()
    if answer.isdigit():
        index = int(answer) - 1
        return options[index] if 0 <= index < len(options) else None
    for option in options:
        if answer in option.keyword_list:
            return option
    return None


def _language_answer(
    chat: Chat, body: str, chat_settings: ChatSettings, unsaved: tuple[str, ...] = (), entries: list[Message] | tuple = ()
) -> str:
    queue = chat.queue
    languages = [code for code in chat_settings.enabled_languages or [] if not queue.languages or code in queue.languages]
    answer = " ".join((body or "").split()).lower()
    chosen = None
    if answer.isdigit() and 1 <= int(answer) <= len(languages):
        chosen = languages[int(answer) - 1]
    else:
        chosen = next((code for code in languages if answer in {code, language_name(code).lower()}), None)
    if chosen is None:
        _save_fields(chat, unsaved)
        transcript.send_texts([(chat, _language_menu(languages))], entries_before=entries)
        return "invalid_language"
    chat.language = chosen
    chat.language_chosen = True
    return _enter_queue(chat, queue, chat_settings, unsaved=("language", "language_chosen", *unsaved), entries_before=entries)
