"""The tenant-wide settings (SPEC C1, C3, C6, C7, C8): chat settings with their timers, in-call SMS
settings with their texts per language and preset messages, operation settings, chat shortcuts."""
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from portal.keywords import DEFAULT_OPT_OUT_PHRASES
from portal.languages import LANGUAGE_CHOICES, LanguageListField, language_name
from portal.regions import TIME_ZONE_CHOICES
from portal.singletons import SingletonModel


MAX_DISMISSAL_MINUTES = 10_080  # one week


MAX_IN_CALL_MESSAGE_CHARS = 918


DEFAULT_DISMISSED_AUTO_RESPONSE = (
    "Welcome back! Your earlier conversation was closed while we waited for your reply. "
    "We have put you back in line and an agent will be with you shortly."
)


def english_only() -> list[str]:
    return ["en"]


def minutes_field(verbose_name: str, default: int | None, help_text: str, **kwargs):
    validators = [MinValueValidator(1)]
    return models.PositiveIntegerField(
        verbose_name, default=default, validators=validators, help_text=help_text, **kwargs
    )


class TimerSettings(models.Model):
    """The SMS expiration and timeout values (SPEC C3), in minutes."""

    selecting_expiration_minutes = minutes_field(
        "queue-selecting expiration",
        30,
        "A chat that never gets past the menu ends after this many minutes. This includes "
        "API-initiated outbound messages the consumer has not replied to.",
    )
    unanswered_expiration_minutes = minutes_field(
        "unanswered expiration (open hours)",
        60,
        "A chat waiting in a queue during its hours of operation, with no agent taking it, "
        "ends after this many minutes.",
    )
    after_hours_expiration_minutes = minutes_field(
        "unanswered expiration (after hours)",
        720,
        "A chat waiting in a queue outside its hours of operation ends after this many minutes.",
    )
    chat_timeout_minutes = minutes_field(
        "chat timeout",
        1440,
        "Minutes the consumer has to answer the agent's last message before the chat ends. "
        "Restarts when an agent is assigned and at each consumer message.",
    )
    outbound_inactivity_minutes = minutes_field(
        "outbound chat inactivity timeout",
        1440,
        "An agent- or API-started chat with no activity for this many minutes ends.",
    )

    class Meta:
        abstract = True


class ChatSettings(TimerSettings, SingletonModel):
    """Global SMS chat settings (SPEC C1, C3, C9): one row."""

    sms_chat_enabled = models.BooleanField(
        "SMS chat on",
        default=True,
        help_text="Off: texts to the portal's numbers are logged but no chat is created.",
    )
    outbound_sms_enabled = models.BooleanField(
        "outbound SMS on",
        default=True,
        help_text="Lets agents start SMS chats and API clients use the Outbound SMS API.",
    )
    opt_in_message = models.TextField(
        blank=True,
        default=(
            "Thanks for texting us. Msg & data rates may apply. Reply HELP for help, "
            "STOP to opt out."
        ),
        help_text="Sent once, on a consumer's first text, before the greeting. Leave empty to skip.",
    )
    support_contact_text = models.TextField(
        "HELP reply",
        default="For help, call us or visit our website. Reply STOP to opt out.",
        help_text="The answer to HELP or INFO.",
    )
    stop_confirmation = models.TextField(
        "STOP confirmation",
        default="You have been unsubscribed and will receive no more messages. Reply START to resubscribe.",
        help_text="Sent once when a consumer opts out; nothing else is sent to them until START.",
    )
    start_confirmation = models.TextField(
        "START confirmation",
        default="You have been resubscribed. Reply HELP for help, STOP to opt out.",
        help_text="Sent when a consumer who had opted out sends START, YES or UNSTOP.",
    )
    opt_out_phrases = models.TextField(
        default=DEFAULT_OPT_OUT_PHRASES,
        blank=True,
        help_text="One per line. A whole message equal to one of these, whatever its case and punctuation, "
        "is treated as STOP (consumers may revoke consent by any reasonable means, FCC 2025).",
    )
    dismissal_enabled = models.BooleanField(
        "inactive-chat dismissal on",
        default=False,
        help_text="An assigned chat where both sides have written and nothing happens for the "
        "dismissal time leaves the agent's adapter. API-initiated chats are never dismissed.",
    )
    dismissal_minutes = models.PositiveIntegerField(
        "dismissal timer (minutes)",
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DISMISSAL_MINUTES)],
        help_text="1 to 10,080 minutes (one week), and never longer than the chat timeout.",
    )
    dismissed_chat_auto_response = models.TextField(
        default=DEFAULT_DISMISSED_AUTO_RESPONSE,
        help_text="Sent only when a consumer replies to a dismissed chat; the chat then goes "
        "back to its queue.",
    )
    survey_window_minutes = models.PositiveIntegerField(
        "survey reply window (minutes)",
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DISMISSAL_MINUTES)],
        help_text="How long after the CSAT survey (a queue's survey text) a reply of 1 to 5 counts as the "
        "score, and the next text as feedback. 1 to 10,080 minutes.",
    )
    default_language = models.CharField(
        max_length=8,
        choices=LANGUAGE_CHOICES,
        default="en",
        help_text="Used when a consumer has not chosen a language.",
    )
    enabled_languages = LanguageListField(
        default=english_only,
        help_text="With more than one, the first menu asks the consumer to pick a language.",
    )
    do_not_reply_message = models.TextField(
        "session-less do-not-reply message",
        blank=True,
        default="This number does not accept replies.",
        help_text="Answer to a reply sent to a session-less or outbound-only number. Empty: no answer.",
    )
    mask_consumer_numbers = models.BooleanField(
        default=True,
        help_text="Agents see +1•••••1234 instead of the full number, unless they hold the "
        "permission 'Can see full consumer numbers'.",
    )
    duplicate_limiter_enabled = models.BooleanField(
        "duplicate-message limiter on",
        default=True,
        help_text="Refuses the same text to the same number twice inside the window.",
    )
    duplicate_window_minutes = models.PositiveIntegerField(
        "duplicate window (minutes)", default=30, validators=[MinValueValidator(1)]
    )
    quiet_hours_start = models.TimeField(
        default="08:00",
        help_text="Proactive messages (API, session-less) go out only from this local time of "
        "the recipient…",
    )
    quiet_hours_end = models.TimeField(default="21:00", help_text="…until this one (the federal window; state rules are "
        "under Quiet-hours state rules).")
    retention_days = models.PositiveIntegerField(
        "keep texts for (days)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="After this many days from a chat's end, its texts, media and transcript are erased by the "
        "sweeper (the chat stays, counted in the reports). Empty: keep them.",
    )
    default_time_zone = models.CharField(
        "default time zone for quiet hours",
        max_length=64,
        choices=TIME_ZONE_CHOICES,
        default="America/New_York",
        help_text="Decides a recipient's quiet hours when neither their CRM contact nor their number says "
        "where they are (non-geographic numbers, or an area code spanning zones with no common window).",
    )
    send_retry_min_seconds = models.PositiveIntegerField(
        "first retry after (seconds)",
        default=2,
        validators=[MinValueValidator(1)],
        help_text="When the provider answers 429, 5xx or times out, the send is tried again "
        "after this delay, doubling each time.",
    )
    send_retry_max_seconds = models.PositiveIntegerField(
        "longest retry delay (seconds)", default=300, validators=[MinValueValidator(1)]
    )
    send_max_attempts = models.PositiveIntegerField(
        "tries per message", default=5, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    api_non_us_numbers_allowed = models.BooleanField(
        "non-US numbers allowed in the Outbound SMS API",
        default=False,
        help_text="Off: the API refuses outbound numbers outside the US (+1).",
    )

    class Meta:
        verbose_name = "chat settings"
        verbose_name_plural = "chat settings"

    def __str__(self):
        return "Chat settings"

    def clean(self):
        errors = {}
        if self.dismissal_minutes and self.chat_timeout_minutes:
            if self.dismissal_minutes > self.chat_timeout_minutes:
                errors["dismissal_minutes"] = (
                    f"The dismissal timer ({self.dismissal_minutes} min) cannot be longer than "
                    f"the chat timeout ({self.chat_timeout_minutes} min)."
                )
        if self.enabled_languages and self.default_language not in self.enabled_languages:
            errors["default_language"] = (
                f"{language_name(self.default_language)} must also be an enabled language."
            )
        if self.send_retry_min_seconds and self.send_retry_max_seconds:
            if self.send_retry_min_seconds > self.send_retry_max_seconds:
                errors["send_retry_max_seconds"] = "The longest delay must be at least the first delay."
        if errors:
            raise ValidationError(errors)


class InCallSmsSettings(SingletonModel):
    """SMS beside a call: wait-time SMS and in-call SMS (SPEC C7): one row."""

    in_call_sms_enabled = models.BooleanField(
        "in-call SMS on", default=False, help_text="Agents on a call may text the caller."
    )
    wait_time_sms_enabled = models.BooleanField(
        "wait-time SMS on",
        default=False,
        help_text="Callers waiting in a queue are offered to send information by SMS.",
    )
    announcement_interval_seconds = models.PositiveIntegerField(
        "caller announcement interval (seconds)",
        default=60,
        validators=[MinValueValidator(10)],
        help_text="How often a waiting caller may hear the consent prompt.",
    )
    consent_play_limit = models.PositiveIntegerField(
        "consent prompt play limit",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Most times one caller hears the consent prompt. Empty: no limit.",
    )
    min_estimated_wait_seconds = models.PositiveIntegerField(
        "offer only when the estimated wait is at least (seconds)", null=True, blank=True
    )
    max_estimated_wait_seconds = models.PositiveIntegerField(
        "offer only when the estimated wait is at most (seconds)", null=True, blank=True
    )
    custom_messages_allowed = models.BooleanField(
        "agents may write custom messages",
        default=False,
        help_text="Off: agents pick from the preset messages only.",
    )
    custom_message_limit = models.PositiveIntegerField(
        "custom message limit (characters)",
        default=MAX_IN_CALL_MESSAGE_CHARS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_IN_CALL_MESSAGE_CHARS)],
        help_text="At most 918 characters.",
    )
    closing_sms_enabled = models.BooleanField(
        "closing SMS on", default=False, help_text="Sent when the in-call SMS session ends."
    )
    after_session_auto_response_enabled = models.BooleanField(
        "after-session auto response on",
        default=False,
        help_text="Answers any text the caller sends after the call ended.",
    )
    non_us_in_call_allowed = models.BooleanField("non-US numbers allowed for in-call SMS", default=False)
    non_us_wait_time_allowed = models.BooleanField("non-US numbers allowed for wait-time SMS", default=False)

    class Meta:
        verbose_name = "in-call SMS settings"
        verbose_name_plural = "in-call SMS settings"

    def __str__(self):
        return "In-call SMS settings"

    def clean(self):
        low, high = self.min_estimated_wait_seconds, self.max_estimated_wait_seconds
        if low is not None and high is not None and low > high:
            raise ValidationError(
                {"max_estimated_wait_seconds": "The maximum estimated wait must be at least the minimum."}
            )


class BlendingMessages(models.Model):
    """The prompts and texts of wait-time and in-call SMS in one language (SPEC C7)."""

    settings = models.ForeignKey(InCallSmsSettings, on_delete=models.CASCADE, related_name="messages")
    language = models.CharField(max_length=8, choices=LANGUAGE_CHOICES)
    consent_prompt = models.TextField(
        blank=True,
        default="To send us details by text message while you wait, press 1. To keep waiting, press 2.",
        help_text="Read to the caller. It must offer 'press 1' to accept and 'press 2' to decline.",
    )
    consent_prompt_audio = models.FileField(
        upload_to="prompts/",
        blank=True,
        help_text="Optional recording played instead of the text above.",
    )
    sms_sent_prompt = models.TextField(
        "'SMS sent' prompt", default="We have sent you a text message. Please stay on the line."
    )
    incorrect_selection_prompt = models.TextField(
        default="Sorry, that was not a valid choice."
    )
    wait_time_sms_text = models.TextField(
        "wait-time SMS",
        default="Reply to this message with details or photos about your call. An agent will see them.",
    )
    closing_sms = models.TextField(blank=True, default="Thanks for contacting us. This text session has ended.")
    after_session_auto_response = models.TextField(
        blank=True, default="This text session has ended. Please call us again if you need help."
    )

    class Meta:
        verbose_name = "prompts and texts in one language"
        verbose_name_plural = "prompts and texts by language"
        constraints = [
            models.UniqueConstraint(fields=["settings", "language"], name="blending_messages_one_per_language")
        ]

    def __str__(self):
        return language_name(self.language)

    def clean(self):
        if not self.consent_prompt and not self.consent_prompt_audio:
            raise ValidationError({"consent_prompt": "Write the consent prompt or upload a recording."})


class PresetMessage(models.Model):
    """A message agents can send during an in-call SMS session in one click (SPEC C7)."""

    language = models.CharField(max_length=8, choices=LANGUAGE_CHOICES, default="en")
    label = models.CharField(max_length=80, help_text="What the agent sees in the list.")
    text = models.TextField(
        max_length=MAX_IN_CALL_MESSAGE_CHARS,
        help_text="Over 160 characters the message costs several SMS segments.",
    )

    class Meta:
        ordering = ["language", "label"]
        constraints = [
            models.UniqueConstraint(fields=["language", "label"], name="preset_message_unique_label")
        ]

    def __str__(self):
        return f"{self.label} ({self.language})"


class OperationSettings(SingletonModel):
    """CRM tickets for abandoned calls and app links (SPEC C8): one row."""

    abandoned_call_ticket = models.BooleanField(
        "create a CRM ticket for abandoned calls", default=False
    )
    abandoned_ticket_only_with_sms = models.BooleanField(
        "only when SMS data was received",
        default=True,
        help_text="Create the ticket only if the caller texted during the wait.",
    )
    app_links_enabled = models.BooleanField(
        "send SMS to download/launch the app",
        default=False,
        help_text="Agents can text the caller a link to download or open the company's app.",
    )
    ios_app_store_url = models.URLField("iOS App Store URL", blank=True)
    ios_open_url = models.CharField(
        "iOS open URL", max_length=300, blank=True, help_text="A universal link or custom scheme."
    )
    google_play_url = models.URLField("Google Play URL", blank=True)
    android_open_url = models.CharField("Android open URL", max_length=300, blank=True)

    class Meta:
        verbose_name = "operation settings"
        verbose_name_plural = "operation settings"

    def __str__(self):
        return "Operation settings"

    def clean(self):
        if self.app_links_enabled and not (self.ios_app_store_url or self.google_play_url):
            raise ValidationError(
                {"app_links_enabled": "Give at least the App Store or the Google Play URL to send app links."}
            )


class ChatShortcut(models.Model):
    """A canned message agents insert by typing /keyword (SPEC C6)."""

    category = models.CharField(max_length=60, blank=True, help_text="Optional, to group shortcuts.")
    keyword = models.SlugField(
        max_length=40, unique=True, help_text="Agents type / and this word to insert the text."
    )
    text = models.TextField(max_length=1600)
    language = models.CharField(max_length=8, choices=LANGUAGE_CHOICES, default="en")
    is_opt_in = models.BooleanField(
        "opt-in message",
        default=False,
        help_text="Suggested as the first message of every outbound chat.",
    )

    class Meta:
        ordering = ["category", "keyword"]

    def __str__(self):
        return f"/{self.keyword}"
