"""The transport layer's data: the portal's numbers and their queue assignments (SPEC C4, C11)."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from portal.regions import US_STATE_CHOICES
from portal.singletons import SingletonModel
from queues.models import Queue
from sms.numbers import validate_portal_number


class NumberUsage(models.TextChoices):
    SMS_CHAT = "sms_chat", "SMS chat"
    IN_CALL = "in_call", "In-call SMS"


class NumberDirection(models.TextChoices):
    INCOMING = "incoming", "Incoming and outbound"
    OUTBOUND_ONLY = "outbound_only", "Outbound only"


class Verification(models.TextChoices):
    UNVERIFIED = "unverified", "Unverified"
    VERIFIED = "verified", "Verified for SMS"


class PhoneNumberQuerySet(models.QuerySet):
    def verified(self):
        return self.filter(verification=Verification.VERIFIED)


class PhoneNumber(models.Model):
    """A number the portal texts from and receives on."""

    number = models.CharField(
        max_length=16,
        unique=True,
        validators=[validate_portal_number],
        help_text="E.164 with country code (+15551234567) or a 5–6 digit short code.",
    )
    label = models.CharField(max_length=80, blank=True, help_text="Helps you recognise the number.")
    usage = models.CharField(
        max_length=10,
        choices=NumberUsage.choices,
        default=NumberUsage.SMS_CHAT,
        help_text="A number used for in-call SMS can never be an SMS chat number.",
    )
    direction = models.CharField(
        max_length=16,
        choices=NumberDirection.choices,
        default=NumberDirection.INCOMING,
        help_text="Texts to an outbound-only number are never routed to a queue; the sender "
        "gets the do-not-reply message.",
    )
    is_global_outbound = models.BooleanField(
        "global outbound number",
        default=False,
        help_text="The number used for outbound SMS when no queue number is chosen. One at most.",
    )
    verification = models.CharField(
        max_length=12,
        choices=Verification.choices,
        default=Verification.UNVERIFIED,
        editable=False,
        help_text="Set by the Verify action, which asks the provider whether the account owns "
        "this number with SMS capability.",
    )
    verified_at = models.DateTimeField(null=True, blank=True, editable=False)
    verification_note = models.CharField(max_length=300, blank=True, editable=False)
    messages_per_second = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Sending limit: Twilio allows 1/s on a US long code, more on short codes and toll-free.",
    )
    messages_per_day = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Empty: no daily limit."
    )
    messaging_service_sid = models.CharField(
        "Messaging Service SID",
        max_length=34,
        blank=True,
        help_text="Optional (MG…): send through this Twilio Messaging Service's pool.",
    )

    objects = PhoneNumberQuerySet.as_manager()

    class Meta:
        ordering = ["number"]
        verbose_name = "phone number"
        constraints = [
            models.UniqueConstraint(
                fields=["is_global_outbound"],
                condition=Q(is_global_outbound=True),
                name="phone_number_one_global_outbound",
                violation_error_message="Another number is already the global outbound number.",
            ),
        ]

    def __str__(self):
        return f"{self.number} ({self.label})" if self.label else self.number

    @property
    def is_verified(self) -> bool:
        return self.verification == Verification.VERIFIED

    def clean(self):
        errors = {}
        self.messaging_service_sid = self.messaging_service_sid.strip()
        if self.messaging_service_sid and not (
            self.messaging_service_sid.startswith("MG") and len(self.messaging_service_sid) == 34
        ):
            errors["messaging_service_sid"] = "A Messaging Service SID starts with MG and has 34 characters."
        if self.is_global_outbound:
            others = PhoneNumber.objects.filter(is_global_outbound=True).exclude(pk=self.pk)
            other = others.first()
            if other is not None:
                errors["is_global_outbound"] = (
                    f"{other.number} is already the global outbound number; untick it there first."
                )
        if self.pk and self.usage == NumberUsage.IN_CALL and self.queue_links.exists():
            errors["usage"] = (
                "This number is assigned to SMS chat queues; remove it from them before using it "
                "for in-call SMS."
            )
        if self.pk and self.direction == NumberDirection.OUTBOUND_ONLY:
            incoming = self.queue_links.filter(role=NumberRole.INCOMING).first()
            if incoming is not None:
                errors["direction"] = (
                    f"This number is the incoming number of queue {incoming.queue}; it cannot be outbound only."
                )
        if errors:
            raise ValidationError(errors)


class NumberRole(models.TextChoices):
    INCOMING = "incoming", "Incoming: consumers text this number to reach the queue"
    OUTBOUND = "outbound", "Outbound: agents and the API text from this number"


class QueueNumber(models.Model):
    """A number's role in a queue. An incoming number belongs to one queue at most; outbound
    numbers may be shared."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="number_links")
    number = models.ForeignKey(PhoneNumber, on_delete=models.PROTECT, related_name="queue_links")
    role = models.CharField(max_length=10, choices=NumberRole.choices)

    class Meta:
        verbose_name = "queue number"
        constraints = [
            models.UniqueConstraint(fields=["queue", "number", "role"], name="queue_number_unique_role"),
            models.UniqueConstraint(
                fields=["number"],
                condition=Q(role="incoming"),
                name="incoming_number_one_queue",
                violation_error_message="This number is already the incoming number of another queue.",
            ),
        ]

    def __str__(self):
        return f"{self.number.number} → {self.queue} ({self.role})"

    def clean(self):
        number = self.number if self.number_id else None
        if number is None:
            return
        if not number.is_verified:
            raise ValidationError(
                {"number": f"{number.number} is not verified yet. Run the Verify action on it first."}
            )
        if number.usage == NumberUsage.IN_CALL:
            raise ValidationError(
                {"number": f"{number.number} is an in-call SMS number and cannot be used for SMS chat."}
            )
        if self.role == NumberRole.INCOMING:
            if number.direction == NumberDirection.OUTBOUND_ONLY:
                raise ValidationError(
                    {"role": f"{number.number} is outbound only and cannot be an incoming number."}
                )
            other = (
                QueueNumber.objects.filter(number=number, role=NumberRole.INCOMING)
                .exclude(pk=self.pk)
                .exclude(queue_id=self.queue_id)
                .select_related("queue")
                .first()
            )
            if other is not None:
                raise ValidationError(
                    {"number": f"{number.number} is already the incoming number of queue {other.queue}."}
                )


class ProviderConnection(SingletonModel):
    """The result of the last connectivity check with the SMS provider (SPEC C11). The
    credentials themselves come from the environment and are never stored here."""

    checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    ok = models.BooleanField(null=True, editable=False)
    message = models.TextField(blank=True, editable=False)
    numbers_found = models.JSONField(default=list, blank=True, editable=False)

    class Meta:
        verbose_name = "Twilio connection"
        verbose_name_plural = "Twilio connection"

    def __str__(self):
        return "Twilio connection"


class RuleDays(models.TextChoices):
    EVERY_DAY = "all", "Every day"
    MON_FRI = "mon_fri", "Monday to Friday"
    SAT_SUN = "sat_sun", "Saturday and Sunday"
    MON_SAT = "mon_sat", "Monday to Saturday"
    SUNDAY = "sun", "Sunday"


# Weekday numbers (Monday 0) of each RuleDays value.
RULE_WEEKDAYS = {
    RuleDays.EVERY_DAY: frozenset(range(7)),
    RuleDays.MON_FRI: frozenset(range(5)),
    RuleDays.SAT_SUN: frozenset({5, 6}),
    RuleDays.MON_SAT: frozenset(range(6)),
    RuleDays.SUNDAY: frozenset({6}),
}


class QuietHoursRule(models.Model):
    """A US state's own window for proactive texts (SPEC R1): stricter than the federal
    08:00–21:00 in several states. Seeded as SPEC R1 lists; the admin keeps it up to date."""

    state = models.CharField(max_length=2, choices=US_STATE_CHOICES)
    days = models.CharField(max_length=8, choices=RuleDays.choices, default=RuleDays.EVERY_DAY)
    start = models.TimeField(help_text="Texts may go out from this local time…")
    end = models.TimeField(help_text="…until this one.")
    note = models.CharField(max_length=200, blank=True, help_text="Where the rule comes from.")

    class Meta:
        ordering = ["state", "days"]
        verbose_name = "quiet-hours state rule"
        constraints = [models.UniqueConstraint(fields=["state", "days"], name="quiet_hours_rule_once_per_days")]

    def __str__(self):
        return f"{self.state} {self.get_days_display()} {self.start:%H:%M}–{self.end:%H:%M}"

    def clean(self):
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValidationError({"end": "The window must end after it starts (both in the recipient's local time)."})


class ConsentSource(models.TextChoices):
    """Who or what changed a consumer's consent (SPEC R2)."""

    STOP = "stop", "Consumer's keyword"
    PROVIDER = "provider", "Provider (Twilio 21610)"
    ADMIN = "admin", "Admin"
    AGENT = "agent", "Agent"
    API = "api", "API"
    IVR = "ivr", "Caller's keypad"


class ConsentKind(models.TextChoices):
    OPT_OUT = "opt_out", "Opt-out"
    OPT_IN = "opt_in", "Opt-in"
    WAIT_SMS_ALLOWED = "wait_sms_allowed", "Wait-time SMS allowed"
    WAIT_SMS_DENIED = "wait_sms_denied", "Wait-time SMS denied"


class DoNotContact(models.Model):
    """A consumer who texted STOP (or whom the provider reported unsubscribed, Twilio 21610) to
    one of the portal's numbers. Nothing is sent from that number until they text START or an
    admin clears the entry with a reason. Its history is in `ConsentEvent`."""

    consumer_number = models.CharField(max_length=20)
    portal_number = models.CharField(max_length=16)
    source = models.CharField(max_length=20, choices=ConsentSource.choices, default=ConsentSource.STOP)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "do-not-contact entry"
        verbose_name_plural = "do-not-contact list"
        constraints = [
            models.UniqueConstraint(fields=["consumer_number", "portal_number"], name="do_not_contact_unique")
        ]

    def __str__(self):
        return f"{self.consumer_number} ✕ {self.portal_number}"


class ConsentEvent(models.Model):
    """The consent ledger (SPEC R2): every opt-out and opt-in, never changed or deleted, so the
    portal can show who asked not to be texted, how and when — and who cleared it and why."""

    consumer_number = models.CharField(max_length=20, db_index=True)
    portal_number = models.CharField(max_length=16)
    kind = models.CharField(max_length=20, choices=ConsentKind.choices)
    source = models.CharField(max_length=20, choices=ConsentSource.choices)
    text = models.TextField(blank=True, help_text="The consumer's message, for a keyword.")
    message_sid = models.CharField("MessageSid", max_length=64, blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    by_name = models.CharField("by", max_length=150, blank=True, help_text="Kept when the user is deleted.")
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = "consent event"
        verbose_name_plural = "consent ledger"

    def __str__(self):
        return f"{self.get_kind_display()} {self.consumer_number} → {self.portal_number}"


class InboundState(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Handled"
    FAILED = "failed", "Failed"


class InboundMessage(models.Model):
    """Every text that reached a webhook, once: the MessageSid is unique, so a provider retry
    can never be stored twice. The webhook only stores it (`pending`); the conversation work
    runs behind it in batches (`chats.intake`), which marks it `done`, or `failed` with the
    error after `attempts` tries. Its state is in this row, so a worker that dies mid-batch
    loses nothing and doubles nothing."""

    message_sid = models.CharField(max_length=64, unique=True)
    from_number = models.CharField(max_length=20, db_index=True)
    to_number = models.CharField(max_length=20, db_index=True)
    body = models.TextField(blank=True)
    media = models.JSONField(default=list, blank=True, help_text="[{url, content_type}] as the provider sent them.")
    received_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=8, choices=InboundState.choices, default=InboundState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Tries at handling it so far.")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="After a failed try: not tried again before this time."
    )
    error = models.TextField(blank=True, help_text="Why the last try failed.")
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=40, blank=True, help_text="What the portal did with it.")

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # The batch worker's work list: pending texts in arrival order, and per consumer and
            # number whether an earlier one is still pending.
            models.Index(
                fields=["to_number", "from_number", "id"],
                name="inbound_pending_pair",
                condition=Q(state="pending"),
            ),
            models.Index(fields=["id"], name="inbound_pending", condition=Q(state="pending")),
        ]

    def __str__(self):
        return f"{self.message_sid} {self.from_number} → {self.to_number}"


class InboundWake(models.Model):
    """One row: whether a batch worker has been asked to run and has not started yet. Without
    Redis this is how many webhooks share one wake-up task (with Redis a cache key does it):
    the webhook sets it in the transaction that stores its text and enqueues the task only when
    it was the one to set it; the task clears it before it looks for pending texts."""

    requested = models.BooleanField(default=False)

    def __str__(self):
        return "requested" if self.requested else "idle"


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    HELD = "held", "Held for quiet hours"
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed (do not contact)"
    REFUSED = "refused", "Refused"
    EXPIRED = "expired", "Expired"


# A status only ever moves to a higher rank; the final ones share the top rank.
STATUS_RANK = {
    MessageStatus.PENDING: 0,
    MessageStatus.HELD: 1,
    MessageStatus.QUEUED: 2,
    MessageStatus.SENDING: 3,
    MessageStatus.SENT: 4,
    MessageStatus.DELIVERED: 5,
    MessageStatus.UNDELIVERED: 5,
    MessageStatus.FAILED: 5,
    MessageStatus.SUPPRESSED: 5,
    MessageStatus.REFUSED: 5,
    MessageStatus.EXPIRED: 5,
}
FINAL_STATUSES = {status for status, rank in STATUS_RANK.items() if rank == 5}


class OutboundMessageQuerySet(models.QuerySet):
    def due(self, now):
        return self.filter(status__in=[MessageStatus.PENDING, MessageStatus.HELD], next_attempt_at__lte=now)


class OutboundMessage(models.Model):
    """Every SMS the portal sends, whatever started it, with its delivery status."""

    to_number = models.CharField(max_length=20, db_index=True)
    from_number = models.CharField(max_length=16)
    portal_number = models.ForeignKey(PhoneNumber, null=True, blank=True, on_delete=models.SET_NULL)
    body = models.TextField(blank=True)
    media_urls = models.JSONField(default=list, blank=True)
    kind = models.CharField(
        max_length=20, default="system", help_text="system, agent, api, sessionless, blending."
    )
    proactive = models.BooleanField(default=False, help_text="Subject to quiet hours.")
    bypass_do_not_contact = models.BooleanField(
        default=False, help_text="Only the STOP confirmation, sent once after the opt-out."
    )
    encoding = models.CharField(max_length=8, blank=True)
    segments = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=12, choices=MessageStatus.choices, default=MessageStatus.PENDING, db_index=True)
    provider_sid = models.CharField(max_length=64, null=True, blank=True, unique=True)
    error_code = models.CharField(max_length=20, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="When the message is next due to be tried: a held message's window opening, a "
        "retry after backoff or the sending limit, or its creation for a fresh one. Empty once "
        "the provider took it or it reached a final status.",
    )
    lease_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Who holds the message until then: the task queue after an enqueue (a grace "
        "period), or the worker calling the provider. Nobody else sends it before; after, the "
        "sweeper does.",
    )
    attempt_started_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the provider was last called for this message, while the outcome of that "
        "call is unknown (the worker died, or the network failed after the request went out). The "
        "next attempt first asks the provider whether it made the message then.",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    notify_group = models.CharField(
        max_length=60, blank=True, help_text="Realtime group told about status changes, e.g. chat.42."
    )
    batch = models.CharField(max_length=40, blank=True, db_index=True, help_text="Session-less request id.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OutboundMessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["to_number", "from_number", "created_at"], name="outbound_dup_lookup")]

    def __str__(self):
        return f"#{self.pk} → {self.to_number} [{self.status}]"


class MessageStatusEvent(models.Model):
    """One status change of an outbound message, with the provider's error code (SPEC M6)."""

    message = models.ForeignKey(OutboundMessage, on_delete=models.CASCADE, related_name="status_events")
    status = models.CharField(max_length=12, choices=MessageStatus.choices)
    error_code = models.CharField(max_length=20, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=12, default="portal", help_text="portal or provider.")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self):
        return f"{self.message_id}: {self.status}"


class PendingProviderStatus(models.Model):
    """A provider status callback for a sid no message has yet: Twilio can call back before the
    answer to the send reaches the worker and the sid is saved. Applied (and deleted) when the sid
    is saved; a callback whose sid never shows up is dropped by the outbound sweeper after a day."""

    provider_sid = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=20, help_text="As the provider sent it.")
    error_code = models.CharField(max_length=20, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["received_at", "pk"]
        verbose_name = "early status callback"

    def __str__(self):
        return f"{self.provider_sid}: {self.status}"


class RateWindow(models.Model):
    """Fixed-window counters of the database rate limiter (used when Redis is not configured),
    shared by every process that uses the database."""

    key = models.CharField(max_length=80)
    window_start = models.BigIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window_start"], name="rate_window_unique")]


class SessionlessRequest(models.Model):
    """One call of the Session-less SMS API (SPEC A2): its messages are OutboundMessage rows
    whose `batch` is this request's id; no chat and no CRM record is ever made for them."""

    request_id = models.CharField(max_length=40, unique=True)
    from_number = models.CharField(max_length=16)
    to_numbers = models.JSONField(default=list, help_text="Recipients, duplicates removed, in request order.")
    messages = models.JSONField(default=list)
    credential = models.ForeignKey(
        "portal.ApiCredential", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField(help_text="Whatever is not sent by then expires.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "session-less SMS request"

    def __str__(self):
        return self.request_id

    @property
    def total(self) -> int:
        return len(self.to_numbers) * len(self.messages)
