"""The live monitor's pages (SPEC M1–M3): a view reads the figures from portal.monitoring.live
and renders them. The page's live part is one partial template: rendered in the page at first
paint and alone (`?fragment=1`) when the socket says something changed, so there is one way to
draw each table. GET /monitor/state answers the same figures as JSON."""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from chats.models import Chat
from chats.serializers import masks_numbers_for, number_as_shown
from chats.views import adapter_policy
from portal.models import Team
from portal.monitoring import live
from portal.monitoring import messages as tracking
from portal.reports.filters import ReportError
from portal import audit
from portal.roles import can_monitor
from queues.models import Queue
from sms.models import MessageStatus, PhoneNumber


def supervisors_only(view):
    """Signed in (else the sign-in page) and holding portal.view_monitoring (else 403, with a page
    that says so); the answer carries the adapter's Content-Security-Policy."""

    @login_required
    @ensure_csrf_cookie
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not can_monitor(request.user):
            return render(request, "monitor/forbidden.html", status=403)
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = adapter_policy(request)
        return response

    return wrapper


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _live(request, section: str, title: str, context: dict):
    """The page, or only its live part when the page's script asks for it after a change."""
    context = {**context, "section": section, "title": title, "partial": f"monitor/_{section}.html"}
    if request.GET.get("fragment"):
        return render(request, context["partial"], context)
    return render(request, "monitor/page.html", context)


@supervisors_only
def overview(request):
    state = live.monitor_state(masked=masks_numbers_for(request.user))
    return _live(request, "overview", "Monitor", {"state": state})


@supervisors_only
def queues_page(request):
    return _live(request, "queues", "Queues", {"queues": live.queues_now()})


@supervisors_only
def agents_page(request):
    team_id, queue_id = _int(request.GET.get("team")), _int(request.GET.get("queue"))
    return _live(
        request,
        "agents",
        "Agents",
        {
            "agents": live.agents_now(team_id=team_id, queue_id=queue_id),
            "teams": Team.objects.all(),
            "queue_names": sorted(Queue.objects.full_names().items(), key=lambda item: item[1]),
            "team_id": team_id,
            "queue_id": queue_id,
        },
    )


@supervisors_only
def chats_page(request):
    which = request.GET.get("list") if request.GET.get("list") in live.CHAT_LISTS else "ongoing"
    search = request.GET.get("q", "").strip()[:100]
    listing = live.chat_list(which, search=search, page=_int(request.GET.get("page")) or 1, masked=masks_numbers_for(request.user))
    return _live(request, "chats", "Chats", {"listing": listing, "search": search, "lists": live.CHAT_LISTS})


@supervisors_only
def chat_page(request, chat_id: int):
    """One chat's whole transcript, read-only and live: there is no box to write into it."""
    chat = Chat.objects.select_related("agent", "portal_number").filter(pk=chat_id).first()
    if chat is None:
        raise Http404("No chat with that id.")
    masked = masks_numbers_for(request.user)
    messages = chat.messages.select_related("agent", "outbound").prefetch_related("media")
    return _live(
        request,
        "chat",
        f"Chat {chat.pk}",
        {
            "chat": chat,
            "row": live.chat_row(live.annotated_chats().get(pk=chat.pk), Queue.objects.full_names(), masked=masked),
            "consumer_number": number_as_shown(chat.consumer_number, masked),
            "messages": messages,
        },
    )


@supervisors_only
def state(request):
    return JsonResponse(live.monitor_state(masked=masks_numbers_for(request.user)), encoder=DjangoJSONEncoder)


@supervisors_only
def messages_page(request):
    """M6: what happened to the texts the portal sent, for a range."""
    context = {
        "numbers": PhoneNumber.objects.order_by("number"),
        "queue_names": sorted(Queue.objects.full_names().items(), key=lambda item: item[1]),
        "statuses": MessageStatus.choices,
        "params": request.GET,
    }
    try:
        f = tracking.parse_message_filters(request.GET)
    except ReportError as error:
        response = _live(request, "messages", "Messages", {**context, "error": str(error)})
        response.status_code = 400
        return response
    context |= {
        "f": f,
        "query": f.query(),
        "counts": tracking.status_counts(f),
        "totals": tracking.problem_totals(f),
        "listing": tracking.message_list(f, page=_int(request.GET.get("page")) or 1, masked=masks_numbers_for(request.user)),
    }
    return _live(request, "messages", "Messages", context)


@supervisors_only
def audit_page(request):
    """R4: who changed which setting, queue, number, credential, webhook or agent, and how."""
    return _live(request, "audit", "Audit trail", audit.audit_page(request.GET))
