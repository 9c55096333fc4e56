"""Admin for the portal's numbers (Verify action), the Twilio connection page (Test connection),
and the numbers inline on the queue admin."""
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from portal.singletons import SingletonAdmin
from queues.admin import QueueAdmin
from queues.models import Queue
from sms.models import NumberRole, PhoneNumber, ProviderConnection, QueueNumber, SessionlessRequest
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
