"""SMS commands (SPEC C2, S2) and the menu (S3, S4): commands come first, also inside a chat."""
import pytest

from chats import services
from chats.models import Chat, ChatStatus, DisconnectedBy, FinishReason
from chats.errors import ChatActionError
from portal.keywords import HELP_WORDS, START_WORDS, STOP_WORDS
from queues.models import MenuAction
from sms.models import DoNotContact, InboundMessage, MessageStatus, OutboundMessage
from tests.chats.conftest import (
    BILLING_QUEUED,
    CHAT_ENDED,
    CONSUMER,
    GREETING,
    INVALID,
    MENU,
    PORTAL,
    TECH_QUEUED,
    transcript,
)
from tests.factories import make_menu_command, make_queue, make_queue_messages

ALL_STOP_WORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]


def test_the_protected_words_are_the_specified_ones():
    assert set(STOP_WORDS) == set(ALL_STOP_WORDS)
    assert set(START_WORDS) == {"START", "YES", "UNSTOP"}
    assert set(HELP_WORDS) == {"HELP", "INFO"}


def last_outcome() -> str:
    return InboundMessage.objects.order_by("-pk").values_list("outcome", flat=True).first()


@pytest.fixture
def assigned(phone, alice, go_online):
    """The consumer is chatting with Alice in Billing."""
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    phone.new_texts()
    chat = phone.chat()
    assert chat.status == ChatStatus.ASSIGNED
    return chat


# --- STOP and friends ---------------------------------------------------------------------------


@pytest.mark.parametrize("word", ALL_STOP_WORDS)
def test_a_stop_word_inside_a_chat_ends_it_and_opts_the_consumer_out(phone, assigned, chat_settings, word):
    phone.text(f" {word.lower()} ")

    chat = Chat.objects.get(pk=assigned.pk)
    assert chat.status == ChatStatus.FINISHED
    assert chat.finish_reason == FinishReason.END_USER_STOPPED
    assert chat.disconnected_by == DisconnectedBy.END_USER
    assert transcript(chat)[-1] == ("consumer", f" {word.lower()} ")
    assert DoNotContact.objects.filter(consumer_number=CONSUMER, portal_number=PORTAL).count() == 1
    # One confirmation, no "chat ended" text.
    assert phone.new_texts() == [chat_settings.stop_confirmation]

    # From now on nothing is sent, whatever the consumer writes.
    phone.text("Hello? Anyone there?")
    phone.text(word)
    phone.text("help")
    assert phone.new_texts() == []
    assert Chat.objects.filter(consumer_number=CONSUMER).count() == 1
    assert last_outcome() == "do_not_contact"


@pytest.mark.parametrize("word", ALL_STOP_WORDS)
def test_a_stop_word_outside_a_chat_opts_the_consumer_out_without_a_chat(phone, chat_settings, word):
    phone.text(word.capitalize())

    assert not Chat.objects.exists()
    assert DoNotContact.objects.filter(consumer_number=CONSUMER, portal_number=PORTAL, source="stop").exists()
    assert phone.new_texts() == [chat_settings.stop_confirmation]

    phone.text("Hi")
    phone.text(word)
    assert phone.new_texts() == []
    assert not Chat.objects.exists()


def test_the_stop_confirmation_is_sent_even_though_the_consumer_is_now_opted_out(phone, chat_settings):
    phone.text("STOP")

    message = OutboundMessage.objects.get(to_number=CONSUMER)
    assert message.body == chat_settings.stop_confirmation
    assert message.status != MessageStatus.SUPPRESSED


def test_nothing_is_sent_to_an_opted_out_consumer_by_an_agent_either(phone, assigned, alice, committed):
    phone.text("STOP")

    with pytest.raises(ChatActionError) as refused:
        committed(services.send_agent_message, agent=alice, chat=assigned, body="Are you still there?")
    assert refused.value.message == "This chat has ended."


def test_stop_while_choosing_in_the_menu_ends_the_selecting_chat(phone, chat_settings):
    phone.text("Hi")
    phone.new_texts()

    phone.text("stop")

    chat = phone.chat()
    assert chat.status == ChatStatus.FINISHED and chat.finish_reason == FinishReason.END_USER_STOPPED
    assert phone.new_texts() == [chat_settings.stop_confirmation]


@pytest.mark.parametrize("word", ["START", "yes", " Unstop "])
def test_start_removes_the_opt_out_and_confirms(phone, chat_settings, word):
    phone.text("STOP")
    phone.new_texts()

    phone.text(word)

    assert not DoNotContact.objects.exists()
    assert phone.new_texts() == [chat_settings.start_confirmation]
    # Texts reach the portal again: a new conversation starts.
    phone.text("Hi")
    assert phone.new_texts() == [chat_settings.opt_in_message, GREETING, MENU]
    assert phone.chat().status == ChatStatus.SELECTING


def test_start_inside_a_chat_confirms_and_keeps_the_consumer_text_in_the_transcript(
    phone, assigned, chat_settings
):
    phone.text("Yes")

    chat = Chat.objects.get(pk=assigned.pk)
    assert chat.status == ChatStatus.ASSIGNED
    assert phone.new_texts() == [chat_settings.start_confirmation]
    assert transcript(chat)[-2:] == [("consumer", "Yes"), ("system", chat_settings.start_confirmation)]


# --- HELP / INFO --------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["HELP", "info", " Help "])
def test_help_outside_a_chat_answers_the_support_text_without_a_chat(phone, chat_settings, word):
    phone.text(word)

    assert phone.new_texts() == [chat_settings.support_contact_text]
    assert not Chat.objects.exists()
    assert last_outcome() == "help"


@pytest.mark.parametrize("word", ["HELP", "INFO"])
def test_help_inside_a_chat_answers_in_the_chat(phone, assigned, chat_settings, word):
    phone.text(word)

    chat = Chat.objects.get(pk=assigned.pk)
    assert chat.status == ChatStatus.ASSIGNED
    assert phone.new_texts() == [chat_settings.support_contact_text]
    assert transcript(chat)[-2:] == [("consumer", word), ("system", chat_settings.support_contact_text)]


def test_a_command_word_inside_a_sentence_is_just_a_message(phone, assigned):
    phone.text("Please stop charging me twice")

    chat = Chat.objects.get(pk=assigned.pk)
    assert chat.status == ChatStatus.ASSIGNED
    assert phone.new_texts() == []
    assert not DoNotContact.objects.exists()


# --- EXIT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["EXIT", "exit", " Exit "])
def test_exit_as_the_first_message_creates_no_chat(phone, word):
    phone.text(word)

    assert not Chat.objects.exists()
    assert phone.new_texts() == []
    assert last_outcome() == "exit_without_chat"


def test_exit_inside_a_chat_ends_it(phone, assigned):
    phone.text("exit")

    chat = Chat.objects.get(pk=assigned.pk)
    assert chat.status == ChatStatus.FINISHED
    assert chat.finish_reason == FinishReason.END_USER_EXIT
    assert chat.disconnected_by == DisconnectedBy.END_USER
    assert chat.ends_at is not None
    assert phone.new_texts() == [CHAT_ENDED]
    assert not DoNotContact.objects.exists()


def test_exit_while_choosing_ends_the_chat(phone):
    phone.text("Hi")
    phone.text("EXIT")

    chat = phone.chat()
    assert chat.status == ChatStatus.FINISHED and chat.finish_reason == FinishReason.END_USER_EXIT


def test_exit_while_waiting_in_the_queue_ends_the_chat(phone):
    phone.text("Hi")
    phone.text("1")
    assert phone.chat().status == ChatStatus.QUEUED

    phone.text("exit")

    chat = phone.chat()
    assert chat.status == ChatStatus.FINISHED and chat.finish_reason == FinishReason.END_USER_EXIT
    # The next text starts over.
    phone.text("Hi again")
    assert phone.chat().pk != chat.pk


def test_a_configured_exit_word_works_like_exit(phone, assigned):
    make_menu_command("BYE", MenuAction.EXIT)

    phone.text("bye")

    assert Chat.objects.get(pk=assigned.pk).finish_reason == FinishReason.END_USER_EXIT


@pytest.mark.parametrize("stored, texted", [("bye", "BYE"), ("See you", "  see   YOU ")])
def test_a_configured_word_matches_whatever_case_it_was_stored_and_texted_in(phone, assigned, stored, texted):
    make_menu_command(stored, MenuAction.EXIT)

    phone.text(texted)

    assert Chat.objects.get(pk=assigned.pk).finish_reason == FinishReason.END_USER_EXIT


# --- the menu: BACK, invalid choices, configured words -------------------------------------------


@pytest.fixture
def two_levels(support):
    """Tech becomes a menu: 1 Hardware, 2 Software."""
    hardware = make_queue("Hardware", parent=support.tech, position=1, menu_keywords="HARDWARE")
    software = make_queue("Software", parent=support.tech, position=2, menu_keywords="SOFTWARE")
    make_queue_messages(hardware, queued="A hardware specialist will be with you shortly.")
    make_queue_messages(software, queued="A software specialist will be with you shortly.")
    return support


TECH_MENU = "Reply 1 for Hardware, 2 for Software."


def test_back_climbs_one_level_of_a_two_level_menu(phone, two_levels):
    phone.text("Hi")
    phone.new_texts()

    phone.text("2")
    assert phone.new_texts() == [TECH_MENU]
    assert phone.chat().status == ChatStatus.SELECTING

    phone.text("back")
    assert phone.new_texts() == [MENU]

    phone.text("tech")
    phone.text("software")
    chat = phone.chat()
    assert phone.new_texts() == [TECH_MENU, "A software specialist will be with you shortly."]
    assert chat.status == ChatStatus.QUEUED and chat.queue.name == "Software"


def test_back_at_the_top_menu_sends_the_menu_again(phone):
    phone.text("Hi")
    phone.new_texts()

    phone.text("BACK")

    assert phone.new_texts() == [MENU]
    assert phone.chat().status == ChatStatus.SELECTING


@pytest.mark.parametrize("answer", ["3", "0", "sales", "1 please"])
def test_an_invalid_choice_gets_the_invalid_text_and_the_menu_again(phone, answer):
    phone.text("Hi")
    phone.new_texts()

    phone.text(answer)

    assert phone.new_texts() == [INVALID, MENU]
    assert phone.chat().status == ChatStatus.SELECTING
    phone.text("1")
    assert phone.new_texts() == [BILLING_QUEUED]


def test_a_configured_back_word_works_like_back(phone, two_levels):
    make_menu_command("MENU", MenuAction.BACK)
    phone.text("Hi")
    phone.text("2")
    phone.new_texts()

    phone.text("Menu")

    assert phone.new_texts() == [MENU]
    phone.text("2")
    phone.text("1")
    assert phone.chat().queue.name == "Hardware"


def test_back_inside_an_assigned_chat_is_a_message_for_the_agent(phone, assigned):
    phone.text("back")

    chat = Chat.objects.get(pk=assigned.pk)
    assert chat.status == ChatStatus.ASSIGNED
    assert transcript(chat)[-1] == ("consumer", "back")
    assert phone.new_texts() == []


# --- languages (S4) -----------------------------------------------------------------------------


@pytest.fixture
def bilingual(support, chat_settings):
    chat_settings.enabled_languages = ["en", "es"]
    chat_settings.save()
    make_queue_messages(support.menu, "es", greeting="Bienvenido a Acme.", menu_prompt="Responda", invalid_choice="Opción no válida.")
    make_queue_messages(support.billing, "es", queued="¡Gracias! Un agente de facturación le atenderá pronto.")
    return support


def test_with_two_languages_the_first_menu_asks_for_one(phone, bilingual, chat_settings):
    phone.text("Hola")

    assert phone.new_texts() == [chat_settings.opt_in_message, GREETING, "Reply 1 for English, 2 for Spanish."]
    chat = phone.chat()
    assert chat.status == ChatStatus.SELECTING and not chat.language_chosen

    phone.text("2")

    chat.refresh_from_db()
    assert chat.language == "es" and chat.language_chosen
    menu = phone.new_texts()
    assert len(menu) == 1 and menu[0].startswith("Responda 1")
    phone.text("1")
    assert phone.new_texts() == ["¡Gracias! Un agente de facturación le atenderá pronto."]


@pytest.mark.parametrize("answer", ["spanish", "ES", " Spanish "])
def test_a_language_can_be_picked_by_name_or_code(phone, bilingual, answer):
    phone.text("Hola")
    phone.text(answer)

    assert phone.chat().language == "es"


def test_an_unknown_language_answer_asks_again(phone, bilingual):
    phone.text("Hola")
    phone.new_texts()

    phone.text("7")

    assert phone.new_texts() == ["Reply 1 for English, 2 for Spanish."]
    assert not phone.chat().language_chosen


def test_english_keeps_the_english_texts(phone, bilingual):
    phone.text("Hi")
    phone.text("1")
    phone.new_texts()

    phone.text("2")

    assert phone.chat().language == "en"
    assert phone.new_texts() == [TECH_QUEUED]
