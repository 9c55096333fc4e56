"""The demo data of SPEC "Interfaces that stay stable". Idempotent: what exists is left alone."""
import zoneinfo

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from chats.demo_history import seed_history
from portal.roles import ensure_supervisors_group
from portal.models import (
    CrmContact,
    AgentProfile,
    BlendingMessages,
    ChatSettings,
    ChatShortcut,
    InCallSmsSettings,
    PresetMessage,
    Team,
)
from queues.models import AnswerType, Queue, QueueMessages
from sms.models import NumberDirection, NumberRole, NumberUsage, PhoneNumber, QueueNumber, Verification
from sms.pipeline import queue_sms

INCOMING_NUMBER = "+15550100001"
OUTBOUND_NUMBER = "+15550100002"
UNVERIFIED_NUMBER = "+15550100004"
DEMO_SURVEY = "How did we do? Reply 1 (poor) to 5 (great)."
IN_CALL_NUMBER = "+15550100003"

# Short enough to watch in the demo: a chat waiting in Billing or Tech with no agent signed in
# expires after this many minutes (the global default is 60).
DEMO_UNANSWERED_MINUTES = 2
# How often a caller waiting in the demo's queues may hear the wait-time SMS consent prompt.
DEMO_ANNOUNCEMENT_SECONDS = 10

PRESETS = [
    ("Photo request", "Could you send us a photo of the item or the screen you see? Reply to this text with it."),
    ("Account number", "Please reply with your account number so we can look you up."),
    ("Thanks", "Thanks, we received your message. Your agent will use it on the call."),
]


class Command(BaseCommand):
    help = "Create the demo users, queues, numbers and shortcuts (safe to run again)."

    def handle(self, *args, **options):
        with transaction.atomic():
            created = seed_demo()
            history = seed_history(incoming=INCOMING_NUMBER, outbound=OUTBOUND_NUMBER)
            if history:
                created.append(f"a week of history for the reports ({history} chats)")
        if created:
            self.stdout.write(f"Demo data created: {', '.join(created)}.")
        else:
            self.stdout.write("Demo data already present; nothing changed.")


def seed_demo() -> list[str]:
    """The demo's data, created where missing (safe to run again); returns what was created."""
    created: list[str] = []
    _people(created)
    numbers = _numbers(created)
    _queues(numbers, created)
    _shortcuts_and_presets(created)
    _blending(created)
    _held_message(created)
    return created


# Zones five to eight hours apart: at any moment one of them is outside 08:00–21:00.
NIGHT_ZONES = ["Pacific/Kiritimati", "Asia/Tokyo", "Europe/Berlin", "America/New_York", "Pacific/Honolulu"]
NIGHT_OWL = "+15557650999"


def _held_message(created: list[str]) -> None:
    """A proactive text held for quiet hours (SPEC R1), so the admin's Outbound messages page
    shows one with when it goes out and why: to a CRM contact whose own zone is at night now."""
    if CrmContact.objects.filter(phone_number=NIGHT_OWL).exists():
        return
    now = timezone.now()
    zone = next(name for name in NIGHT_ZONES if not 8 <= now.astimezone(zoneinfo.ZoneInfo(name)).hour < 21)
    CrmContact.objects.create(name="Night Owl (demo)", phone_number=NIGHT_OWL, time_zone=zone)
    queue_sms(
        to=NIGHT_OWL, from_number=OUTBOUND_NUMBER, body="Your replacement card has shipped.", kind="api", proactive=True
    )
    created.append(f"a text held for quiet hours (to {NIGHT_OWL}, in {zone})")


def _note(created: list[str], was_created: bool, what: str) -> None:
    if was_created:
        created.append(what)


def _people(created: list[str]) -> None:
    """The admin, chat settings with SMS on, agents Alice and Bob in team Tier 1."""
    User = get_user_model()
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@example.com", "admin")
        created.append("admin")

    settings_row = ChatSettings.load()
    if not (settings_row.sms_chat_enabled and settings_row.outbound_sms_enabled):
        settings_row.sms_chat_enabled = True
        settings_row.outbound_sms_enabled = True
        settings_row.save()
        created.append("chat settings")

    agents = []
    for username, display in [("alice", "Alice"), ("bob", "Bob")]:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(username, f"{username}@example.com", "demo", first_name=display)
            created.append(username)
        agent, was_created = AgentProfile.objects.get_or_create(user=user, defaults={"display_name": display})
        _note(created, was_created, f"agent {display}")
        agents.append(agent)

    team, was_created = Team.objects.get_or_create(name="Tier 1")
    _note(created, was_created, "team Tier 1")
    if set(team.agents.all()) != set(agents):
        team.agents.add(*agents)
    _supervisor(created)


def _supervisor(created: list[str]) -> None:
    """Sam, who watches the queues and reads the reports (SPEC M): in the Supervisors group."""
    user = get_user_model().objects.filter(username="sam").first()
    if user is None:
        user = get_user_model().objects.create_user("sam", "sam@example.com", "demo", first_name="Sam")
        created.append("sam")
    group = ensure_supervisors_group()
    if not user.groups.filter(pk=group.pk).exists():
        user.groups.add(group)


def _numbers(created: list[str]) -> dict[str, PhoneNumber]:
    numbers = {}
    for number, label, direction in [
        (INCOMING_NUMBER, "Support line", NumberDirection.INCOMING),
        (OUTBOUND_NUMBER, "Outbound", NumberDirection.OUTBOUND_ONLY),
    ]:
        numbers[number], was_created = PhoneNumber.objects.get_or_create(
            number=number,
            defaults={
                "label": label,
                "direction": direction,
                "verification": Verification.VERIFIED,
                "verified_at": timezone.now(),
                "verification_note": "Demo number.",
                "messages_per_second": 10,
            },
        )
        _note(created, was_created, f"number {number}")
    # Left unverified, so the admin's guard can be seen: it cannot be put on a queue until verified.
    _, was_created = PhoneNumber.objects.get_or_create(
        number=UNVERIFIED_NUMBER,
        defaults={"label": "Not verified yet (demo)", "direction": NumberDirection.INCOMING, "messages_per_second": 1},
    )
    _note(created, was_created, f"unverified number {UNVERIFIED_NUMBER}")
    return numbers


def _queues(numbers: dict[str, PhoneNumber], created: list[str]) -> None:
    """Support, a menu on the incoming number, with its leaves Billing and Tech (Alice and Bob)."""
    agents = list(AgentProfile.objects.filter(user__username__in=["alice", "bob"]).order_by("user__username"))
    support, was_created = Queue.objects.get_or_create(name="Support", parent=None, defaults={"position": 1})
    _note(created, was_created, "queue Support")
    _messages(support, greeting="Welcome to Tern Support!")
    _link(support, numbers[INCOMING_NUMBER], NumberRole.INCOMING, created)

    for position, name, keyword in [(1, "Billing", "BILLING"), (2, "Tech", "TECH")]:
        leaf, was_created = Queue.objects.get_or_create(
            name=name,
            parent=support,
            defaults={"position": position, "menu_keywords": keyword, "answer_type": AnswerType.AUTO},
        )
        _note(created, was_created, f"queue {name}")
        if was_created:
            leaf.agents.add(*agents)
        _demo_queue_values(leaf, created)
        _messages(leaf, csat_survey=DEMO_SURVEY)
        _link(leaf, numbers[OUTBOUND_NUMBER], NumberRole.OUTBOUND, created)


def _shortcuts_and_presets(created: list[str]) -> None:
    _, was_created = ChatShortcut.objects.get_or_create(
        keyword="optin",
        defaults={
            "category": "Compliance",
            "is_opt_in": True,
            "text": "Hi, this is Tern Support. We'd like to text you about your request. "
            "Msg & data rates may apply. Reply STOP to opt out, HELP for help.",
        },
    )
    _note(created, was_created, "shortcut optin")
    for label, text in PRESETS:
        _, was_created = PresetMessage.objects.get_or_create(language="en", label=label, defaults={"text": text})
        _note(created, was_created, f"preset {label}")


def _demo_queue_values(leaf: Queue, created: list[str]) -> None:
    """A short unanswered expiration and wait-time / in-call SMS on, unless already set."""
    changed = []
    if leaf.unanswered_expiration_minutes is None:
        leaf.unanswered_expiration_minutes = DEMO_UNANSWERED_MINUTES
        changed.append("unanswered_expiration_minutes")
    for field in ("wait_time_sms_enabled", "in_call_sms_enabled"):
        if not getattr(leaf, field):
            setattr(leaf, field, True)
            changed.append(field)
    if changed:
        leaf.save(update_fields=changed)
        created.append(f"demo values of {leaf.name}")


def _blending(created: list[str]) -> None:
    """Wait-time and in-call SMS (SPEC B1, B2): an in-call SMS number and both features on, so
    the flow can be driven with signed voice webhooks or the JSON IVR API (README)."""
    _, was_created = PhoneNumber.objects.get_or_create(
        number=IN_CALL_NUMBER,
        defaults={
            "label": "In-call SMS",
            "usage": NumberUsage.IN_CALL,
            "direction": NumberDirection.INCOMING,
            "verification": Verification.VERIFIED,
            "verified_at": timezone.now(),
            "verification_note": "Demo number.",
            "messages_per_second": 10,
        },
    )
    if was_created:
        created.append(f"number {IN_CALL_NUMBER}")
    in_call = InCallSmsSettings.load()
    if not (in_call.in_call_sms_enabled and in_call.wait_time_sms_enabled):
        in_call.in_call_sms_enabled = True
        in_call.wait_time_sms_enabled = True
        in_call.announcement_interval_seconds = DEMO_ANNOUNCEMENT_SECONDS
        in_call.custom_messages_allowed = True
        in_call.save()
        created.append("in-call SMS settings")
    if not (in_call.closing_sms_enabled and in_call.after_session_auto_response_enabled):
        in_call.closing_sms_enabled = True
        in_call.after_session_auto_response_enabled = True
        in_call.save(update_fields=["closing_sms_enabled", "after_session_auto_response_enabled"])
        created.append("closing SMS and after-session auto response")
    _, was_created = BlendingMessages.objects.get_or_create(settings=in_call, language="en")
    if was_created:
        created.append("in-call SMS prompts")


def _messages(queue: Queue, **texts) -> None:
    QueueMessages.objects.get_or_create(queue=queue, language="en", defaults=texts)


def _link(queue: Queue, number: PhoneNumber, role: str, created: list[str]) -> None:
    _, was_created = QueueNumber.objects.get_or_create(queue=queue, number=number, role=role)
    if was_created:
        created.append(f"{number.number} {role} on {queue.name}")
