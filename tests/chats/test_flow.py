"""Whole conversations through the real, signed inbound webhook (SPEC S3, S5–S8): menu, queueing,
routing (auto and manual answer), the conversation itself, transfers and the end."""
import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.utils import timezone

from chats import assignment, services, timers
from chats.models import (
    Author,
    ChatEvent,
    ChatStatus,
    DisconnectedBy,
    FinishReason,
    Offer,
    Participant,
    ParticipantType,
    StartType,
    Transfer,
)
from chats.errors import ChatActionError
from chats.deadlines import DeadlineKind
from portal import presence
from portal.models import AgentProfile, AgentStatus
from queues.models import AnswerType
from sms.models import NumberRole, QueueNumber
from tests.chats.conftest import (
    AFTER_HOURS,
    BILLING_QUEUED,
    CHAT_ENDED,
    CONSUMER,
    GREETING,
    MENU,
    PORTAL,
    TECH_QUEUED,
    assigned_to,
    transcript,
)
from tests.factories import link_number, make_agent, make_number, make_office_hours, make_team

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def event_kinds(chat) -> list[str]:
    return list(ChatEvent.objects.filter(chat=chat).order_by("at", "pk").values_list("kind", flat=True))


# --- the whole conversation ----------------------------------------------------------------------


def test_a_whole_conversation_from_first_text_to_the_next_chat(
    phone, support, alice, bob, go_online, committed, chat_settings, twilio_settings
):
    fake = twilio_settings
    go_online(alice)

    # First text: opt-in, greeting, menu.
    phone.text("Hi")
    chat = phone.chat()
    assert chat.status == ChatStatus.SELECTING
    assert phone.new_texts() == [chat_settings.opt_in_message, GREETING, MENU]

    # The option's keyword, any case, with spaces around it: queued, then assigned at once.
    phone.text("  billing ")
    chat.refresh_from_db()
    assert phone.new_texts() == [BILLING_QUEUED, "Alice from Billing has joined the chat."]
    assert chat.status == ChatStatus.ASSIGNED
    assert chat.queue == support.billing
    assert chat.agent == alice
    assert chat.start_type == StartType.AUTO
    assert chat.queued_at is not None and chat.assigned_at >= chat.queued_at
    agents = Participant.objects.filter(chat=chat, type=ParticipantType.AGENT)
    assert [p.agent for p in agents] == [alice]

    # The agent's reply reaches Twilio from the portal number.
    message = committed(services.send_agent_message, agent=alice, chat=chat, body="Hello, how can I help?")
    assert fake.sent_messages[-1] == {"To": CONSUMER, "From": PORTAL, "Body": "Hello, how can I help?"}
    message.outbound.refresh_from_db()
    assert message.author == Author.AGENT and message.agent == alice
    assert message.outbound.provider_sid.startswith("SM")
    assert phone.new_texts() == ["Hello, how can I help?"]

    # The consumer's answer is kept in the transcript, and nothing is texted back.
    phone.text("My bill is wrong")
    assert phone.new_texts() == []

    # Transfer to another agent.
    go_online(bob)
    transfer = committed(services.transfer_chat, agent=alice, chat=chat, to_agent=bob)
    chat.refresh_from_db()
    assert transfer.status == Transfer.Status.ENDED and transfer.ended_at is not None
    assert chat.agent == bob and chat.status == ChatStatus.ASSIGNED
    assert Participant.objects.get(chat=chat, agent=alice).status == "transferred"
    assert event_kinds(chat)[-2:] == ["transfer.began", "transfer.ended"]

    # A transfer that fails leaves the chat where it was.
    presence.set_agent_status(agent=alice, status=AgentStatus.AWAY)
    failed = committed(services.transfer_chat, agent=bob, chat=chat, to_agent=alice)
    chat.refresh_from_db()
    assert failed.status == Transfer.Status.FAILED
    assert failed.reason == "Alice is not available."
    assert chat.agent == bob and chat.status == ChatStatus.ASSIGNED
    assert event_kinds(chat)[-2:] == ["transfer.began", "transfer.failed"]

    # Transfer to another queue: the longest-idle agent of Tech takes it.
    presence.set_agent_status(agent=alice, status=AgentStatus.AVAILABLE)
    to_queue = committed(services.transfer_chat, agent=bob, chat=chat, to_queue=support.tech)
    chat.refresh_from_db()
    assert to_queue.status == Transfer.Status.ENDED
    assert chat.queue.name == "Tech"
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == alice
    assert phone.new_texts() == ["Alice from Tech has joined the chat."]
    assert "transfer.ended" in event_kinds(chat)

    # The agent ends the chat.
    committed(services.end_chat, chat=chat, agent=alice, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED)
    chat.refresh_from_db()
    assert chat.status == ChatStatus.FINISHED
    assert chat.disconnected_by == DisconnectedBy.AGENT
    assert chat.finish_reason == FinishReason.AGENT_ENDED
    assert chat.ends_at is not None and chat.ends_at >= chat.assigned_at
    assert phone.new_texts() == [CHAT_ENDED]
    assert not Participant.objects.filter(chat=chat, ended_at__isnull=True).exists()

    # The transcript kept everything, in order, with its authors.
    assert transcript(chat) == [
        ("consumer", "Hi"),
        ("system", chat_settings.opt_in_message),
        ("system", GREETING),
        ("system", MENU),
        ("consumer", "  billing "),
        ("system", BILLING_QUEUED),
        ("system", "Alice from Billing has joined the chat."),
        ("agent", "Hello, how can I help?"),
        ("consumer", "My bill is wrong"),
        ("system", "Alice from Tech has joined the chat."),
        ("system", CHAT_ENDED),
    ]

    # The next text starts a new chat (no opt-in the second time).
    phone.text("Hello again")
    second = phone.chat()
    assert second.pk != chat.pk
    assert second.status == ChatStatus.SELECTING
    assert phone.new_texts() == [GREETING, MENU]


@pytest.mark.parametrize(
    "answer, queue_name",
    [("1", "Billing"), (" 2 ", "Tech"), ("BILLING", "Billing"), ("  Invoice  ", "Billing"), ("tEcH", "Tech")],
)
def test_an_option_is_picked_by_number_or_keyword(phone, answer, queue_name):
    phone.text("Hi")
    phone.new_texts()

    phone.text(answer)

    chat = phone.chat()
    assert chat.status == ChatStatus.QUEUED
    assert chat.queue.name == queue_name
    assert phone.new_texts() == [BILLING_QUEUED if queue_name == "Billing" else TECH_QUEUED]


def test_a_queued_chat_waits_until_an_agent_opens_the_adapter(phone, alice, go_online):
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    assert chat.status == ChatStatus.QUEUED and chat.agent is None
    assert chat.deadline_kind == DeadlineKind.UNANSWERED

    go_online(alice)

    chat.refresh_from_db()
    assert alice.status == AgentStatus.AVAILABLE
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == alice
    assert chat.deadline_kind == DeadlineKind.CHAT_TIMEOUT


def test_consumer_and_agent_messages_alternate_in_order(phone, alice, go_online, committed):
    go_online(alice)
    phone.text("Hi")
    phone.text("2")
    chat = phone.chat()
    for n in range(3):
        phone.text(f"question {n}")
        committed(services.send_agent_message, agent=alice, chat=chat, body=f"answer {n}")

    tail = transcript(chat)[-6:]
    assert tail == [
        ("consumer", "question 0"), ("agent", "answer 0"),
        ("consumer", "question 1"), ("agent", "answer 1"),
        ("consumer", "question 2"), ("agent", "answer 2"),
    ]
    chat.refresh_from_db()
    assert chat.last_consumer_message_at is not None and chat.last_agent_message_at is not None


def test_an_agent_cannot_write_to_a_chat_they_do_not_hold(phone, alice, bob, go_online, committed):
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()

    with pytest.raises(ChatActionError) as refused:
        committed(services.send_agent_message, agent=bob, chat=chat, body="Hi from Bob")

    assert refused.value.message == "You are not connected to this chat."
    assert not chat.messages.filter(author=Author.AGENT).exists()


def test_a_transfer_to_a_menu_queue_fails_and_keeps_the_agent(phone, support, alice, go_online, committed):
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()

    transfer = committed(services.transfer_chat, agent=alice, chat=chat, to_queue=support.menu)

    chat.refresh_from_db()
    assert transfer.status == Transfer.Status.FAILED
    assert "is a menu" in transfer.reason
    assert chat.agent == alice and chat.status == ChatStatus.ASSIGNED


def test_a_transfer_to_a_queue_nobody_can_take_leaves_the_chat_waiting_there(
    phone, support, alice, bob, go_online, committed
):
    support.tech.agents.remove(alice)
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()

    committed(services.transfer_chat, agent=alice, chat=chat, to_queue=support.tech)

    chat.refresh_from_db()
    assert chat.status == ChatStatus.QUEUED and chat.queue == support.tech and chat.agent is None
    go_online(bob)
    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == bob


@pytest.fixture
def alice_holds_one(alice, go_online):
    """Alice can hold one chat at a time, and has the adapter open."""
    alice.max_concurrent_chats = 1
    alice.save()
    return go_online(alice)


# --- manual answer ------------------------------------------------------------------------------


@pytest.fixture
def manual_billing(support):
    support.billing.answer_type = AnswerType.MANUAL
    support.billing.save()
    return support.billing


def test_manual_answer_offers_to_every_eligible_agent_and_the_first_to_accept_wins(
    phone, manual_billing, alice, bob, go_online, committed
):
    go_online(alice)
    go_online(bob)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    assert chat.status == ChatStatus.QUEUED
    assert set(Offer.objects.filter(chat=chat).values_list("agent__user__username", flat=True)) == {"alice", "bob"}
    assert phone.new_texts()[-1] == BILLING_QUEUED

    accepted = committed(assignment.accept_offer, agent=bob, chat=chat)

    assert accepted.status == ChatStatus.ASSIGNED and accepted.agent == bob
    assert accepted.start_type == StartType.MANUAL
    assert phone.new_texts() == ["Bob from Billing has joined the chat."]
    with pytest.raises(ChatActionError) as refused:
        committed(assignment.accept_offer, agent=alice, chat=chat)
    assert refused.value.message == "Another agent already accepted this chat."
    chat.refresh_from_db()
    assert chat.agent == bob
    offers = dict(Offer.objects.filter(chat=chat).values_list("agent__user__username", "status"))
    assert offers == {"alice": Offer.Status.WITHDRAWN, "bob": Offer.Status.ACCEPTED}
    assert Participant.objects.filter(chat=chat, type=ParticipantType.AGENT).count() == 1


@pytest.mark.usefixtures("alice_holds_one")
def test_manual_answer_is_refused_over_capacity(make_phone, manual_billing, alice, committed):
    first, second = make_phone("+15557650001"), make_phone("+15557650002")
    for phone in (first, second):
        phone.text("Hi")
        phone.text("1")
    committed(assignment.accept_offer, agent=alice, chat=first.chat())

    with pytest.raises(ChatActionError) as refused:
        committed(assignment.accept_offer, agent=alice, chat=second.chat())

    assert refused.value.code == "over_capacity"
    assert refused.value.message == "You already hold 1 chat, your maximum."
    assert second.chat().status == ChatStatus.QUEUED


def test_a_manual_chat_is_offered_to_an_agent_who_comes_online_later(phone, manual_billing, alice, go_online):
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    assert not Offer.objects.filter(chat=chat).exists()

    go_online(alice)

    assert list(Offer.objects.filter(chat=chat).values_list("agent", "status")) == [(alice.pk, Offer.Status.OFFERED)]
    chat.refresh_from_db()
    assert chat.status == ChatStatus.QUEUED


def test_an_agent_who_was_not_offered_a_chat_cannot_accept_it(phone, manual_billing, alice, bob, go_online, committed):
    go_online(alice)
    phone.text("Hi")
    phone.text("1")

    with pytest.raises(ChatActionError) as refused:
        committed(assignment.accept_offer, agent=bob, chat=phone.chat())

    assert refused.value.code == "not_offered"


# --- routing ------------------------------------------------------------------------------------


def test_the_longest_idle_agent_gets_the_chat_first(make_phone, alice, bob, go_online):
    now = timezone.now()
    AgentProfile.objects.filter(pk=alice.pk).update(last_assignment_at=now - dt.timedelta(hours=1))
    AgentProfile.objects.filter(pk=bob.pk).update(last_assignment_at=now - dt.timedelta(hours=2))
    go_online(alice)
    go_online(bob)
    first, second = make_phone("+15557650001"), make_phone("+15557650002")

    first.text("Hi")
    first.text("1")
    second.text("Hi")
    second.text("1")

    assert first.chat().agent == bob
    assert second.chat().agent == alice


def test_an_agent_who_never_had_a_chat_counts_as_the_longest_idle(make_phone, alice, bob, go_online):
    AgentProfile.objects.filter(pk=alice.pk).update(last_assignment_at=timezone.now() - dt.timedelta(days=30))
    go_online(alice)
    go_online(bob)
    phone = make_phone("+15557650001")

    phone.text("Hi")
    phone.text("1")

    assert phone.chat().agent == bob


@pytest.mark.usefixtures("alice_holds_one")
def test_an_agent_at_capacity_is_skipped(make_phone, alice, bob, go_online):
    first, second = make_phone("+15557650001"), make_phone("+15557650002")
    first.text("Hi")
    first.text("1")
    assert first.chat().agent == alice
    go_online(bob)
    # Alice is the longest idle again, but full.
    AgentProfile.objects.filter(pk=alice.pk).update(last_assignment_at=timezone.now() - dt.timedelta(days=1))

    second.text("Hi")
    second.text("1")

    assert second.chat().agent == bob


def test_an_away_or_unconnected_agent_gets_nothing(phone, alice, bob, go_online, committed):
    go_online(alice)
    presence.set_agent_status(agent=alice, status=AgentStatus.AWAY)
    # Bob is "available" but has no adapter open.
    presence.set_agent_status(agent=bob, status=AgentStatus.AVAILABLE)
    committed(assignment.route_to_agent, agent=bob)

    phone.text("Hi")
    phone.text("1")

    chat = phone.chat()
    assert chat.status == ChatStatus.QUEUED and chat.agent is None


@pytest.mark.usefixtures("alice_holds_one")
def test_when_a_chat_ends_the_next_waiting_chat_is_assigned(make_phone, alice, committed):
    first, second = make_phone("+15557650001"), make_phone("+15557650002")
    first.text("Hi")
    first.text("1")
    second.text("Hi")
    second.text("2")
    assert second.chat().status == ChatStatus.QUEUED

    committed(
        services.end_chat, chat=first.chat(), agent=alice, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED
    )

    chat = second.chat()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == alice
    assert second.new_texts()[-1] == "Alice from Tech has joined the chat."


@pytest.mark.usefixtures("alice_holds_one")
def test_when_the_consumer_ends_a_chat_the_next_waiting_chat_is_assigned(make_phone, alice):
    first, second = make_phone("+15557650001"), make_phone("+15557650002")
    first.text("Hi")
    first.text("1")
    second.text("Hi")
    second.text("1")

    first.text("exit")

    assert first.chat().status == ChatStatus.FINISHED
    assert second.chat().agent == alice


def test_an_agent_who_becomes_available_gets_the_waiting_chats(phone, alice, go_online, committed):
    go_online(alice)
    presence.set_agent_status(agent=alice, status=AgentStatus.AWAY)
    phone.text("Hi")
    phone.text("1")
    assert phone.chat().status == ChatStatus.QUEUED

    became_available = presence.set_agent_status(agent=alice, status=AgentStatus.AVAILABLE)
    committed(assignment.route_to_agent, agent=alice)

    assert became_available is True
    chat = phone.chat()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == alice


def test_several_waiting_chats_fill_an_agent_up_to_capacity_oldest_first(make_phone, alice, go_online):
    alice.max_concurrent_chats = 2
    alice.save()
    phones = [make_phone(f"+1555765000{n}") for n in range(1, 4)]
    for phone in phones:
        phone.text("Hi")
        phone.text("1")

    go_online(alice)

    statuses = [(p.chat().status, p.chat().agent_id) for p in phones]
    assert statuses == [
        (ChatStatus.ASSIGNED, alice.pk),
        (ChatStatus.ASSIGNED, alice.pk),
        (ChatStatus.QUEUED, None),
    ]


def test_an_agent_assigned_through_a_team_gets_chats(phone, support, go_online):
    carol = make_agent("carol", display_name="Carol")
    team = make_team("Tier 2", agents=[carol])
    support.billing.teams.add(team)
    go_online(carol)

    phone.text("Hi")
    phone.text("billing")

    chat = phone.chat()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == carol


def test_an_agent_of_another_queue_gets_nothing(phone, support, go_online):
    dave = make_agent("dave", display_name="Dave")
    support.tech.agents.add(dave)
    go_online(dave)

    phone.text("Hi")
    phone.text("billing")

    assert phone.chat().status == ChatStatus.QUEUED


# --- hours of operation -------------------------------------------------------------------------


def test_a_queue_with_no_hours_sends_the_after_hours_text(phone, support):
    support.billing.always_open = False
    support.billing.save()
    phone.text("Hi")
    phone.new_texts()

    phone.text("1")

    chat = phone.chat()
    assert phone.new_texts() == [AFTER_HOURS]
    assert chat.status == ChatStatus.QUEUED
    assert chat.queued_after_hours is True
    assert chat.deadline_kind == DeadlineKind.UNANSWERED_AFTER_HOURS


@pytest.mark.parametrize(
    "local_time, expected_text, after_hours",
    [
        (dt.datetime(2025, 3, 3, 10, 0), BILLING_QUEUED, False),  # Monday 10:00 in New York
        (dt.datetime(2025, 3, 3, 20, 0), AFTER_HOURS, True),  # Monday 20:00
        (dt.datetime(2025, 3, 2, 10, 0), AFTER_HOURS, True),  # Sunday
    ],
)
def test_the_queue_hours_decide_between_queued_and_after_hours(phone, support, local_time, expected_text, after_hours):
    make_office_hours(support.billing)  # Monday to Friday, 09:00–17:00 in New York

    with time_machine.travel(local_time.replace(tzinfo=NEW_YORK), tick=False):
        phone.text("Hi")
        phone.new_texts()
        phone.text("1")

    chat = phone.chat()
    assert phone.new_texts() == [expected_text]
    assert chat.queued_after_hours is after_hours


def test_an_offer_of_a_chat_the_consumer_left_cannot_be_accepted(phone, manual_billing, alice, go_online, committed):
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    phone.text("EXIT")

    with pytest.raises(ChatActionError) as refused:
        committed(assignment.accept_offer, agent=alice, chat=chat)

    assert refused.value.code == "finished"
    assert refused.value.message == "This chat has ended."
    assert Offer.objects.get(chat=chat).status == Offer.Status.WITHDRAWN


# --- other queue shapes -------------------------------------------------------------------------


def test_a_number_on_a_leaf_queue_queues_the_first_text_at_once(make_phone, support, alice, go_online, chat_settings):
    direct = make_number("+15550100005", messages_per_second=100)
    link_number(support.billing, direct, role=NumberRole.INCOMING)
    go_online(alice)
    phone = make_phone(CONSUMER, portal=direct.number)

    phone.text("Hi")

    chat = phone.chat()
    assert chat.status == ChatStatus.ASSIGNED and chat.queue == support.billing and chat.agent == alice
    assert phone.new_texts() == [
        chat_settings.opt_in_message, BILLING_QUEUED, "Alice from Billing has joined the chat."
    ]
    assert QueueNumber.objects.filter(number=direct).count() == 1


def test_a_hidden_queue_is_left_out_of_the_menu(phone, support):
    support.tech.hidden = True
    support.tech.save()

    phone.text("Hi")
    assert phone.new_texts()[-1] == "Reply 1 for Billing."

    phone.text("tech")
    assert phone.new_texts()[-2:] == ["Sorry, that is not one of the options.", "Reply 1 for Billing."]
    assert phone.chat().status == ChatStatus.SELECTING


def test_a_consumer_text_while_waiting_is_kept_without_an_answer(phone):
    phone.text("Hi")
    phone.text("1")
    phone.new_texts()

    phone.text("Are you there?")

    chat = phone.chat()
    assert chat.status == ChatStatus.QUEUED
    assert transcript(chat)[-1] == ("consumer", "Are you there?")
    assert phone.new_texts() == []


def test_two_consumers_have_separate_chats_on_the_same_number(make_phone, alice, go_online):
    go_online(alice)
    first, second = make_phone("+15557650001"), make_phone("+15557650002")
    first.text("Hi")
    second.text("Hello")
    first.text("1")
    second.text("2")

    assert first.chat().pk != second.chat().pk
    assert first.chat().queue.name == "Billing" and second.chat().queue.name == "Tech"
    assert transcript(first.chat())[0] == ("consumer", "Hi")
    assert transcript(second.chat())[0] == ("consumer", "Hello")


# --- dismissal (S8) -----------------------------------------------------------------------------


def test_a_dismissed_chat_goes_back_to_its_queue_when_the_consumer_writes_again(
    phone, support, alice, bob, go_online, committed, dismissal_on
):
    chat = assigned_to(phone, alice, go_online, committed)
    phone.text("Let me find my invoice")
    chat.refresh_from_db()
    assert chat.deadline_kind == DeadlineKind.DISMISSAL
    phone.new_texts()

    with time_machine.travel(timezone.now() + dt.timedelta(minutes=11)):
        assert committed(timers.sweep) == 1
        chat.refresh_from_db()
        assert chat.status == ChatStatus.DISMISSED
        assert not Participant.objects.filter(chat=chat, type=ParticipantType.AGENT, ended_at__isnull=True).exists()
        presence.set_agent_status(agent=alice, status=AgentStatus.AWAY)
        go_online(bob)

        phone.text("Found it: INV-42")

    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == bob
    assert phone.new_texts() == [dismissal_on.dismissed_chat_auto_response, "Bob from Billing has joined the chat."]
    open_agents = Participant.objects.filter(chat=chat, type=ParticipantType.AGENT, ended_at__isnull=True)
    assert [p.agent for p in open_agents] == [bob]
    assert Participant.objects.get(chat=chat, agent=alice).status == "dismissed"
    assert transcript(chat)[-3][1] == "Found it: INV-42"


def test_a_dismissed_chat_waits_in_the_queue_without_its_former_agent(phone, alice, go_online, committed, dismissal_on):
    chat = assigned_to(phone, alice, go_online, committed)
    phone.text("One moment")

    with time_machine.travel(timezone.now() + dt.timedelta(minutes=11)):
        committed(timers.sweep)
        presence.set_agent_status(agent=alice, status=AgentStatus.AWAY)
        phone.text("I'm back")

    chat.refresh_from_db()
    assert chat.status == ChatStatus.QUEUED
    assert chat.agent is None
