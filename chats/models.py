"""The conversation: chats, participants, transcript, media, transfers, offers and events."""
from django.conf import settings
from django.db import models
from django.db.models import Q

from portal.models import AgentProfile, CrmRecord
from queues.models import Queue
from sms.models import InboundMessage, OutboundMessage, PhoneNumber


class ChatStatus(models.TextChoices):
    SELECTING = "selecting", "Selecting"
    QUEUED = "queued", "Queued"
    ASSIGNED = "assigned", "Assigned"
    DISMISSED = "dismissed", "Dismissed"
    FINISHED = "finished", "Finished"


ACTIVE_STATUSES = [ChatStatus.SELECTING, ChatStatus.QUEUED, ChatStatus.ASSIGNED, ChatStatus.DISMISSED]


class ChatType(models.TextChoices):
    SMS = "sms", "SMS"
    OUTBOUND_SMS = "outbound_sms", "Outbound SMS"
    API_SMS = "api_sms", "API SMS"
    WAIT_TIME_SMS = "wait_time_sms", "Wait-time SMS"
    IN_CALL_SMS = "in_call_sms", "In-call SMS"


# Chat.chat_subtype of a chat the Outbound SMS API started (SPEC A1).
API_INITIATED = "api_initiated"

# The S10 chat type as the public API and the event webhooks name it (`chat_subtype`); the
# public `chat_type` itself is the channel, always "SMS", as in seed 001's sample.
CHAT_SUBTYPES = {
    ChatType.SMS: "inbound",
    ChatType.OUTBOUND_SMS: "outbound",
    ChatType.API_SMS: API_INITIATED,
    ChatType.WAIT_TIME_SMS: "wait_time",
    ChatType.IN_CALL_SMS: "in_call",
}


# The SMS side of a call (SPEC B1, B2): never routed, never timed, never in the SMS adapter's list;
# the call's own lifecycle opens and ends them (chats/calls/).
BLENDED_CHAT_TYPES = (ChatType.WAIT_TIME_SMS, ChatType.IN_CALL_SMS)


class StartType(models.TextChoices):
    MANUAL = "manual_answer", "Manual Answer"
    AUTO = "auto_answer", "Auto Answer"
    OUTBOUND = "outbound", "Outbound"
    DEFLECTION = "deflection", "Deflection"


class FinishReason(models.TextChoices):
    AGENT_ENDED = "agent_ended", "Ended by the agent"
    END_USER_EXIT = "end_user_exit", "Consumer sent EXIT"
    END_USER_STOPPED = "end_user_stopped", "Consumer sent STOP"
    EXPIRED_SELECTING = "expired_selecting", "Expired while selecting a queue"
    EXPIRED_UNANSWERED = "expired_unanswered", "Expired unanswered in the queue"
    TIMEOUT_END_USER = "timeout_end_user_no_message", "Consumer did not answer"
    TIMEOUT_OUTBOUND = "timeout_outbound_inactive", "Outbound chat inactive"
    CALL_ENDED = "call_ended", "The call it belonged to ended"
    ERASED = "erased", "Ended to erase the consumer's data"
    FAILED = "failed", "Failed"


class DisconnectedBy(models.TextChoices):
    AGENT = "agent", "Agent"
    END_USER = "end_user", "Consumer"
    SYSTEM = "system", "System"


class ChatQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=ACTIVE_STATUSES)

    def active_between(self, consumer_number: str, portal_number: PhoneNumber):
        return self.active().filter(consumer_number=consumer_number, portal_number=portal_number)

    def held_by(self, agent: AgentProfile):
        return self.filter(status=ChatStatus.ASSIGNED, agent=agent)


class Chat(models.Model):
    consumer_number = models.CharField(max_length=20, db_index=True)
    portal_number = models.ForeignKey(PhoneNumber, on_delete=models.PROTECT, related_name="chats")
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="chats")
    menu_queue = models.ForeignKey(
        Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The menu the consumer is choosing in, while selecting.",
    )
    menu_path = models.JSONField(default=list, blank=True, help_text="Queue ids chosen, in order.")
    status = models.CharField(max_length=10, choices=ChatStatus.choices, default=ChatStatus.SELECTING, db_index=True)
    chat_type = models.CharField(max_length=16, choices=ChatType.choices, default=ChatType.SMS)
    chat_subtype = models.CharField(max_length=20, blank=True)
    start_type = models.CharField(max_length=16, choices=StartType.choices, blank=True)
    language = models.CharField(max_length=8, default="en")
    language_chosen = models.BooleanField(default=False)
    agent = models.ForeignKey(
        AgentProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="chats",
        help_text="The agent holding the chat now.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    queued_after_hours = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=32, choices=FinishReason.choices, blank=True)
    disconnected_by = models.CharField(max_length=10, choices=DisconnectedBy.choices, blank=True)
    last_consumer_message_at = models.DateTimeField(null=True, blank=True)
    last_agent_message_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True, db_index=True)
    deadline_kind = models.CharField(max_length=32, blank=True)
    crm_record = models.ForeignKey(
        CrmRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="chats"
    )
    crm_needs_choice = models.BooleanField(
        default=False, help_text="Several CRM contacts share the number: the agent picks one."
    )
    ticket_id = models.CharField(max_length=64, blank=True)
    position_update_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="When the next place-in-queue text is due (while queued)."
    )
    position_updates_sent = models.PositiveSmallIntegerField(default=0)
    content_erased_at = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="When the texts, media and transcript were erased (retention or the consumer's erasure); the chat stays for the reports.",
    )
    survey_sent_at = models.DateTimeField(null=True, blank=True, help_text="When the CSAT survey was texted.")
    rating = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The consumer's CSAT score, 1 to 5.")
    feedback = models.TextField(blank=True, help_text="What the consumer wrote after the score.")
    version = models.PositiveIntegerField(
        default=0, editable=False,
        help_text="Counts the chat's announced changes: a browser that hears two of them keeps the newer.",
    )

    objects = ChatQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One active conversation per consumer and portal number; a second inbound text that
            # races the first finds this row instead of creating another.
            models.UniqueConstraint(
                fields=["consumer_number", "portal_number"],
                condition=Q(status__in=["selecting", "queued", "assigned", "dismissed"]),
                name="chat_one_active_per_pair",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "deadline_at"], name="chat_deadline_lookup"),
            # A consumer's chats on a number, finished ones included (each inbound text looks its
            # chat up by the pair; SQLite would otherwise scan every chat the number ever had).
            models.Index(fields=["consumer_number", "portal_number"], name="chat_consumer_lookup"),
        ]

    def __str__(self):
        return f"Chat {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class ParticipantType(models.TextChoices):
    AGENT = "agent", "Agent"
    END_USER = "end_user", "Consumer"


class ParticipantStatus(models.TextChoices):
    CONNECTED = "connected", "Connected"
    TRANSFERRED = "transferred", "Transferred away"
    DISMISSED = "dismissed", "Dismissed"
    ENDED = "ended", "Ended"


class Participant(models.Model):
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="participants")
    type = models.CharField(max_length=10, choices=ParticipantType.choices)
    agent = models.ForeignKey(AgentProfile, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=12, choices=ParticipantStatus.choices, default=ParticipantStatus.CONNECTED)
    connected_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    fail_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["connected_at", "pk"]

    def __str__(self):
        who = str(self.agent) if self.agent_id else self.get_type_display()
        return f"{who} in chat {self.chat_id} ({self.get_status_display().lower()})"


class Author(models.TextChoices):
    CONSUMER = "consumer", "Consumer"
    AGENT = "agent", "Agent"
    SYSTEM = "system", "System"


class Message(models.Model):
    """One transcript entry. Consumer texts point at their InboundMessage, portal texts at their
    OutboundMessage (which carries the delivery status)."""

    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages")
    author = models.CharField(max_length=10, choices=Author.choices)
    agent = models.ForeignKey(AgentProfile, null=True, blank=True, on_delete=models.SET_NULL)
    body = models.TextField(blank=True)
    inbound = models.ForeignKey(InboundMessage, null=True, blank=True, on_delete=models.SET_NULL)
    outbound = models.ForeignKey(OutboundMessage, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["chat", "created_at"], name="message_chat_time")]

    def __str__(self):
        return f"{self.author}: {self.body[:40]}"


def media_path(instance, filename):
    return f"chats/{instance.message.chat_id}/{filename}"


class Media(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="media")
    file = models.FileField(upload_to=media_path, blank=True)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField(default=0)
    source_url = models.URLField(max_length=500, blank=True)
    error = models.CharField(max_length=200, blank=True, help_text="Why the file could not be stored.")

    class Meta:
        verbose_name_plural = "media"

    def __str__(self):
        return f"{self.content_type or 'file'} in chat {self.message.chat_id}"

    @property
    def kind(self) -> str:
        return self.content_type.split("/")[0] if self.content_type else "file"


class ChatEventKind(models.TextChoices):
    """What a chat's audit trail records (the event webhooks read it: chats.event_webhooks)."""

    CREATED = "created", "Created"
    OFFERED = "offered", "Offered"
    SELECTING = "status.selecting", "Status: selecting"
    QUEUED = "status.queued", "Status: queued"
    ASSIGNED = "status.assigned", "Status: assigned"
    DISMISSED = "status.dismissed", "Status: dismissed"
    FINISHED = "status.finished", "Status: finished"
    TRANSFER_BEGAN = "transfer.began", "Transfer began"
    TRANSFER_FAILED = "transfer.failed", "Transfer failed"
    TRANSFER_ENDED = "transfer.ended", "Transfer ended"
    IN_CALL_SMS_OPENED = "in_call_sms.opened", "In-call SMS opened"
    WAIT_TIME_SMS_REFUSED = "wait_time_sms.refused", "Wait-time SMS refused"
    APP_LINK_SENT = "app_link.sent", "App link sent"
    SURVEY_SENT = "survey.sent", "CSAT survey sent"
    SURVEY_ANSWERED = "survey.answered", "CSAT survey answered"
    SURVEY_FEEDBACK = "survey.feedback", "CSAT feedback"

    @classmethod
    def of_status(cls, status: str) -> "ChatEventKind":
        return cls(f"status.{status}")


class ChatEvent(models.Model):
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40, choices=ChatEventKind.choices)
    data = models.JSONField(default=dict, blank=True)
    by = models.CharField(max_length=40, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.at:%Y-%m-%d %H:%M:%S})" if self.at else self.get_kind_display()


class Transfer(models.Model):
    class Status(models.TextChoices):
        BEGAN = "began", "Began"
        FAILED = "failed", "Failed"
        ENDED = "ended", "Ended"

    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="transfers")
    from_agent = models.ForeignKey(AgentProfile, null=True, on_delete=models.SET_NULL, related_name="+")
    to_agent = models.ForeignKey(AgentProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    to_queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.BEGAN)
    reason = models.CharField(max_length=200, blank=True)
    began_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        target = self.to_agent or self.to_queue or "?"
        return f"Transfer of chat {self.chat_id} to {target} ({self.get_status_display().lower()})"


class Offer(models.Model):
    """A manual-answer chat offered to an agent; the first to accept wins."""

    class Status(models.TextChoices):
        OFFERED = "offered", "Offered"
        ACCEPTED = "accepted", "Accepted"
        WITHDRAWN = "withdrawn", "Withdrawn"

    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="offers")
    agent = models.ForeignKey(AgentProfile, on_delete=models.CASCADE, related_name="offers")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OFFERED)
    offered_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chat", "agent"], name="offer_once_per_agent")]

    def __str__(self):
        return f"Chat {self.chat_id} offered to {self.agent} ({self.get_status_display().lower()})"


# --- Calls: the IVR calls SMS is blended with (SPEC B1–B3) ---------------------------------------


class CallSource(models.TextChoices):
    TWILIO = "twilio", "Twilio Voice"
    IVR_API = "ivr_api", "IVR API"


class CallStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    ASSIGNED = "assigned", "Assigned"
    ENDED = "ended", "Ended"
    ABANDONED = "abandoned", "Abandoned"
    DEFLECTED = "deflected", "Deflected to SMS"


ACTIVE_CALL_STATUSES = [CallStatus.QUEUED, CallStatus.ASSIGNED]


class WaitTimeSmsStatus(models.TextChoices):
    NONE = "none", "Not answered yet"
    ALLOWED = "allowed", "Allowed"
    DENIED = "denied", "Denied"
    NO_RESPONSE = "no_response", "No response"


class CallQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=ACTIVE_CALL_STATUSES)


class Call(models.Model):
    """A caller waiting in (or connected from) an IVR queue. Its SMS side, when there is one, is
    `chat`: a chat of type Wait-time SMS or In-call SMS between the caller and `sms_number`."""

    call_sid = models.CharField(
        "call id", max_length=64, unique=True, help_text="Twilio's CallSid, or the IVR's own id for the call."
    )
    source = models.CharField(max_length=10, choices=CallSource.choices, default=CallSource.TWILIO)
    caller_number = models.CharField(max_length=20, db_index=True)
    dialed_number = models.CharField(max_length=20, blank=True)
    sms_number = models.ForeignKey(
        PhoneNumber, null=True, blank=True, on_delete=models.PROTECT, related_name="calls",
        help_text="The in-call SMS number the caller's texts go from and to.",
    )
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls")
    language = models.CharField(max_length=8, default="en")
    status = models.CharField(max_length=10, choices=CallStatus.choices, default=CallStatus.QUEUED, db_index=True)
    wait_time_sms_status = models.CharField(
        max_length=12, choices=WaitTimeSmsStatus.choices, default=WaitTimeSmsStatus.NONE
    )
    prompt_plays = models.PositiveIntegerField(default=0, help_text="Times the consent prompt was played.")
    last_prompt_at = models.DateTimeField(null=True, blank=True)
    consent_deadline_at = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="IVR API calls: no digit by then means no_response (the sweeper decides).",
    )
    agent = models.ForeignKey(AgentProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls")
    chat = models.ForeignKey(
        Chat, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls",
        help_text="The SMS side of the call.",
    )
    in_call_sms_open = models.BooleanField(default=False, help_text="The agent opened an in-call SMS session.")
    deflection_offered_at = models.DateTimeField(
        null=True, blank=True, help_text="When the caller was offered to continue by text (SPEC B4); offered once."
    )
    deflected_chat = models.ForeignKey(
        Chat, null=True, blank=True, on_delete=models.SET_NULL, related_name="deflected_calls",
        help_text="The SMS chat the caller continued in, having pressed 3.",
    )
    crm_record = models.ForeignKey(CrmRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls")
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = CallQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["queue", "status"], name="call_queue_status")]

    def __str__(self):
        return f"Call {self.call_sid} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_CALL_STATUSES


class Erasure(models.Model):
    """A consumer's erasure (SPEC R3): who asked it, when, and how much was removed. The
    do-not-contact entries and the consent ledger are kept (they are the proof)."""

    number = models.CharField(max_length=20, db_index=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    by_name = models.CharField("by", max_length=150, blank=True, help_text="A person, or the API credential's name.")
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)
    counts = models.JSONField(default=dict, help_text="What was erased, by kind.")

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = "consumer erasure"

    def __str__(self):
        return f"Erasure of {self.number} ({self.at:%Y-%m-%d %H:%M})" if self.at else f"Erasure of {self.number}"
