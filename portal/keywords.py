"""The SMS command words that no admin can change (SPEC C2), shared by every layer."""
import functools
import re

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


DEFAULT_OPT_OUT_PHRASES = "\n".join(
    [
        "stop texting me",
        "please stop texting me",
        "unsubscribe me",
        "remove me from this list",
        "remove me from your list",
        "do not text me",
        "dont text me",
    ]
)


# What a phrase comparison drops: anything but letters, digits and spaces (\w is str.isalnum()'s
# characters and the underscore).
_NOT_KEPT = re.compile(r"[^\w\s]|_")


def normalise_phrase(text: str) -> str:
    """A message as opt-out phrases are compared (FCC 2025, "any reasonable means"): lower case,
    punctuation dropped ("Don't text me!" → "dont text me"), spaces collapsed."""
    return " ".join(_NOT_KEPT.sub("", (text or "").lower()).split())


def phrase_list(raw: str) -> list[str]:
    """The configured phrases, one per line, normalised, without duplicates or blanks."""
    phrases: list[str] = []
    for line in (raw or "").splitlines():
        phrase = normalise_phrase(line)
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    return phrases


@functools.lru_cache(maxsize=8)
def _phrase_set(raw: str) -> frozenset[str]:
    return frozenset(phrase_list(raw))  # normalised once per setting, not once per inbound text


def is_opt_out_phrase(text: str, raw_phrases: str) -> bool:
    """The whole message is one of the configured opt-out phrases."""
    message = normalise_phrase(text)
    return bool(message) and message in _phrase_set(raw_phrases or "")
