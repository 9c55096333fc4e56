"""SPEC C2: recognising an SMS command. Protected words are fixed, case-insensitive and match
the whole message; BACK, EXIT and other configured words come from the admin."""
import pytest

from portal.keywords import HELP_WORDS, PROTECTED_WORDS, START_WORDS, STOP_WORDS
from sms.commands import Command, recognise_command

MENU_WORDS = {"BACK": "back", "EXIT": "exit"}


def test_the_protected_words_are_the_documented_ones():
    assert set(STOP_WORDS) == {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
    assert set(START_WORDS) == {"START", "YES", "UNSTOP"}
    assert set(HELP_WORDS) == {"HELP", "INFO"}
    assert PROTECTED_WORDS == set(STOP_WORDS) | set(START_WORDS) | set(HELP_WORDS)


@pytest.mark.parametrize(
    ("word", "command"),
    [(word, Command.STOP) for word in STOP_WORDS]
    + [(word, Command.START) for word in START_WORDS]
    + [(word, Command.HELP) for word in HELP_WORDS],
)
def test_every_protected_word(word, command):
    assert recognise_command(word) is command
    assert recognise_command(word.lower()) is command
    assert recognise_command(word.capitalize()) is command


@pytest.mark.parametrize("text", ["stop", "Stop", "sToP", "  STOP  ", "\tstop\n", "\u00a0stop "])
def test_case_and_surrounding_space_do_not_matter(text):
    assert recognise_command(text) is Command.STOP


@pytest.mark.parametrize(
    "text",
    ["stop please", "please stop", "STOP!", "stop.", "s top", "STOPP", "I want to unsubscribe", "helpful", "yes please", "end of story"],
)
def test_a_command_must_be_the_whole_message(text):
    assert recognise_command(text) is None


@pytest.mark.parametrize("text", ["", "   ", None, "\n"])
def test_empty_messages_are_no_command(text):
    assert recognise_command(text) is None


def test_configured_words():
    assert recognise_command("back", menu_words=MENU_WORDS) is Command.BACK
    assert recognise_command(" Exit ", menu_words=MENU_WORDS) is Command.EXIT
    assert recognise_command("MENU", menu_words={**MENU_WORDS, "MENU": "back"}) is Command.BACK
    assert recognise_command("go back", menu_words=MENU_WORDS) is None


def test_configured_words_need_configuring():
    assert recognise_command("BACK") is None
    assert recognise_command("EXIT", menu_words={}) is None


def test_a_configured_word_matches_whatever_case_it_was_stored_in():
    assert recognise_command("MENU", menu_words={"Menu": "back"}) is Command.BACK
    assert recognise_command("leave", menu_words={" leave ": "exit"}) is Command.EXIT


def test_protected_words_win_over_configuration():
    assert recognise_command("STOP", menu_words={"STOP": "exit"}) is Command.STOP
