"""Admin for the portal's numbers (Verify action), the Twilio connection page (Test connection),
and the numbers inline on the queue admin."""
import csv

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from portal.readonly_admin import ReadOnlyAdmin
from portal.singletons import SingletonAdmin
from queues.admin import QueueAdmin
from queues.models import Queue
from sms import consent
from sms.models import (
    MessageStatus,
    ConsentEvent,
    ConsentSource,
    MessageStatusEvent,
    OutboundMessage,
    QuietHoursRule,
    DoNotContact,
    NumberRole,
    PhoneNumber,
    ProviderConnection,
    QueueNumber,
    SessionlessRequest,
)
from sms.numbers import validate_portal_number
from sms.pipeline import add_do_not_contact, remove_do_not_contact
from sms.verification import test_connection, verify_number


class QueueNumberInline(admin.TabularInline):
    model = QueueNumber
    extra = 0
    verbose_name = "number"
    verbose_name_plural = "numbers (only verified SMS chat numbers can be assigned)"
    autocomplete_fields = ["number"]


class NumberQueueFormSet(BaseInlineFormSet):
    """Each row is checked against the database alone; two new incoming rows in one submission
    would otherwise reach the database's unique index and fail with a server error."""

    def clean(self):
        super().clean()
        incoming = [
            form.cleaned_data["queue"]
            for form in self.forms
            if getattr(form, "cleaned_data", None)
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("role") == NumberRole.INCOMING
            and form.cleaned_data.get("queue") is not None
        ]
        if len(incoming) > 1:
            raise ValidationError(
                f"{self.instance.number} can be the incoming number of one queue only, not of "
                f"{', '.join(queue.name for queue in incoming)}."
            )


class NumberQueueInline(admin.TabularInline):
    model = QueueNumber
    formset = NumberQueueFormSet
    extra = 0
    verbose_name = "queue"
    verbose_name_plural = "queues using this number"
    autocomplete_fields = ["queue"]


class QueueWithNumbersAdmin(QueueAdmin):
    inlines = [QueueNumberInline, *QueueAdmin.inlines]


admin.site.unregister(Queue)
admin.site.register(Queue, QueueWithNumbersAdmin)


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    list_display = ["number", "label", "usage", "direction", "is_global_outbound", "verification", "queues"]
    list_filter = ["verification", "usage", "direction", "is_global_outbound"]
    search_fields = ["number", "label"]
    readonly_fields = ["verification", "verified_at", "verification_note"]
    actions = ["verify"]
    inlines = [NumberQueueInline]
    fieldsets = [
        (None, {"fields": ["number", "label", "usage", "direction", "is_global_outbound"]}),
        (
            "Verification",
            {
                "description": "Use the Verify action in the number list to ask the provider whether "
                "the account owns this number with SMS capability.",
                "fields": ["verification", "verified_at", "verification_note"],
            },
        ),
        ("Sending", {"fields": ["messages_per_second", "messages_per_day", "messaging_service_sid"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("queue_links__queue")

    @admin.display(description="queues")
    def queues(self, obj):
        return ", ".join(f"{link.queue.name} ({link.role})" for link in obj.queue_links.all()) or "—"

    @admin.action(description="Verify the selected numbers with the provider")
    def verify(self, request, queryset):
        for number in queryset:
            outcome = verify_number(number=number)
            if outcome.verified:
                self.message_user(request, f"{outcome.number}: verified. {outcome.message}", messages.SUCCESS)
            else:
                self.message_user(
                    request, f"{outcome.number}: still unverified. {outcome.message}", messages.ERROR
                )


@admin.register(ProviderConnection)
class ProviderConnectionAdmin(SingletonAdmin):
    change_form_template = "admin/sms/providerconnection/change_form.html"
    readonly_fields = ["provider", "account", "api_base", "checked_at", "result", "numbers"]
    fieldsets = [
        (
            "Connection (from the environment)",
            {
                "description": "SMS_PROVIDER, TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are read from the "
                "environment and never stored or shown here.",
                "fields": ["provider", "account", "api_base"],
            },
        ),
        ("Last check", {"fields": ["checked_at", "result", "numbers"]}),
    ]

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    @admin.display(description="provider")
    def provider(self, obj):
        return settings.SMS_PROVIDER

    @admin.display(description="account SID")
    def account(self, obj):
        sid = settings.TWILIO_ACCOUNT_SID
        return f"{sid[:6]}…{sid[-4:]}" if len(sid) > 10 else (sid or "not set")

    @admin.display(description="API base")
    def api_base(self, obj):
        return settings.TWILIO_API_BASE or "Twilio's default (https://api.twilio.com)"

    @admin.display(description="result")
    def result(self, obj):
        if obj.ok is None:
            return "Not checked yet."
        return ("OK: " if obj.ok else "Failed: ") + obj.message

    @admin.display(description="numbers found")
    def numbers(self, obj):
        if not obj.numbers_found:
            return "—"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} {} {}</li>",
                ((n["number"], n.get("name", ""), "" if n.get("sms") else "(no SMS)") for n in obj.numbers_found),
            ),
        )

    def get_urls(self):
        return [
            path(
                "test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="sms_providerconnection_test",
            ),
            *super().get_urls(),
        ]

    def test_connection_view(self, request):
        if request.method != "POST":
            return HttpResponseRedirect(self._change_url())
        connection = test_connection()
        level = messages.SUCCESS if connection.ok else messages.ERROR
        self.message_user(request, connection.message, level)
        return HttpResponseRedirect(self._change_url())

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "test_url": reverse("admin:sms_providerconnection_test")}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        # Nothing on this page is editable; saving only keeps the row.
        super().save_model(request, obj, form, change)


@admin.register(SessionlessRequest)
class SessionlessRequestAdmin(admin.ModelAdmin):
    """Session-less SMS requests (SPEC A2), read-only: what was asked and how far it got."""

    list_display = ["request_id", "from_number", "recipient_count", "message_count", "created_at", "expires_at"]
    search_fields = ["request_id", "from_number"]
    date_hierarchy = "created_at"
    fields = ["request_id", "from_number", "to_numbers", "messages", "credential", "created_at", "expires_at", "progress"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="recipients")
    def recipient_count(self, obj):
        return len(obj.to_numbers)

    @admin.display(description="messages")
    def message_count(self, obj):
        return len(obj.messages)

    @admin.display(description="progress")
    def progress(self, obj):
        from sms.sessionless import request_status

        counts = request_status(obj)["counts"]
        return ", ".join(f"{status}: {count}" for status, count in counts.items() if count) or "—"


class DoNotContactForm(forms.ModelForm):
    """An admin adds a consumer to the list by hand (they asked by phone or letter): the reason is
    required and goes in the consent ledger."""

    consumer_number = forms.CharField(max_length=20, validators=[validate_portal_number], help_text="E.164, e.g. +15551234567.")
    portal_number = forms.ChoiceField(help_text="The portal's number the consumer must not be texted from.")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Recorded in the consent ledger.")

    class Meta:
        model = DoNotContact
        fields = ["consumer_number", "portal_number"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["portal_number"].choices = [
            (number, f"{number} {name}".strip()) for number, name in PhoneNumber.objects.values_list("number", "label")
        ]


class ClearDoNotContactForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why may the portal text these consumers again? Recorded in the consent ledger with your name.",
    )


@admin.register(DoNotContact)
class DoNotContactAdmin(admin.ModelAdmin):
    """The do-not-contact list: who texted STOP (or was reported unsubscribed) to which number.
    An entry is cleared only with a reason (the action below); both end up in the ledger."""

    form = DoNotContactForm
    list_display = ["consumer_number", "portal_number", "source", "created_at", "history"]
    list_filter = ["source", "portal_number"]
    search_fields = ["consumer_number", "portal_number"]
    date_hierarchy = "created_at"
    actions = ["clear_entries"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting would leave no trace; clearing asks for a reason and records it.
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.has_perm("sms.delete_donotcontact"):
            actions.pop("clear_entries", None)
        return actions

    def save_model(self, request, obj, form, change):
        add_do_not_contact(
            consumer_number=obj.consumer_number,
            portal_number=obj.portal_number,
            source=ConsentSource.ADMIN,
            by=request.user,
            reason=form.cleaned_data["reason"],
        )
        obj.pk = DoNotContact.objects.get(consumer_number=obj.consumer_number, portal_number=obj.portal_number).pk

    @admin.display(description="consent ledger")
    def history(self, obj):
        url = reverse("admin:sms_consentevent_changelist") + f"?q={obj.consumer_number}"
        return format_html('<a href="{}">History</a>', url)

    @admin.action(description="Clear the selected entries (a reason is asked)")
    def clear_entries(self, request, queryset):
        form = ClearDoNotContactForm(request.POST if "reason" in request.POST else None)
        if form.is_bound and form.is_valid():
            cleared = 0
            for entry in queryset:
                cleared += remove_do_not_contact(
                    consumer_number=entry.consumer_number,
                    portal_number=entry.portal_number,
                    source=ConsentSource.ADMIN,
                    by=request.user,
                    reason=form.cleaned_data["reason"],
                )
            self.message_user(request, f"{cleared} entr{'y' if cleared == 1 else 'ies'} cleared; the reason is in the consent ledger.")
            return None
        return TemplateResponse(
            request,
            "admin/sms/donotcontact/clear.html",
            {
                **self.admin_site.each_context(request),
                "title": "Clear do-not-contact entries",
                "opts": self.model._meta,
                "entries": queryset,
                "form": form,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    """The consent ledger (SPEC R2): every opt-out and opt-in as it happened; never edited."""

    list_display = ["at", "consumer_number", "portal_number", "kind", "source", "text_start", "by_name", "reason"]
    list_filter = ["kind", "source"]
    actions = ["download_csv"]
    search_fields = ["consumer_number", "portal_number", "message_sid", "text", "reason", "by_name"]
    date_hierarchy = "at"
    fields = ["at", "consumer_number", "portal_number", "kind", "source", "text", "message_sid", "by_name", "reason"]
    readonly_fields = fields

    @admin.display(description="text")
    def text_start(self, obj):
        return obj.text[:60] + ("…" if len(obj.text) > 60 else "")

    @admin.action(description="Download the selected rows as CSV")
    def download_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="tern-consent-ledger.csv"'
        writer = csv.DictWriter(response, fieldnames=consent.CSV_COLUMNS)
        writer.writeheader()
        for event in queryset.order_by("-at", "-pk"):
            writer.writerow(consent.as_row(event))
        return response


@admin.register(QuietHoursRule)
class QuietHoursRuleAdmin(admin.ModelAdmin):
    """The states stricter than the federal window (SPEC R1), seeded as the SPEC lists; a state
    with rules for a day uses the narrowest of them, in the recipient's local time."""

    list_display = ["state", "days", "start", "end", "note"]
    list_filter = ["state", "days"]
    search_fields = ["state", "note"]


class StatusEventInline(admin.TabularInline):
    model = MessageStatusEvent
    extra = 0
    can_delete = False
    fields = ["at", "status", "source", "detail"]
    readonly_fields = fields
    ordering = ["at", "pk"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ReadOnlyAdmin):
    """Every SMS the portal sent or will send (SPEC S11), read-only: its status history, and for
    a held message when it goes out and why (the recipient's zone and the rule, SPEC R1)."""

    list_display = ["id", "to_number", "from_number", "kind", "status", "created_at", "goes_out_at", "why"]
    list_filter = ["status", "kind", "proactive"]
    search_fields = ["to_number", "from_number", "body", "provider_sid"]
    date_hierarchy = "created_at"
    fields = [
        "to_number", "from_number", "kind", "proactive", "body", "media_urls", "segments", "encoding", "status",
        "error_code", "error_message", "next_attempt_at", "attempts", "provider_sid", "created_at", "expires_at",
    ]
    readonly_fields = fields
    inlines = [StatusEventInline]

    @admin.display(description="goes out at", ordering="next_attempt_at")
    def goes_out_at(self, message):
        return message.next_attempt_at if message.status in (MessageStatus.HELD, MessageStatus.PENDING) else "—"

    @admin.display(description="why")
    def why(self, message):
        return message.error_message or "—"
