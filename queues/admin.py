"""Queue tree admin: the list shows the tree by indentation; messages, hours, agents and teams inline.
The sms layer adds the numbers inline to this admin (sms/admin.py), as queues cannot import sms."""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.utils.html import format_html

from portal.admin import ChatSettingsAdmin
from portal.keywords import normalise_phrase, phrase_list
from portal.languages import language_name
from portal.models import ChatSettings
from queues.models import (
    ClosedDate,
    MenuCommand,
    OpeningHours,
    Queue,
    QueueBlendingMessages,
    QueueMessages,
    languages_without_texts,
)


def offered_languages(queue: Queue, chat_settings: ChatSettings) -> list[str]:
    """The languages a consumer of this queue can be in: the queue's own list, else every enabled
    language, else the default one."""
    enabled = chat_settings.enabled_languages or [chat_settings.default_language]
    return [code for code in enabled if not queue.languages or code in queue.languages] or [chat_settings.default_language]


def fallback_warnings(queue: Queue, chat_settings: ChatSettings) -> list[str]:
    """What a consumer of this queue gets instead, for each language it has no texts in (the
    order of `queues.models.queue_text`)."""
    default = chat_settings.default_language
    gaps = languages_without_texts(queue, offered_languages(queue, chat_settings))
    has_default = not languages_without_texts(queue, [default])
    warnings = []
    for code in gaps:
        if code == default:
            warnings.append(
                f"No {language_name(code)} texts (the default language) on this queue or the menus above it: "
                "consumers get the texts of another language, or none."
            )
        else:
            instead = f"the {language_name(default)} texts" if has_default else "the texts of another language, or none"
            warnings.append(
                f"No {language_name(code)} texts on this queue or the menus above it: consumers who choose "
                f"{language_name(code)} get {instead}. Add {language_name(code)} under Queue messages."
            )
    return warnings


class QueueMessagesInline(admin.StackedInline):
    model = QueueMessages
    extra = 0
    min_num = 1


class QueueBlendingMessagesInline(admin.StackedInline):
    model = QueueBlendingMessages
    extra = 0
    classes = ["collapse"]
    fields = ["language", *QueueBlendingMessages.TEXT_FIELDS, "deflection_prompt", "deflection_goodbye"]


class OpeningHoursInline(admin.TabularInline):
    model = OpeningHours
    extra = 0


class ClosedDateInline(admin.TabularInline):
    model = ClosedDate
    extra = 0


class QueueAgentInline(admin.TabularInline):
    model = Queue.agents.through
    verbose_name = "agent"
    verbose_name_plural = "agents assigned directly"
    extra = 0
    autocomplete_fields = ["agentprofile"]


class QueueTeamInline(admin.TabularInline):
    model = Queue.teams.through
    verbose_name = "team"
    verbose_name_plural = "teams assigned (each agent of the team takes chats)"
    extra = 0


def tree_order(queues) -> list[Queue]:
    """Depth-first order, children by position, for showing the tree."""
    by_parent: dict[int | None, list[Queue]] = {}
    for queue in queues:
        by_parent.setdefault(queue.parent_id, []).append(queue)
    ids = {queue.pk for queue in queues}
    ordered: list[Queue] = []

    def walk(parent_id, depth):
        for queue in sorted(by_parent.get(parent_id, []), key=lambda q: (q.position, q.name)):
            queue.tree_depth = depth
            ordered.append(queue)
            walk(queue.pk, depth + 1)

    walk(None, 0)
    # Queues whose parent is filtered out of the list still show, at the top level.
    for queue in queues:
        if queue.parent_id is not None and queue.parent_id not in ids:
            queue.tree_depth = 0
            ordered.append(queue)
            walk(queue.pk, 1)
    return ordered


class TreeChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        self.result_list = tree_order(list(self.result_list))


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ["tree_name", "queue_id", "kind", "position", "menu_keywords", "answer_type", "sms_enabled", "hidden"]
    list_filter = ["sms_enabled", "hidden", "answer_type", "always_open", "parent"]
    search_fields = ["name", "menu_keywords"]
    list_per_page = 500
    inlines = [
        QueueMessagesInline, OpeningHoursInline, ClosedDateInline, QueueAgentInline, QueueTeamInline,
        QueueBlendingMessagesInline,
    ]
    fieldsets = [
        (None, {"fields": ["name", "parent", "position", "menu_keywords", "sms_enabled", "hidden"]}),
        ("Chats", {"fields": ["answer_type", "languages"]}),
        ("Hours of operation", {"fields": ["time_zone", "always_open"]}),
        (
            "Waiting consumers",
            {
                "description": "A waiting consumer can text the WHERE word (Queues › BACK/EXIT command words) "
                "for their place and the estimated wait; the 'place in queue' system message says it.",
                "fields": ["position_update_minutes", "position_update_limit"],
            },
        ),
        ("Reporting", {"fields": ["service_level_seconds", "short_abandon_seconds"]}),
        (
            "Expiration and timeouts (overrides; empty uses the chat settings)",
            {
                "classes": ["collapse"],
                "fields": [
                    "selecting_expiration_minutes",
                    "unanswered_expiration_minutes",
                    "after_hours_expiration_minutes",
                    "chat_timeout_minutes",
                    "outbound_inactivity_minutes",
                    "dismissal_minutes",
                ],
            },
        ),
        (
            "SMS beside calls (overrides of the in-call SMS settings)",
            {
                "classes": ["collapse"],
                "fields": [
                    "wait_time_sms_enabled",
                    "in_call_sms_enabled",
                    "announcement_interval_seconds",
                    "consent_play_limit",
                    ("min_estimated_wait_seconds", "max_estimated_wait_seconds"),
                ],
            },
        ),
        (
            "Pre-session SMS deflection (IVR queues)",
            {
                "classes": ["collapse"],
                "description": "A waiting caller is offered once to continue by text (press 3); the call ends "
                "and an SMS chat starts in the deflection queue, keeping the caller's place. The offer's "
                "words are under 'in-call SMS texts of this queue'.",
                "fields": ["deflection_enabled", "deflection_min_wait_seconds", "deflection_queue"],
            },
        ),
    ]

    def get_changelist(self, request, **kwargs):
        return TreeChangeList

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            queue = self.get_object(request, object_id)
            if queue is not None:
                for warning in fallback_warnings(queue, ChatSettings.load()):
                    messages.warning(request, warning)
        return super().change_view(request, object_id, form_url, extra_context)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("parent").prefetch_related("children")

    @admin.display(description="queue")
    def tree_name(self, obj):
        depth = getattr(obj, "tree_depth", 0)
        return format_html(
            '<span style="padding-left:{}em">{}{}</span>', depth * 1.5, "└ " if depth else "", obj.name
        )

    @admin.display(description="ID", ordering="pk")
    def queue_id(self, obj):
        """The id the IVR API's queue_id and the reports' filters take."""
        return obj.pk

    @admin.display(description="kind")
    def kind(self, obj):
        return "menu" if obj.children.all() else "queue"


@admin.register(MenuCommand)
class MenuCommandAdmin(admin.ModelAdmin):
    list_display = ["word", "action"]
    list_filter = ["action"]
    search_fields = ["word"]
    fieldsets = [
        (
            None,
            {
                "description": "Whole-message words consumers can text to navigate menus (BACK, EXIT) or, "
                "while waiting, to ask their place in the queue (WHERE). STOP, START, HELP and their synonyms "
                "are protected and cannot be used.",
                "fields": ["word", "action"],
            },
        )
    ]


class ChatSettingsForm(forms.ModelForm):
    """An opt-out phrase may not be a menu keyword or a menu command word: that answer would
    both choose and opt out."""

    class Meta:
        model = ChatSettings
        fields = "__all__"

    def clean_opt_out_phrases(self):
        raw = self.cleaned_data["opt_out_phrases"]
        words = {normalise_phrase(word): f"a menu keyword of {queue}" for queue in Queue.objects.exclude(menu_keywords="") for word in queue.keyword_list}
        words.update({normalise_phrase(word): "a menu command word" for word in MenuCommand.objects.values_list("word", flat=True)})
        for phrase in phrase_list(raw):
            if phrase in words:
                raise forms.ValidationError(f"“{phrase}” is {words[phrase]}; an opt-out phrase must be something else.")
        return raw


class ChatSettingsWithLanguagesAdmin(ChatSettingsAdmin):
    """The chat settings page, saying which enabled languages queues lack texts in (the queues
    live in this layer, so the warning is added here, as sms adds the numbers to the queue page),
    and checking the opt-out phrases against the menus' words."""

    form = ChatSettingsForm

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            chat_settings = ChatSettings.load()
            default = chat_settings.default_language
            queues = list(Queue.objects.filter(sms_enabled=True).select_related("parent"))
            for code in chat_settings.enabled_languages or []:
                lacking = sorted(
                    str(q) for q in queues if code in offered_languages(q, chat_settings) and languages_without_texts(q, [code])
                )
                if lacking and code != default:
                    messages.warning(
                        request,
                        f"{language_name(code)} is enabled, but these queues have no {language_name(code)} texts (nor do "
                        f"the menus above them), so consumers who choose it get {language_name(default)}: "
                        f"{', '.join(lacking)}.",
                    )
        return super().change_view(request, object_id, form_url, extra_context)


admin.site.unregister(ChatSettings)
admin.site.register(ChatSettings, ChatSettingsWithLanguagesAdmin)
