"""The built-in CRM (SPEC S12): contacts, records (one per chat or call), their entries."""
from django.db import models

from portal.regions import TIME_ZONE_CHOICES, US_STATE_CHOICES


class CrmContact(models.Model):
    """A contact of the built-in CRM, found by phone number (SPEC S12)."""

    name = models.CharField(max_length=120, blank=True)
    phone_number = models.CharField(max_length=20, db_index=True)
    email = models.EmailField(blank=True)
    time_zone = models.CharField(
        max_length=64, blank=True, choices=TIME_ZONE_CHOICES,
        help_text="Where the contact is: decides their quiet hours before the number's area code does (SPEC R1).",
    )
    state = models.CharField(
        "US state", max_length=2, blank=True, choices=US_STATE_CHOICES,
        help_text="For the state's quiet-hours rule; empty: the number's area code decides.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "phone_number"]
        verbose_name = "CRM contact"

    def __str__(self):
        return self.name or self.phone_number


class CrmRecord(models.Model):
    """The CRM record of one conversation: what SPEC S12 says is posted to it."""

    contact = models.ForeignKey(CrmContact, null=True, blank=True, on_delete=models.SET_NULL, related_name="records")
    phone_number = models.CharField(max_length=20, db_index=True)
    reference = models.CharField(max_length=40, unique=True, help_text="E.g. chat:42 or call:7.")
    language = models.CharField(max_length=8, blank=True)
    queue_name = models.CharField(max_length=200, blank=True)
    needs_contact_choice = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "CRM record"

    def __str__(self):
        return self.reference


class CrmEntry(models.Model):
    record = models.ForeignKey(CrmRecord, on_delete=models.CASCADE, related_name="entries")
    kind = models.CharField(max_length=30)
    text = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "pk"]
        verbose_name = "CRM entry"
        verbose_name_plural = "CRM entries"

    def __str__(self):
        return f"{self.kind} on CRM record {self.record_id}"
