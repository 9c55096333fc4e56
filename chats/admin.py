"""Chats and calls in the admin: read-only history for supervisors and admins.

Conversations change only through chats.services (the transition table, the locks, the
pushes), so nothing here edits or adds one: the pages show what happened — the transcript with
each text's delivery status, the events, the finish reason — and filter and search it."""
from django import forms
from django.contrib import admin
from django.db.models import Count

from chats import erasure, intake
from chats.models import CHAT_SUBTYPES, Call, Chat, ChatEvent, Erasure, Message
from portal.readonly_admin import ReadOnlyAdmin, ReadOnlyInline
from sms.models import InboundMessage, InboundState
from sms.numbers import validate_portal_number


class MessageInline(ReadOnlyInline):
    model = Message
    verbose_name = "transcript entry"
    verbose_name_plural = "Transcript"
    fields = ("created_at", "author", "agent", "body", "delivery", "media_count")
    readonly_fields = fields
    ordering = ("created_at", "pk")

    def get_queryset(self, request):
        return (
            super().get_queryset(request)
            .select_related("agent__user", "outbound")
            .annotate(media_total=Count("media"))
        )

    @admin.display(description="Delivery")
    def delivery(self, message):
        outbound = message.outbound
        if outbound is None:
            return "—"
        return f"{outbound.status} ({outbound.error_code})" if outbound.error_code else outbound.status

    @admin.display(description="Media")
    def media_count(self, message):
        return message.media_total or "—"


class ChatEventInline(ReadOnlyInline):
    model = ChatEvent
    verbose_name_plural = "Events"
    fields = ("at", "kind", "by", "data")
    readonly_fields = fields
    ordering = ("at", "pk")


@admin.register(Chat)
class ChatAdmin(ReadOnlyAdmin):
    list_display = ("id", "consumer_number", "portal_number", "queue", "status", "agent", "subtype", "created_at", "finish_reason")
    list_filter = ("status", "chat_type", "start_type", "finish_reason", "queue", "created_at")
    search_fields = ("consumer_number", "portal_number__number", "agent__user__username", "ticket_id")
    list_select_related = ("portal_number", "queue", "agent__user")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    fieldsets = (
        ("Conversation", {"fields": ("consumer_number", "portal_number", "queue", "language", "chat_type", "subtype", "start_type")}),
        ("Status", {
            "fields": ("status", "agent", "created_at", "queued_at", "assigned_at", "dismissed_at", "ends_at", "finish_reason", "disconnected_by"),
        }),
        ("Timer", {
            "fields": ("deadline_kind", "deadline_at"),
            "description": "The chat's next deadline, checked by the sweeper every few seconds (chat settings and the queue's timer overrides).",
        }),
        ("CRM", {"fields": ("crm_record", "contact_to_choose", "ticket_id")}),
        ("Satisfaction survey (CSAT)", {"fields": ("survey_sent_at", "rating", "feedback")}),
    )
    readonly_fields = ("subtype", "contact_to_choose")
    inlines = (MessageInline, ChatEventInline)

    @admin.display(description="chat subtype")
    def subtype(self, chat):
        """As the public API and the event webhooks name it (inbound, outbound, api_initiated …)."""
        return CHAT_SUBTYPES.get(chat.chat_type, "inbound")

    @admin.display(description="CRM contact to choose")
    def contact_to_choose(self, chat):
        if chat.crm_needs_choice:
            return "Yes: several contacts share the number; the agent picks one in the adapter."
        return "No"


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = ("id", "caller_number", "queue", "status", "wait_time_sms_status", "agent", "source", "created_at")
    list_filter = ("status", "wait_time_sms_status", "source", "queue")
    search_fields = ("caller_number", "call_sid", "agent__user__username")
    list_select_related = ("queue", "agent__user")
    ordering = ("-created_at",)
    fieldsets = (
        ("Call", {"fields": ("call_sid", "source", "caller_number", "dialed_number", "queue", "language", "status", "agent")}),
        ("Wait-time SMS", {
            "fields": ("wait_time_sms_status", "prompt_plays", "last_prompt_at", "sms_number", "chat", "in_call_sms_open"),
            "description": "The consent prompt the caller heard while waiting, and the SMS side of the call.",
        }),
        ("Times", {"fields": ("created_at", "queued_at", "assigned_at", "ended_at")}),
        ("CRM", {"fields": ("crm_record",)}),
    )


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
    """Every text a webhook stored, with what the batch worker did with it: pending ones wait
    for it, failed ones show their error and can be tried again."""

    list_display = ["message_sid", "from_number", "to_number", "received_at", "state", "attempts", "outcome"]
    list_filter = ["state", "outcome"]
    search_fields = ["message_sid", "from_number", "to_number", "body"]
    readonly_fields = [
        "message_sid", "from_number", "to_number", "body", "media", "received_at",
        "state", "attempts", "next_attempt_at", "error", "processed_at", "outcome",
    ]
    date_hierarchy = "received_at"
    actions = ["try_again"]

    @admin.action(description="Try the selected failed texts again")
    def try_again(self, request, queryset):
        count = intake.retry_failed(queryset.filter(state=InboundState.FAILED).values_list("pk", flat=True))
        self.message_user(request, f"{count} failed text(s) will be handled again." if count else "No failed text selected.")


class ErasureForm(forms.ModelForm):
    """*Erase consumer* (SPEC R3): the number, why, and a confirmation."""

    number = forms.CharField(max_length=20, validators=[validate_portal_number], help_text="E.164, e.g. +15551234567.")
    confirm = forms.BooleanField(
        label="I understand",
        help_text="Every text, picture, video and transcript of this number, its CRM contact data and its texts in "
        "session-less requests and webhook logs are removed for good. Its active chats end first. The chats stay "
        "(counted in the reports), and so do its do-not-contact entries and consent ledger.",
    )

    class Meta:
        model = Erasure
        fields = ["number", "reason"]


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin):
    """The erasures done (who, when, what was removed) and the *Erase consumer* form (Add)."""

    form = ErasureForm
    list_display = ["number", "at", "by_name", "what", "reason"]
    search_fields = ["number", "by_name", "reason"]
    date_hierarchy = "at"

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        return ["number", "reason", "confirm"] if obj is None else ["number", "at", "by_name", "reason", "counts"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["number", "at", "by_name", "reason", "counts"]

    def save_model(self, request, obj, form, change):
        done = erasure.erase_consumer(form.cleaned_data["number"], by=request.user, reason=form.cleaned_data["reason"])
        obj.pk, obj.at, obj.counts = done.pk, done.at, done.counts

    def save_related(self, request, form, formsets, change):
        pass

    @admin.display(description="erased")
    def what(self, obj):
        return ", ".join(f"{kind.replace('_', ' ')}: {count}" for kind, count in obj.counts.items() if count) or "nothing left"
