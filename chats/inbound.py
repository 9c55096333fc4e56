"""Where conversations start: the Twilio inbound SMS webhook (SPEC S1). It checks the signature,
stores the text and answers; the conversation runs behind it (chats.intake). 200 only once the
text is committed."""
import logging

from django.db import DatabaseError
from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from chats.intake import store_text
from sms.models import InboundMessage
from sms.signatures import is_valid_twilio_request

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def twilio_media(params) -> list[dict]:
    """Every MediaUrlN with its MediaContentTypeN (Rocket.Chat kept only the first, #36491)."""
    try:
        count = int(params.get("NumMedia") or 0)
    except ValueError:
        count = 0
    items = []
    for index in range(max(count, 0)):
        url = params.get(f"MediaUrl{index}")
        if url:
            items.append({"url": url, "content_type": params.get(f"MediaContentType{index}", "")})
    return items


# The longest value the inbound log keeps of each field (sms.models.InboundMessage).
FIELD_LIMITS = {
    "MessageSid": InboundMessage._meta.get_field("message_sid").max_length,
    "From": InboundMessage._meta.get_field("from_number").max_length,
    "To": InboundMessage._meta.get_field("to_number").max_length,
}


def _malformed(**values: str) -> str:
    """The first field too long to store or holding a NUL (PostgreSQL refuses it), else ""."""
    for name, value in values.items():
        if len(value) > FIELD_LIMITS[name] or "\x00" in value:
            return name
    return ""


@csrf_exempt
@require_POST
def twilio_inbound(request):
    sid = request.POST.get("MessageSid") or request.POST.get("SmsSid") or ""
    if not is_valid_twilio_request(request):
        log.warning("inbound refused: bad signature sid=%s", sid)
        return HttpResponseForbidden("Invalid Twilio signature.")
    from_number = request.POST.get("From", "").strip()
    to_number = request.POST.get("To", "").strip()
    if not sid or not from_number or not to_number:
        return HttpResponse("MessageSid, From and To are required.", status=400)
    malformed = _malformed(MessageSid=sid, From=from_number, To=to_number)
    if malformed:
        # Refused for good (a retry would fail the same way), not 503: nothing is stored.
        log.warning("inbound refused: %s is malformed sid=%r", malformed, sid[:64])
        return HttpResponse(f"{malformed} is malformed.", status=400)
    try:
        store_text(
            message_sid=sid,
            from_number=from_number,
            to_number=to_number,
            body=request.POST.get("Body", ""),
            media=twilio_media(request.POST),
        )
    except DatabaseError:
        # Not stored, so not acknowledged: Twilio keeps the text (and retries where set up to).
        log.exception("inbound %s from=%s to=%s not stored: answered 503", sid, from_number, to_number)
        return HttpResponse("Not stored; try again.", status=503, headers={"Retry-After": "5"})
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
