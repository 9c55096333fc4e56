"""chats.services beyond the consumer's path: CRM records (SPEC S12) and the agent's outbound
chat (S9, S10)."""
import pytest

from chats import crm_records, services
from chats.models import (
    Author,
    Chat,
    ChatStatus,
    ChatType,
    DisconnectedBy,
    FinishReason,
    ParticipantType,
    StartType,
)
from chats.errors import ChatActionError
from chats.states import save_and_announce
from chats.deadlines import DeadlineKind
from portal import crm
from portal.models import CrmContact, CrmEntry, CrmRecord
from sms.models import DoNotContact, NumberDirection, NumberRole, OutboundMessage
from tests.chats.conftest import BILLING_QUEUED, CHAT_ENDED, CONSUMER, GREETING, MENU, OUTBOUND, transcript
from tests.factories import link_number, make_agent, make_crm_contact, make_number, make_queued_chats


@pytest.fixture
def connect(phone, alice, go_online):
    """Text in and pick Billing: Alice gets the chat."""

    def run():
        go_online(alice)
        phone.text("Hi")
        phone.text("1")
        chat = phone.chat()
        assert chat.status == ChatStatus.ASSIGNED
        return chat

    return run


def entry_kinds(record) -> list[str]:
    return list(CrmEntry.objects.filter(record=record).order_by("at", "pk").values_list("kind", flat=True))


# --- CRM records (S12) --------------------------------------------------------------------------


def test_no_crm_record_until_the_chat_connects(phone):
    phone.text("Hi")
    phone.text("1")

    chat = phone.chat()
    assert chat.status == ChatStatus.QUEUED
    assert chat.crm_record is None
    assert not CrmRecord.objects.exists()


def test_connecting_creates_a_contact_when_none_has_the_number(connect):
    chat = connect()

    record = chat.crm_record
    assert record.reference == f"chat:{chat.pk}"
    assert record.contact.phone_number == CONSUMER
    assert CrmContact.objects.count() == 1
    assert (record.language, record.queue_name) == ("en", "Billing")
    assert not chat.crm_needs_choice and not record.needs_contact_choice
    opened = CrmEntry.objects.get(record=record, kind="opened")
    assert f"chat:{chat.pk}" in opened.text and "en" in opened.text and "Billing" in opened.text


def test_connecting_uses_the_one_contact_with_the_number(connect):
    known = make_crm_contact(CONSUMER, "Pat Doe")
    make_crm_contact("+15550000000", "Someone else")

    chat = connect()

    assert chat.crm_record.contact == known
    assert CrmContact.objects.count() == 2


def test_several_contacts_with_the_number_ask_the_agent_to_choose(connect):
    make_crm_contact(CONSUMER, "Pat Doe")
    second = make_crm_contact(CONSUMER, "Pat Doe (work)")

    chat = connect()

    assert chat.crm_needs_choice is True
    assert chat.crm_record.contact is None and chat.crm_record.needs_contact_choice

    crm_records.choose_chat_contact(chat=chat, contact=second)

    chat.refresh_from_db()
    assert chat.crm_needs_choice is False
    record = CrmRecord.objects.get(pk=chat.crm_record_id)
    assert record.contact == second and not record.needs_contact_choice
    assert entry_kinds(record)[-1] == "contact_chosen"


def test_crm_choose_contact_clears_the_record_choice_and_may_create_a_new_contact(connect):
    make_crm_contact(CONSUMER, "Pat Doe")
    make_crm_contact(CONSUMER, "Pat Doe (work)")
    chat = connect()

    contact = crm.choose_contact(record=chat.crm_record, new_name="Pat New")

    record = CrmRecord.objects.get(pk=chat.crm_record_id)
    assert contact.name == "Pat New" and contact.phone_number == CONSUMER
    assert record.contact == contact and not record.needs_contact_choice
    assert CrmContact.objects.filter(phone_number=CONSUMER).count() == 3


def test_a_contact_with_another_number_cannot_be_chosen(connect):
    make_crm_contact(CONSUMER, "Pat Doe")
    make_crm_contact(CONSUMER, "Pat Doe (work)")
    stranger = make_crm_contact("+15550000000", "Stranger")
    chat = connect()

    with pytest.raises(ValueError):
        crm.choose_contact(record=chat.crm_record, contact=stranger)


def test_the_end_of_a_chat_posts_the_full_transcript_with_system_lines(connect, phone, alice, committed, chat_settings):
    chat = connect()
    committed(services.send_agent_message, agent=alice, chat=chat, body="How can I help?")
    phone.text("My bill")

    committed(services.end_chat, chat=chat, agent=alice, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED)

    record = chat.crm_record
    assert entry_kinds(record)[-2:] == ["chat_ended", "transcript"]
    ended = CrmEntry.objects.get(record=record, kind="chat_ended")
    assert "agent_ended" in ended.text
    entry = CrmEntry.objects.get(record=record, kind="transcript")
    lines = [(line["author"], line["body"]) for line in entry.data["lines"]]
    assert lines == [
        ("consumer", "Hi"),
        ("system", chat_settings.opt_in_message),
        ("system", GREETING),
        ("system", MENU),
        ("consumer", "1"),
        ("system", BILLING_QUEUED),
        ("system", "Alice from Billing has joined the chat."),
        ("agent", "How can I help?"),
        ("consumer", "My bill"),
        ("system", CHAT_ENDED),
    ]
    assert all(line["at"] for line in entry.data["lines"])
    assert entry.text.splitlines()[0] == "[consumer] Hi"
    assert "[agent] How can I help?" in entry.text and f"[system] {GREETING}" in entry.text


def test_a_consumer_exit_also_posts_the_transcript(connect, phone):
    chat = connect()

    phone.text("EXIT")

    kinds = entry_kinds(chat.crm_record)
    assert kinds[-2:] == ["chat_ended", "transcript"]
    assert "end_user_exit" in CrmEntry.objects.get(record=chat.crm_record, kind="chat_ended").text


def test_transfers_post_their_entries(connect, alice, bob, go_online, committed):
    chat = connect()
    go_online(bob)

    committed(services.transfer_chat, agent=alice, chat=chat, to_agent=bob)
    bob.status = "away"
    bob.save()
    committed(services.transfer_chat, agent=bob, chat=chat, to_agent=alice)  # Alice has room: works
    committed(services.transfer_chat, agent=alice, chat=chat, to_agent=bob)  # Bob is away: fails

    kinds = entry_kinds(chat.crm_record)
    assert kinds[1:] == [
        "transfer_began", "transfer_ended",
        "transfer_began", "transfer_ended",
        "transfer_began", "transfer_failed",
    ]
    texts = list(CrmEntry.objects.filter(record=chat.crm_record).order_by("pk").values_list("text", flat=True))
    assert texts[1] == "Transfer from Alice to Bob"
    assert texts[-1] == "Bob is not available."


def test_a_transfer_to_a_queue_posts_its_entries(connect, support, alice, committed):
    chat = connect()

    committed(services.transfer_chat, agent=alice, chat=chat, to_queue=support.tech)

    entries = list(CrmEntry.objects.filter(record=chat.crm_record).order_by("pk").values_list("kind", "text"))
    assert entries[1:3] == [
        ("transfer_began", f"Transfer from Alice to {support.tech}"),
        ("transfer_ended", f"Transfer from Alice to {support.tech}"),
    ]


def test_a_transfer_to_a_queue_uses_that_queues_hours(phone, support, alice, go_online, committed):
    """A chat taken after hours in Billing and moved to Tech, which is open, waits under Tech's
    open-hours rules, not Billing's after-hours ones."""
    support.billing.always_open = False
    support.billing.save()
    support.tech.agents.remove(alice)
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    assert chat.queued_after_hours and chat.status == ChatStatus.ASSIGNED

    committed(services.transfer_chat, agent=alice, chat=chat, to_queue=support.tech)

    chat.refresh_from_db()
    assert chat.status == ChatStatus.QUEUED and chat.queue == support.tech
    assert chat.queued_after_hours is False
    assert chat.deadline_kind == DeadlineKind.UNANSWERED


# --- outbound chats by an agent (S9) -------------------------------------------------------------


@pytest.fixture
def outbound_number(support):
    number = make_number(OUTBOUND, direction=NumberDirection.OUTBOUND_ONLY, messages_per_second=100)
    link_number(support.billing, number, role=NumberRole.OUTBOUND)
    return number


def test_an_agent_starts_an_outbound_chat(alice, outbound_number, committed, make_phone):
    chat = committed(
        services.start_outbound_chat,
        agent=alice, consumer_number=CONSUMER, portal_number=outbound_number, body="Hi, this is Acme about your order.",
    )

    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == alice
    assert chat.start_type == StartType.OUTBOUND
    assert chat.chat_type == ChatType.OUTBOUND_SMS
    assert chat.queue.name == "Billing"
    assert chat.deadline_kind == DeadlineKind.OUTBOUND_INACTIVE
    assert sorted(chat.participants.values_list("type", flat=True)) == [ParticipantType.AGENT, ParticipantType.END_USER]
    assert transcript(chat) == [("agent", "Hi, this is Acme about your order.")]
    sent = OutboundMessage.objects.get()
    assert (sent.to_number, sent.from_number, sent.kind) == (CONSUMER, OUTBOUND, "agent")
    assert chat.crm_record.contact.phone_number == CONSUMER

    # The consumer's reply to the outbound-only number lands in the chat.
    phone = make_phone(CONSUMER, portal=OUTBOUND)
    phone.text("Thanks, what about it?")
    assert transcript(chat)[-1] == ("consumer", "Thanks, what about it?")
    assert phone.new_texts() == ["Hi, this is Acme about your order."]


def test_an_outbound_chat_to_an_opted_out_consumer_is_refused(alice, outbound_number, committed):
    DoNotContact.objects.create(consumer_number=CONSUMER, portal_number=OUTBOUND)

    with pytest.raises(ChatActionError) as refused:
        committed(services.start_outbound_chat, agent=alice, consumer_number=CONSUMER, portal_number=outbound_number, body="Hi")

    assert refused.value.code == "do_not_contact"
    assert refused.value.message == "This consumer opted out (STOP) and cannot be texted."
    assert not Chat.objects.exists() and not OutboundMessage.objects.exists()


def test_an_outbound_chat_is_refused_when_a_chat_is_already_active_between_the_numbers(
    alice, bob, outbound_number, committed
):
    committed(services.start_outbound_chat, agent=alice, consumer_number=CONSUMER, portal_number=outbound_number, body="Hello")

    with pytest.raises(ChatActionError) as refused:
        committed(services.start_outbound_chat, agent=bob, consumer_number=CONSUMER, portal_number=outbound_number, body="Hi")

    assert refused.value.code == "active_chat"
    assert refused.value.message == "There is already an active chat between this consumer and that number."
    assert Chat.objects.count() == 1 and OutboundMessage.objects.count() == 1


def test_an_outbound_chat_is_refused_while_the_consumer_is_chatting_on_that_number(
    phone, support, alice, committed
):
    link_number(support.billing, support.number, role=NumberRole.OUTBOUND)
    phone.text("Hi")

    with pytest.raises(ChatActionError) as refused:
        committed(services.start_outbound_chat, agent=alice, consumer_number=CONSUMER, portal_number=support.number, body="Hi")

    assert refused.value.code == "active_chat"
    assert Chat.objects.count() == 1


def test_an_outbound_chat_is_refused_when_outbound_sms_is_off(alice, outbound_number, committed, chat_settings):
    chat_settings.outbound_sms_enabled = False
    chat_settings.save()

    with pytest.raises(ChatActionError) as refused:
        committed(services.start_outbound_chat, agent=alice, consumer_number=CONSUMER, portal_number=outbound_number, body="Hi")

    assert refused.value.message == "Outbound SMS is turned off."


def test_an_outbound_chat_needs_an_outbound_number_of_the_agents_queues(support, outbound_number, committed):
    outsider = make_agent("olga", display_name="Olga")

    with pytest.raises(ChatActionError) as refused:
        committed(services.start_outbound_chat, agent=outsider, consumer_number=CONSUMER, portal_number=outbound_number, body="Hi")

    assert refused.value.code == "invalid_number"
    assert OUTBOUND in refused.value.message


def test_an_outbound_chat_needs_a_valid_consumer_number(alice, outbound_number, committed):
    with pytest.raises(ChatActionError) as refused:
        committed(services.start_outbound_chat, agent=alice, consumer_number="555-1234", portal_number=outbound_number, body="Hi")

    assert refused.value.code == "invalid_number"


def test_an_outbound_chat_counts_against_the_agents_capacity(alice, outbound_number, committed):
    alice.max_concurrent_chats = 1
    alice.save()
    committed(services.start_outbound_chat, agent=alice, consumer_number=CONSUMER, portal_number=outbound_number, body="Hi")

    with pytest.raises(ChatActionError) as refused:
        committed(
            services.start_outbound_chat, agent=alice, consumer_number="+15557650009", portal_number=outbound_number, body="Hi"
        )

    assert refused.value.code == "over_capacity"


def test_an_agent_can_end_an_outbound_chat(alice, outbound_number, committed):
    chat = committed(
        services.start_outbound_chat, agent=alice, consumer_number=CONSUMER, portal_number=outbound_number, body="Hi"
    )

    committed(services.end_chat, chat=chat, agent=alice, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED)

    chat.refresh_from_db()
    assert chat.status == ChatStatus.FINISHED and chat.finish_reason == FinishReason.AGENT_ENDED
    assert chat.disconnected_by == DisconnectedBy.AGENT
    ended = OutboundMessage.objects.order_by("pk").last()
    assert (ended.body, ended.from_number) == (CHAT_ENDED, OUTBOUND)
    assert transcript(chat)[-1] == (Author.SYSTEM, CHAT_ENDED)


def test_each_announced_change_counts_a_version_even_from_a_copy_read_earlier(support, committed):
    """The version orders a chat's events for the browser: it only ever goes up in the row."""
    chat = make_queued_chats(support.billing, support.number, 1)[0]
    earlier_copy = Chat.objects.get(pk=chat.pk)
    start = chat.version
    committed(save_and_announce, chat, ["crm_needs_choice"])
    committed(save_and_announce, earlier_copy, ["crm_needs_choice"])
    assert Chat.objects.get(pk=chat.pk).version == start + 2
