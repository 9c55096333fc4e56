"""The provider's status callback: POST /sms/twilio/status/ (SPEC S11 step 7). A callback that
overtakes the answer to the send (its sid not saved yet) is kept and applied when the sid is
saved (sms.statuses.apply_provider_status)."""
import logging

from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from sms.statuses import apply_provider_status
from sms.signatures import is_valid_twilio_request

log = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def twilio_status(request):
    if not is_valid_twilio_request(request):
        log.warning("status callback refused: bad signature sid=%s", request.POST.get("MessageSid", ""))
        return HttpResponseForbidden("Invalid Twilio signature.")
    sid = request.POST.get("MessageSid") or request.POST.get("SmsSid") or ""
    status = (request.POST.get("MessageStatus") or request.POST.get("SmsStatus") or "").lower()
    if sid and status:
        apply_provider_status(
            provider_sid=sid,
            status=status,
            error_code=request.POST.get("ErrorCode", ""),
            detail=request.POST.get("ErrorMessage", ""),
        )
    return HttpResponse(status=204)
