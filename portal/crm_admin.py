"""The built-in CRM in the admin (SPEC S12): contacts (search by name and number, their
conversations) and records (what was posted: events, the transcript, media), read-only.

The public API's `out_ticket_url` points at a record's page here. Chats and calls live in a
higher layer; their pages are reached by URL name through the records' reverse relations."""
from django import forms
from django.contrib import admin
from django.db.models import Count, Max
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from portal.models import CrmContact, CrmEntry, CrmRecord
from portal.readonly_admin import ReadOnlyAdmin, ReadOnlyInline


def conversation_links(record: CrmRecord):
    """Links to the record's chats and calls in the admin (a call's record also lists the
    chat of its SMS side)."""
    links = [(reverse("admin:chats_chat_change", args=[pk]), f"Chat {pk}") for pk in record.chats.values_list("pk", flat=True)]
    links += [(reverse("admin:chats_call_change", args=[pk]), f"Call {pk}") for pk in record.calls.values_list("pk", flat=True)]
    if not links:
        return "—"
    return format_html_join(", ", '<a href="{}">{}</a>', links)


class CrmRecordInline(ReadOnlyInline):
    model = CrmRecord
    verbose_name_plural = "Conversations (CRM records)"
    fields = ["record_link", "queue_name", "language", "created_at", "conversation"]
    readonly_fields = fields
    ordering = ["-created_at"]

    @admin.display(description="record")
    def record_link(self, record):
        return format_html('<a href="{}">{}</a>', reverse("admin:portal_crmrecord_change", args=[record.pk]), record.reference)

    @admin.display(description="chat or call")
    def conversation(self, record):
        return conversation_links(record)


class CrmContactForm(forms.ModelForm):
    class Meta:
        model = CrmContact
        fields = ["name", "phone_number", "email", "time_zone", "state"]

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Enter the contact's name: agents pick contacts by it.")
        return name


@admin.register(CrmContact)
class CrmContactAdmin(admin.ModelAdmin):
    form = CrmContactForm
    list_display = ["label", "phone_number", "email", "conversations", "last_conversation"]
    search_fields = ["name", "phone_number", "email"]
    readonly_fields = ["created_at", "updated_at"]
    fields = ["name", "phone_number", "email", "time_zone", "state", "created_at", "updated_at"]
    inlines = [CrmRecordInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(record_count=Count("records"), last_at=Max("records__created_at"))

    @admin.display(description="name", ordering="name")
    def label(self, contact):
        return contact.name or "(no name yet)"

    @admin.display(description="conversations", ordering="record_count")
    def conversations(self, contact):
        return contact.record_count

    @admin.display(description="last conversation", ordering="last_at")
    def last_conversation(self, contact):
        return contact.last_at or "—"


class CrmEntryInline(ReadOnlyInline):
    model = CrmEntry
    verbose_name = "entry"
    verbose_name_plural = "Entries (as posted, oldest first)"
    fields = ["at", "kind", "shown_text", "attachments"]
    readonly_fields = fields
    ordering = ["at", "pk"]

    @admin.display(description="text")
    def shown_text(self, entry):
        return format_html('<div style="white-space: pre-wrap; max-width: 60em">{}</div>', entry.text or "—")

    @admin.display(description="pictures and videos")
    def attachments(self, entry):
        items = list(entry.data.get("media", []))
        for line in entry.data.get("lines", []):
            items += line.get("media", [])
        if not items:
            return "—"
        return format_html_join(
            ", ",
            '<a href="{}" target="_blank" rel="noopener">{}</a>',
            (
                (reverse("agent-media", args=[item["media_id"]]), item.get("content_type", "file"))
                for item in items
                if item.get("media_id")
            ),
        ) or ", ".join(item.get("content_type", "file") for item in items)


@admin.register(CrmRecord)
class CrmRecordAdmin(ReadOnlyAdmin):
    list_display = ["reference", "phone_number", "contact", "queue_name", "language", "created_at", "needs_contact_choice"]
    list_filter = ["needs_contact_choice", "created_at"]
    search_fields = ["reference", "phone_number", "contact__name", "entries__text"]
    list_select_related = ["contact"]
    date_hierarchy = "created_at"
    fields = [
        "reference", "conversation", "contact_link", "phone_number", "queue_name", "language",
        "needs_contact_choice", "created_at", "updated_at",
    ]
    readonly_fields = fields
    inlines = [CrmEntryInline]

    @admin.display(description="chat or call")
    def conversation(self, record):
        return conversation_links(record)

    @admin.display(description="contact")
    def contact_link(self, record):
        if record.contact is None:
            return "none yet — the agent chooses among contacts sharing the number" if record.needs_contact_choice else "—"
        url = reverse("admin:portal_crmcontact_change", args=[record.contact.pk])
        return format_html('<a href="{}">{}</a>', url, record.contact)
