"""How many SMS segments a body costs: GSM-7 160/153, otherwise UCS-2 70/67 (SPEC S11 step 5).
static/js/agent/segments.js applies the same rules in the browser."""
from dataclasses import dataclass

MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies
MAX_MEDIA_ITEMS = 10

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7 (extended characters count twice), UTF-16 units for UCS-2
    segments: int


def count_segments(body: str) -> SegmentInfo:
    body = body or ""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in body):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in body)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units == 0:
        segments = 1 if body == "" else 0
    elif units <= single:
        segments = 1
    else:
        segments = -(-units // multi)
    return SegmentInfo(encoding=encoding, units=units, segments=max(segments, 1))
