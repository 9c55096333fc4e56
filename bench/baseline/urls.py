"""POST /sms/twilio/inbound/: signature, INSERT (a duplicate MessageSid is a no-op), <Response/>.
GET /healthz: 200."""
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse, HttpResponseForbidden
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from twilio.request_validator import RequestValidator

from baseline.models import Text

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)


@csrf_exempt
def inbound(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    if not validator.validate(request.build_absolute_uri(), request.POST, request.headers.get("X-Twilio-Signature", "")):
        return HttpResponseForbidden("Invalid Twilio signature.")
    try:
        with transaction.atomic():
            Text.objects.create(
                message_sid=request.POST["MessageSid"],
                from_number=request.POST.get("From", ""),
                to_number=request.POST.get("To", ""),
                body=request.POST.get("Body", ""),
            )
    except IntegrityError:
        pass  # a retry of a stored MessageSid
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def healthz(request):
    return HttpResponse("ok")


urlpatterns = [path("sms/twilio/inbound/", inbound), path("healthz", healthz)]
