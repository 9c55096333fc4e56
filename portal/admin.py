"""Admin for the base layer: settings singletons, agents and teams, shortcuts, API credentials."""
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import models
from django.utils.html import format_html

from portal import crm_admin  # noqa: F401  (registers the CRM's pages)
from portal.credentials import create_api_credential, revoke_api_credential
from portal.models import (
    AgentProfile,
    AgentStatus,
    ApiCredential,
    BlendingMessages,
    ChatSettings,
    ChatShortcut,
    DeliveryLog,
    EventWebhook,
    InCallSmsSettings,
    OperationSettings,
    PresetMessage,
    Team,
    WebhookEvent,
)
from portal.presence import set_agent_status
from portal.singletons import SingletonAdmin
from portal.event_webhooks import retry_now, send_test_event

admin.site.site_header = "Tern administration"
admin.site.site_title = "Tern"
admin.site.index_title = "Portal configuration"

SMS_SEGMENT_CHARS = 160
# URLs typed without a scheme are https (Django 6's default), without the transitional warning.
HTTPS_URLS = {models.URLField: {"assume_scheme": "https"}}


@admin.register(ChatSettings)
class ChatSettingsAdmin(SingletonAdmin):
    fieldsets = [
        ("SMS chat", {"fields": ["sms_chat_enabled", "outbound_sms_enabled", "opt_in_message"]}),
        (
            "Commands",
            {
                "description": "STOP, START and HELP are fixed by law and carriers. The BACK and EXIT "
                "words are edited under Queues › BACK/EXIT command words.",
                "fields": ["support_contact_text", "stop_confirmation", "start_confirmation", "opt_out_phrases"],
            },
        ),
        (
            "Expiration and timeouts (minutes; each queue may override)",
            {
                "fields": [
                    "selecting_expiration_minutes",
                    "unanswered_expiration_minutes",
                    "after_hours_expiration_minutes",
                    "chat_timeout_minutes",
                    "outbound_inactivity_minutes",
                ]
            },
        ),
        (
            "Inactive-chat dismissal",
            {"fields": ["dismissal_enabled", "dismissal_minutes", "dismissed_chat_auto_response"]},
        ),
        (
            "Satisfaction survey (CSAT)",
            {
                "description": "After an agent ends a chat, the queue's survey text (under Queues › system "
                "messages; empty: no survey) asks for a score of 1 to 5.",
                "fields": ["survey_window_minutes"],
            },
        ),
        ("Languages", {"fields": ["default_language", "enabled_languages"]}),
        ("Privacy", {"fields": ["mask_consumer_numbers", "do_not_reply_message", "retention_days"]}),
        (
            "Sending",
            {
                "fields": [
                    "duplicate_limiter_enabled",
                    "duplicate_window_minutes",
                    ("quiet_hours_start", "quiet_hours_end"),
                    "default_time_zone",
                    "send_retry_min_seconds",
                    "send_retry_max_seconds",
                    "send_max_attempts",
                ]
            },
        ),
        ("Developer", {"fields": ["api_non_us_numbers_allowed"]}),
    ]


class BlendingMessagesInline(admin.StackedInline):
    model = BlendingMessages
    extra = 0
    min_num = 1


@admin.register(InCallSmsSettings)
class InCallSmsSettingsAdmin(SingletonAdmin):
    inlines = [BlendingMessagesInline]
    fieldsets = [
        ("Features", {"fields": ["in_call_sms_enabled", "wait_time_sms_enabled"]}),
        (
            "Wait-time SMS consent",
            {
                "fields": [
                    "announcement_interval_seconds",
                    "consent_play_limit",
                    ("min_estimated_wait_seconds", "max_estimated_wait_seconds"),
                ]
            },
        ),
        (
            "In-call SMS session",
            {
                "fields": [
                    "custom_messages_allowed",
                    "custom_message_limit",
                    "closing_sms_enabled",
                    "after_session_auto_response_enabled",
                ]
            },
        ),
        ("Numbers outside the US", {"fields": ["non_us_in_call_allowed", "non_us_wait_time_allowed"]}),
    ]


@admin.register(PresetMessage)
class PresetMessageAdmin(admin.ModelAdmin):
    list_display = ["label", "language", "length"]
    list_filter = ["language"]
    search_fields = ["label", "text"]
    fieldsets = [(None, {"fields": ["language", "label", "text"]})]

    @admin.display(description="characters")
    def length(self, obj):
        return len(obj.text)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if len(obj.text) > SMS_SEGMENT_CHARS:
            self.message_user(
                request,
                f"“{obj.label}” is {len(obj.text)} characters: it will be sent as several SMS segments.",
                messages.WARNING,
            )


@admin.register(OperationSettings)
class OperationSettingsAdmin(SingletonAdmin):
    formfield_overrides = HTTPS_URLS
    fieldsets = [
        ("Abandoned calls", {"fields": ["abandoned_call_ticket", "abandoned_ticket_only_with_sms"]}),
        (
            "Send SMS to download or launch the app",
            {
                "fields": [
                    "app_links_enabled",
                    ("ios_app_store_url", "ios_open_url"),
                    ("google_play_url", "android_open_url"),
                ]
            },
        ),
    ]


@admin.register(ChatShortcut)
class ChatShortcutAdmin(admin.ModelAdmin):
    list_display = ["__str__", "category", "language", "is_opt_in", "preview"]
    list_filter = ["language", "category", "is_opt_in"]
    search_fields = ["keyword", "text", "category"]
    fieldsets = [(None, {"fields": ["keyword", "category", "language", "text", "is_opt_in"]})]

    @admin.display(description="text")
    def preview(self, obj):
        return obj.text if len(obj.text) <= 80 else obj.text[:77] + "…"


def save_agent(agent: AgentProfile, form) -> None:
    """An agent saved from the admin. A status edit goes through portal.presence like the
    adapter's, so it is stamped and kept in the status history (the monitor's "for how long",
    the reports' occupancy)."""
    wanted = agent.status
    if "status" in form.changed_data:
        agent.status = form.initial.get("status", AgentStatus.OFFLINE)
    agent.save()
    if wanted != agent.status:
        set_agent_status(agent=agent, status=wanted)
        agent.refresh_from_db(fields=["status", "status_changed_at"])


class AgentProfileInline(admin.StackedInline):
    model = AgentProfile
    can_delete = False
    fields = ["display_name", "languages", "max_concurrent_chats", "status"]
    extra = 0


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class TernUserAdmin(UserAdmin):
    inlines = [AgentProfileInline]

    def save_formset(self, request, form, formset, change):
        if formset.model is not AgentProfile:
            return super().save_formset(request, form, formset, change)
        saved = formset.save(commit=False)
        for inline_form in formset.forms:
            if inline_form.instance in saved:
                save_agent(inline_form.instance, inline_form)
        formset.save_m2m()


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = ["display_name", "user", "status", "max_concurrent_chats", "team_names", "last_assignment_at"]
    list_filter = ["status", "teams"]
    search_fields = ["display_name", "user__username", "user__email"]
    autocomplete_fields = ["user"]
    readonly_fields = ["status_changed_at", "last_assignment_at"]
    fieldsets = [
        (None, {"fields": ["user", "display_name", "languages"]}),
        ("Routing", {"fields": ["max_concurrent_chats", "status", "status_changed_at", "last_assignment_at"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user").prefetch_related("teams")

    def save_model(self, request, obj, form, change):
        save_agent(obj, form)

    @admin.display(description="teams")
    def team_names(self, obj):
        return ", ".join(team.name for team in obj.teams.all()) or "—"


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "agent_count"]
    search_fields = ["name", "agents__display_name"]
    filter_horizontal = ["agents"]
    fieldsets = [(None, {"fields": ["name", "agents"]})]

    @admin.display(description="agents")
    def agent_count(self, obj):
        return obj.agents.count()


class ApiCredentialForm(forms.ModelForm):
    class Meta:
        model = ApiCredential
        fields = ["name"]


@admin.register(ApiCredential)
class ApiCredentialAdmin(admin.ModelAdmin):
    form = ApiCredentialForm
    list_display = ["name", "key", "created_at", "last_used_at", "state"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key"]
    readonly_fields = ["key", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["name"], "description": "The key and secret are made when you save. "
                            "The secret is shown once, on the next page: copy it then."})]
        return [(None, {"fields": ["name", "key", "created_at", "last_used_at", "revoked_at"]})]

    @admin.display(description="state")
    def state(self, obj):
        return "active" if obj.is_active else "revoked"

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        credential, secret = create_api_credential(name=form.cleaned_data["name"], credential=obj)
        self.message_user(
            request,
            format_html(
                "Credential created. Key: <code>{}</code> Secret: <code>{}</code> — copy the secret "
                "now; it is stored hashed and cannot be shown again.",
                credential.key,
                secret,
            ),
            messages.SUCCESS,
        )

    @admin.action(description="Revoke the selected credentials")
    def revoke(self, request, queryset):
        for credential in queryset:
            revoke_api_credential(credential=credential)
        self.message_user(request, f"{queryset.count()} credential(s) revoked.", messages.SUCCESS)


class EventWebhookForm(forms.ModelForm):
    url = forms.URLField(label="URL", max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple, help_text="Events POSTed to the URL."
    )

    class Meta:
        model = EventWebhook
        fields = ["url", "event_types", "signing_secret", "is_active"]


@admin.register(EventWebhook)
class EventWebhookAdmin(admin.ModelAdmin):
    form = EventWebhookForm
    formfield_overrides = HTTPS_URLS
    list_display = ["url", "events", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url"]
    fieldsets = [(None, {"fields": ["url", "event_types", "signing_secret", "is_active"]})]

    actions = ["send_test"]

    @admin.display(description="events")
    def events(self, obj):
        return ", ".join(obj.event_types)

    @admin.action(description="Send a test event (ping) to the selected webhooks")
    def send_test(self, request, queryset):
        for webhook in queryset:
            send_test_event(webhook)
        self.message_user(
            request, f"Test event queued for {queryset.count()} webhook(s); see Webhook deliveries.", messages.SUCCESS
        )


@admin.register(DeliveryLog)
class DeliveryLogAdmin(admin.ModelAdmin):
    """The delivery log (SPEC A5): every event sent to every subscriber, with each attempt."""

    list_display = ["created_at", "event_type", "webhook", "status", "attempts", "last_status_code", "next_attempt_at"]
    list_filter = ["status", "event_type", "webhook"]
    search_fields = ["event_id", "webhook__url"]
    date_hierarchy = "created_at"
    actions = ["retry"]
    fields = [
        "webhook", "event_type", "event_id", "status", "attempts", "next_attempt_at", "last_status_code",
        "last_error", "delivered_at", "created_at", "attempt_history", "payload_json",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="attempts")
    def attempt_history(self, obj):
        rows = [
            f"{item.get('at', '')}: HTTP {item.get('status_code') or '—'} {item.get('error', '')} ({item.get('ms', 0)} ms)"
            for item in obj.history or []
        ]
        return format_html("<pre>{}</pre>", "\n".join(rows) or "—")

    @admin.display(description="payload")
    def payload_json(self, obj):
        import json

        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2))

    @admin.action(description="Retry the selected deliveries now")
    def retry(self, request, queryset):
        count = 0
        for delivery in queryset.exclude(status=DeliveryLog.Status.DELIVERED):
            retry_now(delivery)
            count += 1
        self.message_user(request, f"{count} deliver{'y' if count == 1 else 'ies'} queued again.", messages.SUCCESS)
