"""The agent adapter's REST actions under /apps/api/v1/agent/ (session auth + CSRF). Each view
parses, calls the chats.services function (where every permission is checked), and answers;
refusals are 4xx with {"error": "<sentence>"}."""
from __future__ import annotations

from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from rest_framework import permissions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import assignment, crm_records, services
from chats.models import Author, Chat, ChatStatus, Media, Message, Offer
from chats.serializers import AgentChatSerializer, AgentSerializer, MessageSerializer, consumer_number_for
from chats.stats import agent_stats
from chats.errors import ChatActionError
from portal import crm
from portal.models import AgentProfile, AgentStatus, ChatSettings, ChatShortcut, CrmContact
from queues.models import Queue
from queues.routing import eligible_agents
from sms import consent as ledger
from sms.models import NumberRole, PhoneNumber


class IsAgent(permissions.BasePermission):
    message = "Only agents can use the adapter."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and AgentProfile.objects.filter(user=user).exists())


class AgentView(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [permissions.IsAuthenticated, IsAgent]

    @property
    def agent(self) -> AgentProfile:
        if not hasattr(self, "_agent"):
            self._agent = AgentProfile.objects.get(user=self.request.user)
        return self._agent

    def context(self):
        return {"request": self.request, "mask": ChatSettings.load().mask_consumer_numbers}

    def handle_exception(self, exc):
        if isinstance(exc, ChatActionError):
            conflicts = {"taken", "active_chat", "finished", "over_capacity"}  # the state, not the request
            code = status.HTTP_409_CONFLICT if exc.code in conflicts else status.HTTP_400_BAD_REQUEST
            if exc.code in {"not_held", "not_offered"}:
                code = status.HTTP_403_FORBIDDEN
            return Response({"error": exc.message, "code": exc.code}, status=code)
        if isinstance(exc, serializers.ValidationError):
            detail = exc.detail
            if isinstance(detail, dict):
                field, errors = next(iter(detail.items()))
                message = f"{field}: {errors[0] if isinstance(errors, list) else errors}"
            else:
                message = str(detail[0] if isinstance(detail, list) else detail)
            return Response({"error": message}, status=status.HTTP_400_BAD_REQUEST)
        response = super().handle_exception(exc)
        if response is not None and isinstance(response.data, dict) and "detail" in response.data:
            response.data = {"error": str(response.data["detail"])}
        return response

    def chat_for_agent(self, chat_id: int, *, any_offer: bool = False) -> Chat:
        """A chat the agent holds (or held until it ended) or is offered now; anything else is
        404, so ids reveal nothing. A withdrawn offer gives no access to the chat another agent
        took; only accepting it (`any_offer`) finds it, to answer "already taken"."""
        offered = Q(offers__agent=self.agent)
        if not any_offer:
            offered &= Q(offers__status=Offer.Status.OFFERED)
        chat = (
            Chat.objects.select_related("portal_number", "queue")
            .filter(Q(agent=self.agent) | offered)
            .filter(pk=chat_id)
            .distinct()
            .first()
        )
        if chat is None:
            raise Http404("No such chat.")
        return chat


def agent_chats(agent: AgentProfile):
    return (
        Chat.objects.filter(agent=agent, status=ChatStatus.ASSIGNED)
        .select_related("portal_number", "queue")
        .annotate(
            unread=Count("messages", filter=Q(messages__author=Author.CONSUMER, messages__read_at__isnull=True)),
            # What `unread` counted up to: the page adds the texts its websocket brought after it.
            last_message_id=Max("messages__id"),
            last_message=Subquery(
                Message.objects.filter(chat=OuterRef("pk")).order_by("-created_at", "-pk").values("body")[:1]
            ),
        )
        .order_by("assigned_at")
    )


class StateView(AgentView):
    """Everything the page needs after (re)connecting."""

    def get(self, request):
        agent = self.agent
        offers = (
            Chat.objects.filter(offers__agent=agent, offers__status=Offer.Status.OFFERED, status=ChatStatus.QUEUED)
            .select_related("portal_number", "queue")
            .distinct()
        )
        queue_ids = assignment.agent_queue_ids(agent)
        context = self.context()
        return Response(
            {
                "agent": AgentSerializer(agent).data,
                "chats": AgentChatSerializer(agent_chats(agent), many=True, context=context).data,
                "offers": AgentChatSerializer(offers, many=True, context=context).data,
                "queues": _queues_waiting(queue_ids),
                "outbound_numbers": [
                    {"id": n.pk, "number": n.number, "label": n.label}
                    for n in PhoneNumber.objects.filter(
                        queue_links__role=NumberRole.OUTBOUND, queue_links__queue__in=queue_ids
                    ).distinct()
                ],
                "shortcuts": [
                    {"keyword": s.keyword, "text": s.text, "category": s.category, "language": s.language, "is_opt_in": s.is_opt_in}
                    for s in ChatShortcut.objects.all()
                ],
                "stats": agent_stats(agent),
            }
        )


def _queues_waiting(queue_ids: list[int]) -> list[dict]:
    """The agent's queues with what waits in each: the count, and each waiting chat as [id,
    version] so the page can merge the answer with the queue.chat events it hears meanwhile."""
    waiting: dict[int, list[list[int]]] = {}
    for chat_id, queue_id, version in Chat.objects.filter(queue_id__in=queue_ids, status=ChatStatus.QUEUED).values_list(
        "pk", "queue_id", "version"
    ):
        waiting.setdefault(queue_id, []).append([chat_id, version])
    return [
        {"id": q.pk, "name": str(q), "waiting": len(waiting.get(q.pk, [])), "waiting_chats": waiting.get(q.pk, [])}
        for q in Queue.objects.filter(pk__in=queue_ids)
    ]


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=AgentStatus.values)


class StatusView(AgentView):
    def post(self, request):
        data = StatusSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment.change_agent_status(agent=self.agent, status=data.validated_data["status"])
        self.agent.refresh_from_db()
        return Response(AgentSerializer(self.agent).data)


class AcceptView(AgentView):
    def post(self, request, chat_id):
        chat = self.chat_for_agent(chat_id, any_offer=True)
        chat = assignment.accept_offer(agent=self.agent, chat=chat)
        return Response(AgentChatSerializer(chat, context=self.context()).data)


class MessageBodySerializer(serializers.Serializer):
    body = serializers.CharField(required=False, allow_blank=True, max_length=1600, trim_whitespace=False)
    shortcut = serializers.CharField(required=False, allow_blank=True)


class MessagesView(AgentView):
    def get(self, request, chat_id):
        chat = self.chat_for_agent(chat_id)
        messages = (
            Message.objects.filter(chat=chat).select_related("outbound", "agent").prefetch_related("media").order_by("created_at", "pk")
        )
        return Response({"messages": MessageSerializer(messages, many=True).data})

    def post(self, request, chat_id):
        chat = self.chat_for_agent(chat_id)
        data = MessageBodySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data.get("body", "")
        keyword = (data.validated_data.get("shortcut") or "").strip().lstrip("/")
        if keyword:
            shortcut = ChatShortcut.objects.filter(keyword=keyword).first()
            if shortcut is None:
                raise ChatActionError(f"There is no shortcut /{keyword}.", code="invalid")
            body = shortcut.text
        message = services.send_agent_message(agent=self.agent, chat=chat, body=body)
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class TransferSerializer(serializers.Serializer):
    agent_id = serializers.IntegerField(required=False)
    queue_id = serializers.IntegerField(required=False)


class TransferView(AgentView):
    def post(self, request, chat_id):
        chat = self.chat_for_agent(chat_id)
        data = TransferSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        to_agent = to_queue = None
        if "agent_id" in data.validated_data:
            to_agent = AgentProfile.objects.filter(pk=data.validated_data["agent_id"]).first()
            if to_agent is None:
                raise ChatActionError("That agent does not exist.", code="invalid")
        if "queue_id" in data.validated_data:
            to_queue = Queue.objects.filter(pk=data.validated_data["queue_id"]).first()
            if to_queue is None:
                raise ChatActionError("That queue does not exist.", code="invalid")
        transfer = services.transfer_chat(agent=self.agent, chat=chat, to_agent=to_agent, to_queue=to_queue)
        if transfer.status == "failed":
            return Response({"error": f"Transfer failed: {transfer.reason}", "code": "transfer_failed"}, status=status.HTTP_409_CONFLICT)
        return Response({"transfer_id": transfer.pk, "status": transfer.status})


class EndView(AgentView):
    def post(self, request, chat_id):
        chat = self.chat_for_agent(chat_id)
        chat = services.end_chat(chat=chat, by="agent", reason="agent_ended", agent=self.agent)
        return Response(AgentChatSerializer(chat, context=self.context()).data)


class DoNotContactView(AgentView):
    """The consumer asked in words not to be texted (SPEC R2): list, ledger, confirmation, end."""

    def post(self, request, chat_id):
        chat = self.chat_for_agent(chat_id)
        chat = services.mark_do_not_contact(agent=self.agent, chat=chat)
        return Response(AgentChatSerializer(chat, context=self.context()).data)


class ReadView(AgentView):
    def post(self, request, chat_id):
        chat = self.chat_for_agent(chat_id)
        return Response({"marked": services.mark_read(agent=self.agent, chat=chat)})


class ContactSerializer(serializers.Serializer):
    contact_id = serializers.IntegerField(required=False)
    new_name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    # Where the contact is, for quiet hours (SPEC R1): set on the contact already chosen.
    time_zone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    state = serializers.CharField(required=False, allow_blank=True, max_length=2)


class ContactView(AgentView):
    def get(self, request, chat_id):
        chat = self.chat_for_agent(chat_id)
        record = chat.crm_record
        matches = crm.contacts_for_number(chat.consumer_number)
        context = self.context()

        def shown(contact) -> dict:
            # Not str(contact): it falls back to the full phone number, which agents see masked (C1).
            number = consumer_number_for(request.user, contact.phone_number, context["mask"])
            return {
                "id": contact.pk, "name": contact.name, "label": contact.name or number, "email": contact.email,
                "time_zone": contact.time_zone, "state": contact.state,
            }
        earlier = (
            Chat.objects.filter(consumer_number=chat.consumer_number, status=ChatStatus.FINISHED)
            .exclude(pk=chat.pk)
            .order_by("-created_at")[:10]
        )
        return Response(
            {
                "contact": shown(record.contact) if record and record.contact else None,
                "needs_choice": chat.crm_needs_choice,
                "matches": [shown(c) for c in matches],
                "earlier_chats": [
                    {"id": c.pk, "created_at": c.created_at, "finish_reason": c.finish_reason, "queue": c.queue.name if c.queue else ""}
                    for c in earlier.select_related("queue")
                ],
                # The number's consent ledger (SPEC R2), newest first; the number itself is the chat's.
                "consent": [
                    {
                        "at": e.at, "kind": e.kind, "kind_label": e.get_kind_display(), "source": e.source,
                        "source_label": e.get_source_display(), "portal_number": e.portal_number, "by": e.by_name,
                    }
                    for e in ledger.history(chat.consumer_number, limit=10)
                ],
            }
        )

    def post(self, request, chat_id):
        chat = self.chat_for_agent(chat_id)
        if chat.agent_id != self.agent.pk:
            raise ChatActionError("You are not connected to this chat.", code="not_held")
        data = ContactSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        place = {key: data.validated_data[key] for key in ("time_zone", "state") if key in data.validated_data}
        if place:
            record = chat.crm_record
            if record is None or record.contact is None:
                raise ChatActionError("Choose the contact first.", code="invalid")
            try:
                crm.set_contact_place(record.contact, **place)
            except ValueError as exc:
                raise ChatActionError(str(exc), code="invalid") from None
            return self.get(request, chat_id)
        contact = None
        if data.validated_data.get("contact_id"):
            contact = CrmContact.objects.filter(pk=data.validated_data["contact_id"], phone_number=chat.consumer_number).first()
            if contact is None:
                raise ChatActionError("That contact does not have this consumer's number.", code="invalid")
        new_name = data.validated_data.get("new_name", "").strip()
        if contact is None and not new_name:
            raise ChatActionError("Enter the new contact's name.", code="invalid")
        crm_records.choose_chat_contact(chat=chat, contact=contact, new_name=new_name)
        return self.get(request, chat_id)


class OutboundSerializer(serializers.Serializer):
    consumer_number = serializers.CharField(max_length=20)
    portal_number_id = serializers.IntegerField()
    body = serializers.CharField(required=False, allow_blank=True, max_length=1600)


class OutboundView(AgentView):
    def post(self, request):
        data = OutboundSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        number = PhoneNumber.objects.filter(pk=data.validated_data["portal_number_id"]).first()
        if number is None:
            raise ChatActionError("Pick one of your queues' outbound numbers.", code="invalid_number")
        chat = services.start_outbound_chat(
            agent=self.agent,
            consumer_number=data.validated_data["consumer_number"].strip(),
            portal_number=number,
            body=data.validated_data.get("body", ""),
        )
        return Response(AgentChatSerializer(chat, context=self.context()).data, status=status.HTTP_201_CREATED)


class StatsView(AgentView):
    def get(self, request):
        return Response(agent_stats(self.agent))


class TransferTargetsView(AgentView):
    def get(self, request):
        agents = eligible_agents().exclude(pk=self.agent.pk)
        queues = Queue.objects.filter(sms_enabled=True, children__isnull=True)
        return Response(
            {
                "agents": [{"id": a.pk, "name": str(a)} for a in agents],
                "queues": [{"id": q.pk, "name": str(q)} for q in queues],
            }
        )


def media_file(request, media_id: int):
    """A consumer's media, to the agent holding the chat: its stored type, never inline script."""
    if not request.user.is_authenticated:
        raise Http404
    agent = AgentProfile.objects.filter(user=request.user).first()
    media = get_object_or_404(Media.objects.select_related("message__chat"), pk=media_id)
    chat = media.message.chat
    allowed = request.user.is_staff or (agent is not None and chat.agent_id == agent.pk)
    if not allowed and agent is not None:
        # The SMS side of a call belongs to the call's agent (SPEC B1, B2).
        allowed = chat.calls.filter(agent=agent).exists()
    if not allowed or not media.file:
        raise Http404
    response = FileResponse(media.file.open("rb"), content_type=media.content_type)
    response["Content-Disposition"] = f'inline; filename="media-{media.pk}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
