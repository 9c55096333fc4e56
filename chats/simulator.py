"""The phone simulator (/simulator/): plays a consumer's phone against the local provider. A
text typed here is stored like one from Twilio's webhook (chats.intake.store_text) and handled
by the same batch worker; the portal's replies show with their delivery statuses."""
import secrets

from django.contrib.admin.views.decorators import staff_member_required
from django.db import DatabaseError
from django.db.models import Q
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from chats.intake import store_text
from sms.models import InboundMessage, OutboundMessage, PhoneNumber
from sms.numbers import parse_e164

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
    if parse_e164(consumer) is None:
        return JsonResponse({"error": "Enter the consumer number in E.164 form, e.g. +15555550123."}, status=400)
    if not PhoneNumber.objects.filter(number=portal).exists():
        return JsonResponse({"error": "Pick one of the portal's numbers."}, status=400)
    if not body.strip():
        return JsonResponse({"error": "Type a message."}, status=400)
    try:
        inbound = store_text(
            message_sid=f"SMsim{secrets.token_hex(14)}", from_number=consumer, to_number=portal, body=body[:1600], media=[]
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
        {"key": f"in-{m.pk}", "direction": "in", "body": m.body, "at": m.received_at.isoformat(), "status": "received"}
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
