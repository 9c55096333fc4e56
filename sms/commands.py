"""Recognising an SMS command word (SPEC C2). What a command does is the chats layer's business."""
from enum import Enum

from portal.keywords import HELP_WORDS, START_WORDS, STOP_WORDS, normalise_word


class Command(str, Enum):
    STOP = "stop"
    START = "start"
    HELP = "help"
    BACK = "back"
    EXIT = "exit"
    WHERE = "where"


def recognise_command(text: str, *, menu_words: dict[str, str] | None = None) -> Command | None:
    """The command a whole message is, or None. `menu_words` maps configured words (BACK, EXIT,
    WHERE, …) to "back", "exit" or "where"."""
    word = normalise_word(text)
    if not word:
        return None
    if word in STOP_WORDS:
        return Command.STOP
    if word in START_WORDS:
        return Command.START
    if word in HELP_WORDS:
        return Command.HELP
    # Configured words are matched the way protected ones are, whatever case they were stored in.
    configured = {normalise_word(key): action for key, action in (menu_words or {}).items()}
    action = configured.get(word)
    return Command(action) if action else None
