"""Small builders of model instances with sensible defaults, and helpers to submit admin forms
the way a browser does, shared by the tests."""
import html
from html.parser import HTMLParser

from django.contrib.auth import get_user_model
from django.utils import timezone

from portal.models import AgentProfile, Team
from queues.models import Queue
from sms.models import NumberDirection, NumberRole, NumberUsage, PhoneNumber, QueueNumber, Verification


def make_number(number: str = "+15550000001", verified: bool = True, **kw) -> PhoneNumber:
    """A portal number, verified by default (as if the Verify action had run)."""
    kw.setdefault("usage", NumberUsage.SMS_CHAT)
    kw.setdefault("direction", NumberDirection.INCOMING)
    if verified:
        kw.setdefault("verification", Verification.VERIFIED)
        kw.setdefault("verified_at", timezone.now())
    else:
        kw.setdefault("verification", Verification.UNVERIFIED)
    return PhoneNumber.objects.create(number=number, **kw)


def make_queue(name: str = "Support", parent: Queue | None = None, **kw) -> Queue:
    return Queue.objects.create(name=name, parent=parent, **kw)


def make_agent(username: str = "agent", **kw) -> AgentProfile:
    """A Django user (password 'demo') with its agent profile."""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "demo")
    kw.setdefault("display_name", username.capitalize())
    return AgentProfile.objects.create(user=user, **kw)


def make_supervisor(username: str = "sam"):
    """A Django user (password 'demo') in the Supervisors group: portal.view_monitoring (SPEC M)."""
    from django.contrib.auth.models import Group

    from portal.roles import SUPERVISORS_GROUP

    user = get_user_model().objects.create_user(username, f"{username}@example.com", "demo")
    user.groups.add(Group.objects.get(name=SUPERVISORS_GROUP))
    return user


def make_team(name: str = "Tier 1", agents=(), **kw) -> Team:
    team = Team.objects.create(name=name, **kw)
    if agents:
        team.agents.add(*agents)
    return team


def link_number(queue: Queue, number: PhoneNumber, role: str = NumberRole.INCOMING) -> QueueNumber:
    """Assign a number to a queue directly, without validation (the validated path is the admin)."""
    return QueueNumber.objects.create(queue=queue, number=number, role=role)


# --- Admin forms as a browser submits them -----------------------------------------------------

SKIPPED_INPUT_TYPES = {"submit", "button", "image", "reset", "file"}


class _AdminFormParser(HTMLParser):
    """Collects the values a browser would submit for the form with the given id."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.in_form = False
        self.found = False
        self.data: dict[str, list[str]] = {}
        self._select: dict | None = None
        self._option: dict | None = None
        self._textarea: dict | None = None

    def _add(self, name, value):
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.in_form = attrs.get("id") == self.form_id
            self.found = self.found or self.in_form
            return
        if not self.in_form or "disabled" in attrs:
            return
        name = attrs.get("name")
        if tag == "input" and name:
            kind = (attrs.get("type") or "text").lower()
            if kind in SKIPPED_INPUT_TYPES:
                return
            if kind in {"checkbox", "radio"}:
                if "checked" in attrs:
                    self._add(name, attrs.get("value") or "on")
                return
            self._add(name, attrs.get("value") or "")
        elif tag == "select" and name:
            self._select = {"name": name, "multiple": "multiple" in attrs, "options": []}
        elif tag == "option" and self._select is not None:
            self._option = {"value": attrs.get("value"), "selected": "selected" in attrs, "text": ""}
            self._select["options"].append(self._option)
        elif tag == "textarea" and name:
            self._textarea = {"name": name, "text": ""}

    def handle_data(self, data):
        if self._option is not None:
            self._option["text"] += data
        if self._textarea is not None:
            self._textarea["text"] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False
        elif tag == "option":
            self._option = None
        elif tag == "select" and self._select is not None:
            options = self._select["options"]
            chosen = [o for o in options if o["selected"]]
            if not chosen and not self._select["multiple"] and options:
                chosen = options[:1]
            for option in chosen:
                value = option["value"] if option["value"] is not None else option["text"]
                self._add(self._select["name"], value)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            text = self._textarea["text"]
            # Browsers drop the newline right after <textarea>, as Django's widget writes one.
            if text.startswith("\r\n"):
                text = text[2:]
            elif text.startswith("\n"):
                text = text[1:]
            self._add(self._textarea["name"], text)
            self._textarea = None


def admin_form_data(response) -> dict[str, list[str] | str]:
    """What submitting the admin add/change page in `response` unchanged would POST: every field of
    the main form and of its inlines, with the inline management forms."""
    opts = response.context["opts"]
    parser = _AdminFormParser(f"{opts.model_name}_form")
    parser.feed(response.content.decode())
    assert parser.found, f"no {opts.model_name}_form on the page"
    return dict(parser.data)


def admin_page_data(client, url: str, **fields) -> dict[str, list[str] | str]:
    """Open the admin add/change page at `url` (it must answer 200) and return what submitting it
    would POST, with `fields` changed as the admin would type them."""
    response = client.get(url)
    assert response.status_code == 200
    data = admin_form_data(response)
    data.update(fields)
    return data


def inline_prefix(response, model) -> str:
    """The form prefix of the inline editing `model` on the admin page in `response`."""
    for inline in response.context["inline_admin_formsets"]:
        if inline.formset.model is model:
            return inline.formset.prefix
    raise AssertionError(f"no inline for {model.__name__} on the page")


def add_inline_row(data: dict, prefix: str, **fields) -> dict:
    """Append one filled row to an inline formset in POST data, as 'Add another' does."""
    index = int(_single(data[f"{prefix}-TOTAL_FORMS"]))
    for name, value in fields.items():
        data[f"{prefix}-{index}-{name}"] = "" if value is None else str(value)
    data[f"{prefix}-TOTAL_FORMS"] = str(index + 1)
    return data


def _single(value):
    return value[0] if isinstance(value, list) else value


def page_text(response) -> str:
    """The response body with HTML entities decoded, for looking up readable messages."""
    return html.unescape(response.content.decode())


# --- Chats in bulk and agents ready to take them (tests/chats/test_concurrency.py) -------------


def make_available_agent(username: str, queues=(), **kw) -> AgentProfile:
    """An agent who is available with the adapter open (connection_count 1), assigned to `queues`."""
    kw.setdefault("status", "available")
    kw.setdefault("connection_count", 1)
    agent = make_agent(username, **kw)
    if queues:
        agent.queues.add(*queues)
    return agent


def make_queued_chats(queue: Queue, number: PhoneNumber, count: int, *, first_consumer: int = 15557000000):
    """`count` chats already waiting in `queue`, oldest first, each from its own consumer number
    (one active chat per consumer and portal number), created in one bulk insert."""
    from chats.models import Chat, ChatStatus

    start = timezone.now() - timezone.timedelta(minutes=count)
    chats = [
        Chat(
            consumer_number=f"+{first_consumer + index}",
            portal_number=number,
            queue=queue,
            status=ChatStatus.QUEUED,
            queued_at=start + timezone.timedelta(seconds=index),
            language_chosen=True,
        )
        for index in range(count)
    ]
    Chat.objects.bulk_create(chats)
    return list(Chat.objects.filter(queue=queue, status=ChatStatus.QUEUED).order_by("queued_at", "pk"))


# --- Conversations (tests/chats) ---------------------------------------------------------------


def make_queue_messages(queue: Queue, language: str = "en", **texts):
    """The queue's system messages in one language; unnamed kinds keep the model defaults."""
    from queues.models import QueueMessages

    return QueueMessages.objects.create(queue=queue, language=language, **texts)


def make_opening_hours(queue: Queue, weekday: int, opens_at, closes_at):
    from queues.models import OpeningHours

    return OpeningHours.objects.create(queue=queue, weekday=weekday, opens_at=opens_at, closes_at=closes_at)


def make_office_hours(queue: Queue, time_zone: str = "America/New_York") -> Queue:
    """The queue opens Monday to Friday, 09:00–17:00 in `time_zone`, and is closed otherwise."""
    import datetime as dt

    queue.always_open = False
    queue.time_zone = time_zone
    queue.save()
    for weekday in range(5):
        make_opening_hours(queue, weekday, dt.time(9, 0), dt.time(17, 0))
    return queue


def make_menu_command(word: str, action: str):
    from queues.models import MenuCommand

    return MenuCommand.objects.create(word=word, action=action)


def make_crm_contact(phone_number: str, name: str = "", **kw):
    from portal.models import CrmContact

    return CrmContact.objects.create(phone_number=phone_number, name=name, **kw)


def make_transcript(chat, count: int, *, author: str = "consumer", body: str = "earlier message {n}") -> None:
    """`count` earlier transcript entries in one bulk insert (for query-count tests)."""
    from chats.models import Message

    Message.objects.bulk_create(
        [Message(chat=chat, author=author, body=body.format(n=n)) for n in range(count)], batch_size=500
    )


# --- Outbound SMS (tests/sms) ------------------------------------------------------------------


def make_sending_number(number: str = "+15550100001", *, messages_per_second: int = 1000, **kw) -> PhoneNumber:
    """A verified number to send from, with a per-second limit high enough that the sending
    limiter never sleeps. Its primary key is random: the rate limiter keys on it, and Redis keeps
    those counters across test runs and between suites running side by side."""
    import secrets

    kw.setdefault("pk", 10**9 + secrets.randbelow(10**15))
    return make_number(number, messages_per_second=messages_per_second, **kw)


def update_chat_settings(**fields):
    """Change the chat settings singleton (SPEC C1) and return it."""
    from portal.models import ChatSettings

    chat_settings = ChatSettings.load()
    for name, value in fields.items():
        setattr(chat_settings, name, value)
    chat_settings.save()
    return chat_settings
