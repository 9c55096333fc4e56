"""The phone simulator (/simulator/): plays a consumer's phone against the local provider. A
text typed here is stored like one from Twilio's webhook (chats.intake.store_text) and handled
by the same batch worker; the portal's replies show with their delivery statuses. A picture or
video attached is kept by the local provider under a media URL, as Twilio keeps an MMS's, and
fetched by the same task (SPEC S6)."""
import mimetypes
import secrets

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db import DatabaseError
from django.db.models import Q
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from chats.intake import store_text
from chats.tasks import MAX_MEDIA_BYTES, media_type_allowed
from sms.models import InboundMessage, OutboundMessage, PhoneNumber
from sms.numbers import parse_e164
from sms.providers.local import local_media_name, open_local_media, store_local_media

DEFAULT_CONSUMER = "+15555550123"
HISTORY_LIMIT = 200


@staff_member_required
@require_GET
def simulator_page(request):
    numbers = PhoneNumber.objects.order_by("number")
    return render(request, "simulator/index.html", {"numbers": numbers, "default_consumer": DEFAULT_CONSUMER})


@staff_member_required
@require_POST
def simulator_send(request):
    consumer = request.POST.get("consumer", "").strip()
    portal = request.POST.get("portal", "").strip()
    body = request.POST.get("body", "")
    upload = request.FILES.get("media")
    if parse_e164(consumer) is None:
        return JsonResponse({"error": "Enter the consumer number in E.164 form, e.g. +15555550123."}, status=400)
    if not PhoneNumber.objects.filter(number=portal).exists():
        return JsonResponse({"error": "Pick one of the portal's numbers."}, status=400)
    if not body.strip() and upload is None:
        return JsonResponse({"error": "Type a message or attach a picture."}, status=400)
    media = []
    if upload is not None:
        if settings.SMS_PROVIDER != "local":
            return JsonResponse({"error": "Pictures can be sent from the simulator with the local SMS provider only."}, status=400)
        content_type = upload.content_type or mimetypes.guess_type(upload.name)[0] or ""
        if not content_type.startswith(("image/", "video/")) or not media_type_allowed(content_type):
            return JsonResponse({"error": "Attach a picture or a video (JPEG, PNG, GIF, MP4 …)."}, status=400)
        if upload.size > MAX_MEDIA_BYTES:
            return JsonResponse({"error": "Attach at most 5 MB, as an MMS carries."}, status=400)
        media = [{"url": store_local_media(upload.read(), content_type), "content_type": content_type}]
    try:
        inbound = store_text(
            message_sid=f"SMsim{secrets.token_hex(14)}", from_number=consumer, to_number=portal, body=body[:1600], media=media
        )
    except DatabaseError:
        return JsonResponse({"error": "The text could not be stored; send it again."}, status=503)
    return JsonResponse({"id": inbound.pk if inbound else None, "state": inbound.state if inbound else "duplicate"})


@staff_member_required
@require_GET
def simulator_messages(request):
    consumer = request.GET.get("consumer", "").strip()
    portal = request.GET.get("portal", "").strip()
    inbound = InboundMessage.objects.filter(from_number=consumer, to_number=portal).order_by("-received_at")[:HISTORY_LIMIT]
    outbound = OutboundMessage.objects.filter(
        Q(to_number=consumer) & Q(from_number=portal)
    ).order_by("-created_at")[:HISTORY_LIMIT]
    items = [
        {
            "key": f"in-{m.pk}",
            "direction": "in",
            "body": m.body,
            "at": m.received_at.isoformat(),
            "status": "received",
            "media": [item for item in m.media if local_media_name(item.get("url", ""))],
        }
        for m in inbound
    ] + [
        {
            "key": f"out-{m.pk}",
            "direction": "out",
            "body": m.body,
            "at": m.created_at.isoformat(),
            "status": m.status,
            "error": m.error_message,
        }
        for m in outbound
    ]
    items.sort(key=lambda item: (item["at"], item["key"]))
    return JsonResponse({"messages": items[-HISTORY_LIMIT:]})


@staff_member_required
@require_GET
def simulator_media(request, name: str):
    """A picture or video the simulator sent, as Twilio serves an MMS's media URL."""
    handle = open_local_media(name)
    if handle is None:
        raise Http404
    response = FileResponse(handle, content_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
