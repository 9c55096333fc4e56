"""SPEC S11 step 5: how many segments a body costs. GSM-7: 160 septets in one segment, 153 per
part of a longer one, characters of the extension table count twice; anything else is UCS-2:
70 UTF-16 units, 67 per part."""
import pytest

from sms.segments import GSM7_EXTENDED, MAX_BODY_CHARS, MAX_MEDIA_ITEMS, count_segments


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (159, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4), (1600, 11)],
)
def test_gsm7_160_then_153(length, segments):
    info = count_segments("a" * length)

    assert info.encoding == "GSM-7"
    assert info.units == length
    assert info.segments == segments


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_70_then_67(length, segments):
    info = count_segments("ж" * length)

    assert info.encoding == "UCS-2"
    assert info.units == length
    assert info.segments == segments


@pytest.mark.parametrize("char", sorted(GSM7_EXTENDED))
def test_extended_characters_count_twice(char):
    info = count_segments(char)

    assert info.encoding == "GSM-7"
    assert info.units == 2


def test_extended_characters_push_a_message_into_a_second_segment():
    assert count_segments("€" * 80).segments == 1  # 160 septets
    assert count_segments("€" * 80 + "a").segments == 2  # 161
    assert count_segments("a" * 158 + "[]").units == 162


def test_the_gsm7_basic_table_stays_gsm7():
    text = "Hello @ £5 ¥ è é ù ì ò Ç Ø ø Å å Δ _ Φ Γ Λ Ω Π Ψ Σ Θ Ξ Æ æ ß É ¡ ¿ Ä Ö Ñ Ü § ä ö ñ ü à\n\r"

    info = count_segments(text)

    assert info.encoding == "GSM-7"
    assert info.units == len(text)


def test_one_character_outside_gsm7_makes_the_whole_message_ucs2():
    info = count_segments("a" * 100 + "ç")  # lower-case ç is not in the GSM-7 table

    assert info.encoding == "UCS-2"
    assert info.segments == 2


def test_an_emoji_is_two_utf16_units():
    info = count_segments("🙂")

    assert info.encoding == "UCS-2"
    assert info.units == 2
    assert count_segments("🙂" * 35).segments == 1  # 70 units
    assert count_segments("🙂" * 36).segments == 2  # 72 units


def test_empty_body_costs_one_segment():
    # A media-only message still costs one message.
    for body in ("", None):
        info = count_segments(body)
        assert (info.encoding, info.units, info.segments) == ("GSM-7", 0, 1)


def test_twilio_limits():
    assert MAX_BODY_CHARS == 1600
    assert MAX_MEDIA_ITEMS == 10
