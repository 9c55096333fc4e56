"""The SMS command words that no admin can change (SPEC C2), shared by every layer."""

STOP_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
START_WORDS = ("START", "YES", "UNSTOP")
HELP_WORDS = ("HELP", "INFO")
PROTECTED_WORDS = frozenset(STOP_WORDS + START_WORDS + HELP_WORDS)


def normalise_word(text: str) -> str:
    """Command words match whole messages, case-insensitively, ignoring surrounding spaces."""
    return " ".join((text or "").split()).upper()


def split_keywords(raw: str) -> list[str]:
    """Comma-separated admin input → normalised, de-duplicated words in their order."""
    words: list[str] = []
    for part in (raw or "").split(","):
        word = normalise_word(part)
        if word and word not in words:
            words.append(word)
    return words
