"""`manage.py seed_demo` (SPEC "Interfaces that stay stable", demo data): exactly the demo data,
and running it again changes nothing."""
from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core import serializers
from django.core.management import call_command
from django.db import connection

from portal.models import AgentProfile, ChatSettings, ChatShortcut, InCallSmsSettings, PresetMessage, Team
from queues.models import AnswerType, Queue
from sms.models import NumberDirection, NumberRole, NumberUsage, PhoneNumber, QueueNumber

PROJECT_APPS = ["portal", "queues", "sms", "chats"]


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def stored_models(models):
    """The models that have a table (a model whose migration is still to come holds nothing)."""
    tables = set(connection.introspection.table_names())
    return [model for model in models if model._meta.db_table in tables]


def every_model_count() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in stored_models(apps.get_models())}


def project_dump() -> str:
    objects = []
    for label in PROJECT_APPS:
        for model in stored_models(apps.get_app_config(label).get_models()):
            objects.extend(model._default_manager.order_by("pk"))
    return serializers.serialize("json", objects, indent=1)


def users_dump() -> str:
    return serializers.serialize("json", get_user_model().objects.order_by("pk"))


@pytest.fixture
def seeded(db):
    return seed()


@pytest.mark.django_db
def test_the_first_run_says_what_it_created(seeded):
    assert seeded.startswith("Demo data created: ")
    assert "admin" in seeded and "alice" in seeded and "queue Support" in seeded


def test_admin_is_a_superuser_who_can_log_in(seeded, client):
    admin = get_user_model().objects.get(username="admin")

    assert admin.is_superuser and admin.is_staff and admin.is_active
    assert client.login(username="admin", password="admin")
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("username, display_name", [("alice", "Alice"), ("bob", "Bob")])
def test_the_demo_agents_have_profiles_and_the_password_demo(seeded, client, username, display_name):
    user = get_user_model().objects.get(username=username)

    assert user.check_password("demo")
    assert not user.is_superuser
    assert user.agent.display_name == display_name
    assert client.login(username=username, password="demo")


def test_sam_is_a_supervisor_not_an_agent_and_lands_on_the_monitor(seeded, client):
    sam = get_user_model().objects.get(username="sam")

    assert sam.has_perm("portal.view_monitoring") and not sam.is_staff
    assert not hasattr(sam, "agent")
    assert client.login(username="sam", password="demo")
    assert client.get("/")["Location"] == "/monitor/"


def test_team_tier_1_holds_alice_and_bob(seeded):
    team = Team.objects.get()

    assert team.name == "Tier 1"
    assert sorted(team.agents.values_list("user__username", flat=True)) == ["alice", "bob"]
    assert AgentProfile.objects.count() == 2


def test_the_incoming_number_leads_to_the_support_menu(seeded):
    number = PhoneNumber.objects.get(number="+15550100001")

    assert number.is_verified
    assert number.usage == NumberUsage.SMS_CHAT
    assert number.direction == NumberDirection.INCOMING
    link = QueueNumber.objects.get(number=number)
    assert link.role == NumberRole.INCOMING
    assert link.queue.name == "Support"
    assert link.queue.parent is None


def test_support_is_a_menu_of_billing_and_tech(seeded):
    support = Queue.objects.get(name="Support", parent=None)

    options = list(Queue.objects.menu_options(support))

    assert [(q.name, q.position, q.menu_keywords) for q in options] == [
        ("Billing", 1, "BILLING"),
        ("Tech", 2, "TECH"),
    ]
    assert Queue.objects.count() == 3


@pytest.mark.parametrize("name", ["Billing", "Tech"])
def test_each_leaf_auto_answers_with_alice_and_bob_around_the_clock(seeded, name):
    leaf = Queue.objects.get(name=name)

    assert not leaf.children.exists()
    assert leaf.answer_type == AnswerType.AUTO
    assert leaf.always_open
    assert leaf.sms_enabled and not leaf.hidden
    assert sorted(leaf.agents.values_list("user__username", flat=True)) == ["alice", "bob"]
    assert leaf.messages.filter(language="en").exists()


def test_the_outbound_only_number_is_shared_by_both_leaves(seeded):
    number = PhoneNumber.objects.get(number="+15550100002")

    assert number.is_verified
    assert number.direction == NumberDirection.OUTBOUND_ONLY
    links = QueueNumber.objects.filter(number=number)
    assert sorted((link.queue.name, link.role) for link in links) == [
        ("Billing", NumberRole.OUTBOUND),
        ("Tech", NumberRole.OUTBOUND),
    ]
    assert PhoneNumber.objects.count() == 4  # and the in-call SMS number, and the unverified one


def test_one_number_is_left_unverified_and_no_queue_may_take_it(seeded, admin_client):
    """Issue 14, item 10: the "unverified number" guard can be seen in the demo."""
    from django.core.exceptions import ValidationError

    number = PhoneNumber.objects.get(number="+15550100004")
    assert not number.is_verified and not QueueNumber.objects.filter(number=number).exists()
    link = QueueNumber(queue=Queue.objects.get(name="Billing"), number=number, role=NumberRole.OUTBOUND)
    with pytest.raises(ValidationError, match="verified"):
        link.full_clean()


def test_the_demo_shows_the_closing_sms_the_after_session_response_and_the_survey(seeded):
    in_call = InCallSmsSettings.load()
    assert in_call.closing_sms_enabled and in_call.after_session_auto_response_enabled
    for name in ("Billing", "Tech"):
        assert Queue.objects.get(name=name).messages.get(language="en").csat_survey.startswith("How did we do?")


def test_the_in_call_sms_number_is_never_on_a_queue(seeded):
    number = PhoneNumber.objects.get(number="+15550100003")

    assert number.is_verified and number.usage == NumberUsage.IN_CALL
    assert not QueueNumber.objects.filter(number=number).exists()


@pytest.mark.parametrize("name", ["Billing", "Tech"])
def test_the_demo_leaves_expire_unanswered_chats_soon_and_take_blended_sms(seeded, name):
    leaf = Queue.objects.get(name=name)

    assert leaf.unanswered_expiration_minutes == 2  # short enough to watch a chat expire
    assert leaf.wait_time_sms_enabled and leaf.in_call_sms_enabled


def test_wait_time_and_in_call_sms_are_on(seeded):
    from portal.models import InCallSmsSettings

    in_call = InCallSmsSettings.load()

    assert in_call.in_call_sms_enabled and in_call.wait_time_sms_enabled
    assert in_call.announcement_interval_seconds == 10
    assert in_call.messages.filter(language="en").exists()


def test_an_admins_own_expiration_value_is_kept(db):
    seed()
    Queue.objects.filter(name="Billing").update(unanswered_expiration_minutes=45)

    seed()

    assert Queue.objects.get(name="Billing").unanswered_expiration_minutes == 45


def test_the_demo_number_assignments_pass_the_admin_rules(seeded):
    for link in QueueNumber.objects.all():
        link.full_clean()
    for number in PhoneNumber.objects.all():
        number.full_clean()
    for queue in Queue.objects.all():
        queue.full_clean()


def test_the_optin_shortcut_is_flagged_opt_in(seeded):
    shortcut = ChatShortcut.objects.get(keyword="optin")

    assert shortcut.is_opt_in
    assert "STOP" in shortcut.text


def test_preset_messages_exist(seeded):
    presets = PresetMessage.objects.all()

    assert presets.count() >= 2
    assert all(preset.text and len(preset.text) <= 918 for preset in presets)


def test_sms_chat_and_outbound_sms_are_on(seeded):
    chat_settings = ChatSettings.load()

    assert chat_settings.sms_chat_enabled
    assert chat_settings.outbound_sms_enabled


def test_sms_chat_and_outbound_sms_are_switched_back_on(db):
    # Given a portal where an admin switched outbound SMS off
    ChatSettings.objects.create(outbound_sms_enabled=False)

    seed()

    assert ChatSettings.load().outbound_sms_enabled


def test_running_it_again_changes_nothing(seeded):
    # Given the demo data
    counts, dump, users = every_model_count(), project_dump(), users_dump()

    # When seed_demo runs a second time
    output = seed()

    # Then it says so, and every table and every project row is as it was
    assert "nothing changed" in output
    assert every_model_count() == counts
    assert project_dump() == dump
    assert users_dump() == users


def test_it_leaves_an_existing_admin_alone(db):
    # Given an admin whose password was changed
    get_user_model().objects.create_superuser("admin", "ops@example.com", "changed")

    seed()

    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password("changed")
    assert admin.email == "ops@example.com"


def test_the_demo_holds_one_text_for_quiet_hours_and_says_why(seeded, admin_client):
    from sms.models import MessageStatus, OutboundMessage

    held = OutboundMessage.objects.get(to_number="+15557650999")

    assert held.status == MessageStatus.HELD and held.next_attempt_at > held.created_at
    assert held.error_message.startswith("Quiet hours in ") and "(the contact's zone; 08:00–21:00): goes out at" in held.error_message
    page = admin_client.get("/admin/sms/outboundmessage/", {"status__exact": "held"}).content.decode()
    assert "+15557650999" in page and "Quiet hours in " in page
