"""The queue tree (SPEC C5), its messages and hours, and the BACK/EXIT command words (C2)."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Upper

from portal.keywords import PROTECTED_WORDS, split_keywords
from portal.languages import LANGUAGE_CHOICES, LanguageListField, language_name
from portal.models import MAX_DISMISSAL_MINUTES, AgentProfile, ChatSettings, Team
from portal.regions import TIME_ZONE_CHOICES
from portal.singletons import cached



class AnswerType(models.TextChoices):
    AUTO = "auto", "Auto answer"
    MANUAL = "manual", "Manual answer"


class MenuAction(models.TextChoices):
    BACK = "back", "Back: return to the previous menu"
    EXIT = "exit", "Exit: end the chat"
    WHERE = "where", "Where: the consumer's place in the queue and the estimated wait"


class QueueQuerySet(models.QuerySet):
    def roots(self):
        return self.filter(parent__isnull=True)

    def full_names(self) -> dict[int, str]:
        """Every queue's name as `str(queue)` writes it ("Support › Billing"), by id, from one
        query: lists of many queues name them without a query per parent."""
        rows = {pk: (name, parent_id) for pk, name, parent_id in self.values_list("pk", "name", "parent_id")}

        def chain(pk):
            names, seen = [], set()
            while pk in rows and pk not in seen:
                seen.add(pk)
                names.append(rows[pk][0])
                pk = rows[pk][1]
            return " › ".join(reversed(names))

        return {pk: chain(pk) for pk in rows}

    def menu_options(self, parent):
        """The children a consumer can pick from, in menu order (hidden queues left out)."""
        return self.filter(parent=parent, sms_enabled=True, hidden=False).order_by("position", "name")


def override_field(verbose_name: str, help_text: str = "", max_value: int | None = None):
    validators = [MinValueValidator(1)]
    if max_value:
        validators.append(MaxValueValidator(max_value))
    return models.PositiveIntegerField(
        verbose_name,
        null=True,
        blank=True,
        validators=validators,
        help_text=help_text or "Minutes. Empty: use the global chat setting.",
    )


class Queue(models.Model):
    """A node of the menu tree. A queue with children is a menu; a leaf is where chats wait."""

    name = models.CharField(max_length=80)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="Empty for a top-level queue. A queue with children becomes a menu.",
    )
    position = models.PositiveSmallIntegerField(
        default=1,
        help_text="Order in the parent's menu; the consumer can reply with the option's number.",
    )
    menu_keywords = models.CharField(
        max_length=200,
        blank=True,
        help_text="Comma-separated words a consumer may reply with instead of the number, "
        "e.g. BILLING, INVOICE. Case does not matter.",
    )
    sms_enabled = models.BooleanField("SMS on", default=True)
    hidden = models.BooleanField(
        default=False,
        help_text="Not listed in menus; still reachable through its own incoming number, a "
        "transfer or an outbound chat.",
    )
    languages = LanguageListField(help_text="Empty: every enabled language.")
    answer_type = models.CharField(
        max_length=10,
        choices=AnswerType.choices,
        default=AnswerType.AUTO,
        help_text="Auto answer assigns a chat at once; manual answer offers it and the first "
        "agent to accept gets it.",
    )
    time_zone = models.CharField(max_length=64, choices=TIME_ZONE_CHOICES, default="UTC")
    always_open = models.BooleanField(
        "open around the clock",
        default=True,
        help_text="Uncheck to use the weekly hours and closed dates below.",
    )
    agents = models.ManyToManyField(AgentProfile, blank=True, related_name="queues")
    teams = models.ManyToManyField(Team, blank=True, related_name="queues")

    selecting_expiration_minutes = override_field("queue-selecting expiration")
    unanswered_expiration_minutes = override_field("unanswered expiration (open hours)")
    after_hours_expiration_minutes = override_field("unanswered expiration (after hours)")
    chat_timeout_minutes = override_field("chat timeout")
    outbound_inactivity_minutes = override_field("outbound chat inactivity timeout")
    dismissal_minutes = override_field(
        "dismissal timer",
        "Minutes, 1 to 10,080, never longer than the chat timeout. Empty: the global value.",
        MAX_DISMISSAL_MINUTES,
    )

    wait_time_sms_enabled = models.BooleanField("wait-time SMS on", default=False)
    in_call_sms_enabled = models.BooleanField("in-call SMS on", default=False)
    announcement_interval_seconds = models.PositiveIntegerField(
        "caller announcement interval (seconds)",
        null=True,
        blank=True,
        validators=[MinValueValidator(10)],
        help_text="Empty: the in-call SMS settings' value.",
    )
    consent_play_limit = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Empty: the global value."
    )
    min_estimated_wait_seconds = models.PositiveIntegerField(null=True, blank=True)
    max_estimated_wait_seconds = models.PositiveIntegerField(null=True, blank=True)
    deflection_enabled = models.BooleanField(
        "pre-session SMS deflection on",
        default=False,
        help_text="A caller waiting in this IVR queue is offered to continue by text (press 3): the call ends "
        "and an SMS chat starts, already queued with the caller's place.",
    )
    deflection_min_wait_seconds = models.PositiveIntegerField(
        "offer deflection from an estimated wait of (seconds)",
        default=120,
        help_text="Not offered when the estimated wait is shorter.",
    )
    deflection_queue = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        limit_choices_to={"children__isnull": True},
        help_text="The SMS queue a deflected caller's chat waits in. Empty: this queue.",
    )

    position_update_minutes = models.PositiveIntegerField(
        "place-in-queue update every (minutes)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="While a consumer waits here, text them their place and the estimated wait this often "
        "(the 'place in queue' text). Empty: no updates. An API-initiated chat gets none in quiet hours.",
    )
    position_update_limit = models.PositiveSmallIntegerField(
        "place-in-queue updates at most",
        default=3,
        validators=[MinValueValidator(1)],
        help_text="How many updates one wait gets at most.",
    )

    # Reporting (SPEC M): what the service level and the abandon rate are measured against.
    service_level_seconds = models.PositiveIntegerField(
        "service-level target (seconds)",
        default=60,
        validators=[MinValueValidator(1)],
        help_text="A chat assigned within this many seconds of queueing counts as within the service level.",
    )
    short_abandon_seconds = models.PositiveIntegerField(
        "short abandon (seconds)",
        default=10,
        help_text="A chat that leaves the queue unassigned within this many seconds is a short abandon: "
        "counted, but in no rate.",
    )

    objects = QueueQuerySet.as_manager()

    class Meta:
        ordering = ["position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["parent", "name"], name="queue_unique_name_in_parent"),
        ]

    def __str__(self):
        return " › ".join(q.name for q in self.ancestors_and_self())

    def ancestors_and_self(self) -> list["Queue"]:
        chain, node, seen = [], self, set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            chain.append(node)
            node = node.parent
        return list(reversed(chain))

    @property
    def depth(self) -> int:
        return len(self.ancestors_and_self()) - 1

    @property
    def keyword_list(self) -> list[str]:
        return split_keywords(self.menu_keywords)

    def timer_minutes(self, name: str, chat_settings: ChatSettings | None = None) -> int:
        """A C3 value: this queue's override, else the global setting."""
        value = getattr(self, name)
        if value is not None:
            return value
        chat_settings = chat_settings or ChatSettings.load()
        return getattr(chat_settings, name)

    def _clash_with_a_number_word(self) -> str:
        """A BACK/EXIT word written as a number would hide this queue's menu option (or one it
        pushes along) from consumers who reply with that number."""
        if self.parent_id is None or not self.sms_enabled or self.hidden:
            return ""
        words = [w for w in MenuCommand.objects.values_list("word", flat=True) if w.isdigit()]
        if not words:
            return ""
        options = [q for q in Queue.objects.menu_options(self.parent) if q.pk != self.pk] + [self]
        options.sort(key=lambda q: (q.position, q.name))
        for word in sorted(words, key=int):
            if 1 <= int(word) <= len(options):
                return (
                    f"With this queue, reply {word} picks option {int(word)} ({options[int(word) - 1].name}) of the menu "
                    f"{self.parent}, but {word} is a BACK/EXIT command word. Change the word under Queues › BACK/EXIT "
                    "command words first."
                )
        return ""

    def clean(self):
        errors: dict[str, str] = {}
        self.menu_keywords = ", ".join(self.keyword_list)
        protected = [word for word in self.keyword_list if word in PROTECTED_WORDS]
        if protected:
            errors["menu_keywords"] = (
                f"{', '.join(protected)} is a protected SMS command and cannot be a menu keyword."
            )
        else:
            taken = MenuCommand.objects.filter(word__in=self.keyword_list).values_list("word", flat=True)
            if taken:
                errors["menu_keywords"] = (
                    f"{', '.join(taken)} is already a BACK/EXIT command word and cannot be a menu keyword."
                )
        clash = self._clash_with_a_number_word()
        if clash:
            errors["position"] = clash
        if self.parent_id and self.pk:
            node = self.parent
            while node is not None:
                if node.pk == self.pk:
                    errors["parent"] = "A queue cannot sit under itself or one of its own sub-queues."
                    break
                node = node.parent
        chat_settings = ChatSettings.load()
        overrides_apply = self.dismissal_minutes is not None or (
            self.chat_timeout_minutes is not None and chat_settings.dismissal_enabled
        )
        if overrides_apply:
            dismissal = self.timer_minutes("dismissal_minutes", chat_settings)
            timeout = self.timer_minutes("chat_timeout_minutes", chat_settings)
            if dismissal > timeout:
                errors["dismissal_minutes"] = (
                    f"The dismissal timer ({dismissal} min) cannot be longer than the chat timeout "
                    f"({timeout} min)."
                )
        low, high = self.min_estimated_wait_seconds, self.max_estimated_wait_seconds
        if low is not None and high is not None and low > high:
            errors["max_estimated_wait_seconds"] = "The maximum estimated wait must be at least the minimum."
        if errors:
            raise ValidationError(errors)


class QueueBlendingMessages(models.Model):
    """A queue's own wait-time and in-call SMS prompts and texts in one language (seed 001: "Individual
    queue settings/messages will override general messages and settings"). Each empty field
    uses the in-call SMS settings' text in that language (`chats.calls.rules.messages_for`)."""

    GENERAL = "Empty: the in-call SMS settings' text."

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="blending_messages")
    language = models.CharField(max_length=8, choices=LANGUAGE_CHOICES, default="en")
    consent_prompt = models.TextField(
        blank=True, help_text="Read to the caller; it must offer 'press 1' to accept and 'press 2' to decline. " + GENERAL
    )
    sms_sent_prompt = models.TextField("'SMS sent' prompt", blank=True, help_text=GENERAL)
    incorrect_selection_prompt = models.TextField(blank=True, help_text=GENERAL)
    wait_time_sms_text = models.TextField("wait-time SMS", blank=True, help_text=GENERAL)
    closing_sms = models.TextField(blank=True, help_text=GENERAL)
    after_session_auto_response = models.TextField(blank=True, help_text=GENERAL)
    deflection_prompt = models.TextField(
        "deflection offer",
        blank=True,
        help_text="Read to a waiting caller when deflection is on (SPEC B4); it must say 'press 3'. Empty: "
        "'To continue by text message instead, press 3. We will keep your place in line.'",
    )
    deflection_goodbye = models.TextField(
        blank=True, help_text="Read before the call ends, when the caller pressed 3. Empty: 'We are texting you now. Goodbye.'"
    )

    TEXT_FIELDS = (
        "consent_prompt", "sms_sent_prompt", "incorrect_selection_prompt", "wait_time_sms_text", "closing_sms",
        "after_session_auto_response",
    )

    class Meta:
        verbose_name = "in-call SMS text of this queue"
        verbose_name_plural = "in-call SMS texts of this queue (override the in-call SMS settings, by language)"
        constraints = [
            models.UniqueConstraint(fields=["queue", "language"], name="queue_blending_messages_one_per_language")
        ]

    def __str__(self):
        return f"{self.queue}: {self.get_language_display()}"


# The rows of the queue admin's "agents" and "teams" inlines (Django's own through models) say
# who is on which queue rather than "Queue_agents object (1)".
Queue.agents.through.__str__ = lambda row: f"{row.agentprofile} on {row.queue}"
Queue.teams.through.__str__ = lambda row: f"{row.team} on {row.queue}"


class QueueMessages(models.Model):
    """What the portal texts a consumer in this queue, in one language (SPEC C5)."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="messages")
    language = models.CharField(max_length=8, choices=LANGUAGE_CHOICES, default="en")
    greeting = models.TextField(blank=True, help_text="Sent when a conversation starts here.")
    menu_prompt = models.TextField(
        blank=True,
        default="Reply",
        help_text="Starts the menu text, which continues with the options: "
        "'Reply 1 for Billing, 2 for Tech.'",
    )
    menu_option = models.CharField(
        max_length=60,
        default="{number} for {name}",
        help_text="How each option is written in the menu; {number} and {name} are filled in.",
    )
    invalid_choice = models.TextField(
        blank=True, default="Sorry, that is not one of the options."
    )
    queued = models.TextField(
        blank=True, default="Thanks! An agent will be with you shortly."
    )
    agent_joined = models.TextField(
        blank=True, default="{agent} has joined the chat.", help_text="{agent} becomes the agent's name."
    )
    after_hours = models.TextField(
        blank=True,
        default="We are closed right now. We will answer when we open again.",
        help_text="Sent instead of the queued text outside the hours of operation.",
    )
    expired = models.TextField(
        blank=True,
        default="This conversation has expired. Text us again any time.",
        help_text="Sent when a timer ends the chat. Empty: nothing is sent.",
    )
    chat_ended = models.TextField(blank=True, default="This conversation has ended. Thank you!")
    position_update = models.TextField(
        "place in queue",
        blank=True,
        default="You are number {position} in line. Estimated wait: {wait}.",
        help_text="Sent when a waiting consumer texts the WHERE word, and as the queue's periodic update. "
        "{position} and {wait} are filled in; they also work in the queued and after-hours texts.",
    )
    csat_survey = models.TextField(
        "CSAT survey",
        blank=True,
        help_text="Sent after an agent ends a chat, e.g. 'How did we do? Reply 1 (poor) to 5 (great).' "
        "A reply of 1 to 5 is the chat's score; the next text is kept as feedback. Empty: no survey.",
    )
    csat_thanks = models.TextField(
        "CSAT thanks",
        blank=True,
        default="Thank you! If you like, reply with a few words about it.",
        help_text="Sent when the consumer answers the survey with a score.",
    )

    class Meta:
        verbose_name = "system messages in one language"
        verbose_name_plural = "system messages by language"
        constraints = [
            models.UniqueConstraint(fields=["queue", "language"], name="queue_messages_one_per_language")
        ]

    def __str__(self):
        return f"{self.queue.name}: {language_name(self.language)}"


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class OpeningHours(models.Model):
    """One open span of a weekday, in the queue's time zone."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="opening_hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens_at = models.TimeField()
    closes_at = models.TimeField(help_text="00:00 means midnight at the end of the day.")

    class Meta:
        ordering = ["weekday", "opens_at"]
        verbose_name = "opening hours"
        verbose_name_plural = "opening hours"

    def __str__(self):
        return f"{self.get_weekday_display()} {self.opens_at:%H:%M}–{self.closes_at:%H:%M}"

    def clean(self):
        if self.opens_at and self.closes_at and self.closes_at.hour + self.closes_at.minute:
            if self.closes_at <= self.opens_at:
                raise ValidationError({"closes_at": "Closing time must be after opening time."})


class ClosedDate(models.Model):
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="closed_dates")
    date = models.DateField()
    note = models.CharField(max_length=80, blank=True, help_text="E.g. 'Christmas Day'.")

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["queue", "date"], name="closed_date_unique")]

    def __str__(self):
        return f"{self.date:%Y-%m-%d} {self.note}".strip()


class MenuCommandQuerySet(models.QuerySet):
    def matching(self, word: str):
        """The command whose word is `word` (a whole message as `normalise_word` leaves it), in
        whatever case it was stored."""
        return self.annotate(upper_word=Upper("word")).filter(upper_word=word)


class MenuCommand(models.Model):
    """A configurable navigation word (defaults BACK and EXIT, SPEC C2)."""

    word = models.CharField(
        max_length=30, unique=True, help_text="A whole message, any case, e.g. BACK or MENU."
    )
    action = models.CharField(max_length=10, choices=MenuAction.choices)

    objects = MenuCommandQuerySet.as_manager()

    class Meta:
        ordering = ["action", "word"]
        verbose_name = "BACK/EXIT command word"
        constraints = [
            models.UniqueConstraint(Upper("word"), name="menu_command_word_case_insensitive"),
        ]

    def __str__(self):
        return f"{self.word} ({self.get_action_display().split(':')[0]})"

    def clean(self):
        words = split_keywords(self.word.replace(",", " "))
        self.word = words[0] if words else ""
        if not self.word:
            raise ValidationError({"word": "Enter a word."})
        if self.word in PROTECTED_WORDS:
            raise ValidationError({"word": f"{self.word} is a protected SMS command and cannot be changed."})
        clashes = [
            queue.name
            for queue in Queue.objects.exclude(menu_keywords="")
            if self.word in queue.keyword_list
        ]
        if clashes:
            raise ValidationError(
                {"word": f"{self.word} is a menu keyword of queue {', '.join(clashes)}; pick another word."}
            )
        if self.word.isdigit():
            picked = option_numbered(int(self.word))
            if picked:
                raise ValidationError(
                    {"word": f"{self.word} is the number of {picked}: a consumer replying {self.word} could no longer "
                     "choose it. Pick another word."}
                )


def option_numbered(number: int) -> str:
    """The menu option a reply of `number` picks in some menu, described for a form error
    ("option 2 (Tech) of the menu Support"), or ''."""
    for menu in Queue.objects.filter(children__isnull=False).distinct().order_by("pk"):
        options = list(Queue.objects.menu_options(menu))
        if 1 <= number <= len(options):
            return f"option {number} ({options[number - 1].name}) of the menu {menu}"
    return ""


def queue_text(queue: Queue | None, kind: str, language: str, fallback_language: str = "en") -> str:
    """A queue's system message of `kind` (greeting, queued, …) for a chat in `language`. The
    order (SPEC C5): the queue's text in that language, else the nearest menu above it with
    texts in that language (a menu's texts are its options' defaults); else the same in the
    portal's default language; else whatever language the nearest queue with texts has. A
    blank text in a row that exists means "send nothing". The admin warns of each language that
    would fall back (`languages_without_texts`). Each queue's messages are read once per
    `cached_singletons()` block (a request, a sweep)."""
    for code in (language, fallback_language):
        for node in _queue_chain(queue):
            rows = _messages_by_language(node)
            if code in rows:
                return getattr(rows[code], kind, "") or ""
    for node in _queue_chain(queue):
        rows = _messages_by_language(node)
        if rows:
            return getattr(next(iter(rows.values())), kind, "") or ""
    return ""


def languages_without_texts(queue: Queue, languages) -> list[str]:
    """The languages among `languages` that neither the queue nor a menu above it has texts in:
    a chat in one of them gets the default language's texts (`queue_text`)."""
    return [code for code in languages if not any(code in _messages_by_language(node) for node in _queue_chain(queue))]


def _queue_chain(queue: Queue | None):
    """The queue, then its parent, and so on up the tree; lazily, so a parent is read only when
    the queue's own texts do not answer."""
    node, seen = queue, set()
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        yield node
        node = node.parent


def _messages_by_language(queue: Queue) -> dict[str, QueueMessages]:
    return cached((QueueMessages, queue.pk), lambda: {row.language: row for row in queue.messages.all()})
