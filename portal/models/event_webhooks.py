"""Tern's outgoing event webhooks (SPEC A5, C9): the subscribers and each delivery's log."""
import secrets

from django.core.exceptions import ValidationError
from django.db import models


class WebhookEvent(models.TextChoices):
    CHAT_CREATED = "chat.created", "Chat created"
    CHAT_ASSIGNED = "chat.assigned", "Chat assigned"
    CHAT_TRANSFERRED = "chat.transferred", "Chat transferred"
    CHAT_FINISHED = "chat.finished", "Chat finished"
    MESSAGE_STATUS = "message.status", "Message status changed"


class EventWebhook(models.Model):
    """A subscriber to chat lifecycle and message status events, signed with HMAC-SHA256 (C9)."""

    url = models.URLField("URL", max_length=500)
    signing_secret = models.CharField(
        max_length=128,
        default=secrets.token_hex,
        help_text="Each POST carries X-Tern-Timestamp and X-Tern-Signature: "
        "sha256=HMAC-SHA256(secret, timestamp + \".\" + body), hex (docs/webhooks.md).",
    )
    event_types = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField("active", default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["url"]
        verbose_name = "event webhook"

    def __str__(self):
        return self.url

    def clean(self):
        unknown = set(self.event_types or []) - set(WebhookEvent.values)
        if unknown:
            raise ValidationError({"event_types": f"Unknown event type(s): {', '.join(sorted(unknown))}."})
        if not self.event_types:
            raise ValidationError({"event_types": "Pick at least one event type."})


class DeliveryLog(models.Model):
    """One event sent (or being sent) to one event webhook, with every attempt (SPEC A5)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(EventWebhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=40, db_index=True, help_text="The event's id, the same for every subscriber.")
    event_type = models.CharField(max_length=40, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    lease_until = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Taken by a worker until then (one sender at a time)."
    )
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The subscriber's HTTP answer.")
    last_error = models.CharField(max_length=500, blank=True)
    history = models.JSONField(default=list, blank=True, help_text="Every attempt: time, HTTP status, error, duration.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"

    def __str__(self):
        return f"{self.event_type} → {self.webhook_id} [{self.status}]"
