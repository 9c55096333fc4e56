"""Phone number formats: E.164 long codes and 5–6 digit short codes (SPEC C4)."""
import re

import phonenumbers
from django.core.exceptions import ValidationError

SHORT_CODE_RE = re.compile(r"^\d{5,6}$")
E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")


def is_short_code(value: str) -> bool:
    return bool(SHORT_CODE_RE.match(value or ""))


def parse_e164(value: str) -> phonenumbers.PhoneNumber | None:
    """The number when `value` is written in E.164 and is a possible number, else None."""
    if not E164_RE.match(value or ""):
        return None
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


def validate_portal_number(value: str) -> None:
    if is_short_code(value) or parse_e164(value) is not None:
        return
    raise ValidationError(
        "Enter the number in E.164 form, with + and the country code (e.g. +15551234567), "
        "or a 5–6 digit short code.",
        code="invalid_number",
    )


def is_us_number(value: str) -> bool:
    """+1 numbers and US short codes count as US."""
    if is_short_code(value):
        return True
    number = parse_e164(value)
    return number is not None and number.country_code == 1


def mask_number(value: str) -> str:
    """+15551234567 → +1••••••4567, for agents without the full-number permission."""
    if not value or len(value) <= 6:
        return value
    number = parse_e164(value)
    prefix = f"+{number.country_code}" if number else value[:2]
    hidden = len(value) - len(prefix) - 4
    return f"{prefix}{'•' * max(hidden, 1)}{value[-4:]}"
