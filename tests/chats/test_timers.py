"""Chat timers (SPEC C3, S8; DESIGN rule 5): every deadline kind fires at its minute and not a
second before, by calling `chats.timers.sweep()` after moving the clock with time_machine, the
way the sweeper process and the django-q2 schedule call it.

Conversations go through the real signed webhook (the `phone` fixture of tests/chats/conftest.py);
the queue "Billing" has the global timer values unless a test overrides them on the queue."""
from __future__ import annotations

import datetime as dt
import threading
import zoneinfo

import pytest
from django.db import connection, connections
from django.utils import timezone

from chats import api_sms, deadlines, services, sweepers, timers
from chats.models import (
    Author,
    Chat,
    ChatEvent,
    ChatStatus,
    ChatType,
    DisconnectedBy,
    FinishReason,
    Message,
    Participant,
    ParticipantType,
)
from chats.deadlines import DeadlineKind
from portal import presence
from portal.models import AgentStatus, EventWebhook
from queues.hours import hours_period
from queues.models import QueueMessages
from sms import tasks as sms_tasks
from sms.models import MessageStatus, NumberDirection, NumberRole, OutboundMessage
from tests.chats.conftest import AFTER_HOURS, BILLING_QUEUED, CONSUMER, OUTBOUND, assigned_to, queued_in_billing
from tests.factories import (
    link_number,
    make_number,
    make_office_hours,
    make_opening_hours,
    make_queue,
    make_queued_chats,
    update_chat_settings,
)
from tests.fakes.webhook_subscriber import Subscriber
from tests.layers import GroupListener, fresh_channel_layer, queue_changes

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
EXPIRED = "This conversation has expired. Text us again any time."  # QueueMessages' default
START = dt.datetime(2025, 3, 3, 10, 0, tzinfo=NEW_YORK)  # a Monday morning
SECOND = dt.timedelta(seconds=1)


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


@pytest.fixture
def clock(time_machine):
    """The clock stands still at START; tests move it with clock.shift(…)."""
    time_machine.move_to(START, tick=False)
    return time_machine


@pytest.fixture
def sweep(committed):
    """One sweeper run with its after-commit work done (texts sent, assignment run)."""
    return lambda: committed(timers.sweep)


def fires_after(clock, sweep, delay: dt.timedelta) -> None:
    """The deadline fires when `delay` has passed and not a second before: moved on by `delay` less
    a second, the sweeper finds nothing due; one second later, it acts on one chat."""
    clock.shift(delay - SECOND)
    assert sweep() == 0
    clock.shift(SECOND)
    assert sweep() == 1


def queued_with_deadlines(queue, number, count: int) -> list[Chat]:
    """`count` chats waiting in `queue` (one bulk insert), each given its unanswered deadline."""
    chats = make_queued_chats(queue, number, count)
    for chat in chats:
        deadlines.recompute_deadline(chat)
        chat.save(update_fields=["deadline_at", "deadline_kind"])
    return chats


def finished(chat: Chat, reason: str) -> bool:
    chat.refresh_from_db()
    return (
        chat.status == ChatStatus.FINISHED
        and chat.finish_reason == reason
        and chat.disconnected_by == DisconnectedBy.SYSTEM
    )


# --- queue-selecting expiration ------------------------------------------------------------------


def test_a_chat_stuck_in_the_menu_expires_at_the_selecting_minute_and_not_before(phone, clock, sweep):
    phone.text("Hi")
    chat = phone.chat()
    phone.new_texts()
    assert chat.status == ChatStatus.SELECTING
    assert chat.deadline_kind == DeadlineKind.SELECTING
    assert chat.deadline_at == timezone.now() + minutes(30)

    clock.shift(minutes(30) - SECOND)
    assert sweep() == 0
    chat.refresh_from_db()
    assert chat.status == ChatStatus.SELECTING
    assert phone.new_texts() == []

    clock.shift(SECOND)
    assert sweep() == 1
    assert finished(chat, FinishReason.EXPIRED_SELECTING)
    assert phone.new_texts() == [EXPIRED]
    assert chat.deadline_at is None and chat.deadline_kind == ""
    assert ChatEvent.objects.filter(chat=chat, kind="status.finished", by=DisconnectedBy.SYSTEM).count() == 1


def test_a_menu_answer_restarts_the_selecting_expiration(phone, clock, sweep):
    phone.text("Hi")
    clock.shift(minutes(20))
    phone.text("9")  # an invalid choice is still an answer
    chat = phone.chat()

    clock.shift(minutes(29))
    assert sweep() == 0
    clock.shift(minutes(1))
    assert sweep() == 1
    assert finished(chat, FinishReason.EXPIRED_SELECTING)


def test_the_queue_override_of_the_selecting_expiration_beats_the_global_value(phone, support, clock, sweep):
    support.menu.selecting_expiration_minutes = 3
    support.menu.save()
    phone.text("Hi")
    chat = phone.chat()

    fires_after(clock, sweep, minutes(3))
    assert finished(chat, FinishReason.EXPIRED_SELECTING)


# --- unanswered expiration, in hours -------------------------------------------------------------


def test_an_unanswered_chat_expires_at_the_unanswered_minute(phone, clock, sweep, chat_settings):
    chat = queued_in_billing(phone)
    assert chat.deadline_kind == DeadlineKind.UNANSWERED
    assert chat_settings.unanswered_expiration_minutes == 60

    fires_after(clock, sweep, minutes(60))

    assert finished(chat, FinishReason.EXPIRED_UNANSWERED)
    assert phone.new_texts() == [EXPIRED]


def test_the_queue_override_of_the_unanswered_expiration_beats_the_global_value(phone, support, clock, sweep):
    support.billing.unanswered_expiration_minutes = 5
    support.billing.save()
    chat = queued_in_billing(phone)

    fires_after(clock, sweep, minutes(5))
    assert finished(chat, FinishReason.EXPIRED_UNANSWERED)


def test_a_global_value_changed_later_applies_at_the_next_recompute(phone, clock, sweep):
    chat = queued_in_billing(phone)
    update_chat_settings(unanswered_expiration_minutes=10)

    clock.shift(minutes(10))
    # The stored deadline is still the old one; the sweeper decides by the stored column.
    assert sweep() == 0
    deadlines.recompute_deadline(chat)
    chat.save()
    assert sweep() == 1
    assert finished(chat, FinishReason.EXPIRED_UNANSWERED)


def test_an_empty_expired_text_sends_nothing_but_the_chat_still_ends(phone, support, clock, sweep):
    QueueMessages.objects.filter(queue=support.billing).update(expired="")
    chat = queued_in_billing(phone)

    clock.shift(minutes(60))
    assert sweep() == 1

    assert finished(chat, FinishReason.EXPIRED_UNANSWERED)
    assert phone.new_texts() == []


def test_the_expired_text_is_in_the_transcript_and_the_next_text_starts_a_new_chat(phone, clock, sweep):
    chat = queued_in_billing(phone)
    clock.shift(minutes(60))
    sweep()

    assert Message.objects.filter(chat=chat).last().body == EXPIRED
    phone.text("Hello again")
    assert phone.chat().pk != chat.pk


# --- unanswered expiration, after hours and as the hours open and close --------------------------


@pytest.fixture
def office_hours(support):
    """Billing opens Monday to Friday, 09:00–17:00 in New York."""
    return make_office_hours(support.billing)


def test_a_chat_queued_after_hours_expires_at_the_after_hours_minute(phone, office_hours, clock, sweep):
    office_hours.after_hours_expiration_minutes = 120
    office_hours.save()
    clock.move_to(dt.datetime(2025, 3, 3, 20, 0, tzinfo=NEW_YORK), tick=False)  # Monday 20:00
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    assert phone.new_texts()[-1] == AFTER_HOURS
    assert chat.queued_after_hours is True
    assert chat.deadline_kind == DeadlineKind.UNANSWERED_AFTER_HOURS

    fires_after(clock, sweep, minutes(120))
    assert finished(chat, FinishReason.EXPIRED_UNANSWERED)
    assert phone.new_texts() == [EXPIRED]


def test_a_chat_waiting_overnight_gets_the_in_hours_timer_when_the_queue_opens(phone, office_hours, clock, sweep):
    """Queued Monday 20:00 with 15 hours of after-hours grace (until Tuesday 11:00): the queue
    opens at 09:00, and from then the in-hours 60 minutes run, so the chat expires at 10:00."""
    office_hours.after_hours_expiration_minutes = 15 * 60
    office_hours.save()
    clock.move_to(dt.datetime(2025, 3, 3, 20, 0, tzinfo=NEW_YORK), tick=False)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    opening = dt.datetime(2025, 3, 4, 9, 0, tzinfo=NEW_YORK)
    assert chat.deadline_kind == DeadlineKind.UNANSWERED_AFTER_HOURS
    assert chat.deadline_at == opening  # the next moment to decide again

    clock.move_to(opening, tick=False)
    assert sweep() == 0  # not expired: decided again under the open hours
    chat.refresh_from_db()
    assert chat.status == ChatStatus.QUEUED
    assert chat.deadline_kind == DeadlineKind.UNANSWERED
    assert chat.deadline_at == opening + minutes(60)

    fires_after(clock, sweep, minutes(60))
    assert finished(chat, FinishReason.EXPIRED_UNANSWERED)


def test_a_chat_still_waiting_at_closing_time_gets_the_after_hours_timer(phone, office_hours, clock, sweep):
    office_hours.after_hours_expiration_minutes = 30
    office_hours.save()
    clock.move_to(dt.datetime(2025, 3, 3, 16, 30, tzinfo=NEW_YORK), tick=False)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    assert phone.new_texts()[-1] == BILLING_QUEUED
    closing = dt.datetime(2025, 3, 3, 17, 0, tzinfo=NEW_YORK)
    assert (chat.deadline_kind, chat.deadline_at) == (DeadlineKind.UNANSWERED, closing)

    clock.move_to(closing, tick=False)
    assert sweep() == 0
    chat.refresh_from_db()
    assert (chat.deadline_kind, chat.deadline_at) == (DeadlineKind.UNANSWERED_AFTER_HOURS, closing + minutes(30))

    clock.shift(minutes(30))
    assert sweep() == 1
    assert finished(chat, FinishReason.EXPIRED_UNANSWERED)


def test_a_closed_date_counts_as_after_hours(phone, office_hours, clock, sweep):
    office_hours.closed_dates.create(date=dt.date(2025, 3, 3), note="Holiday")
    office_hours.after_hours_expiration_minutes = 45
    office_hours.save()
    phone.text("Hi")  # Monday 10:00, but closed today
    phone.text("1")
    chat = phone.chat()
    assert chat.deadline_kind == DeadlineKind.UNANSWERED_AFTER_HOURS

    clock.shift(minutes(45))
    assert sweep() == 1
    assert finished(chat, FinishReason.EXPIRED_UNANSWERED)


def test_hours_period_knows_when_the_queue_last_changed_and_changes_next(office_hours):
    monday_noon = dt.datetime(2025, 3, 3, 12, 0, tzinfo=NEW_YORK)
    friday_night = dt.datetime(2025, 3, 7, 22, 0, tzinfo=NEW_YORK)

    assert hours_period(office_hours, monday_noon) == (
        True,
        dt.datetime(2025, 3, 3, 9, 0, tzinfo=NEW_YORK),
        dt.datetime(2025, 3, 3, 17, 0, tzinfo=NEW_YORK),
    )
    assert hours_period(office_hours, friday_night) == (
        False,
        dt.datetime(2025, 3, 7, 17, 0, tzinfo=NEW_YORK),
        dt.datetime(2025, 3, 10, 9, 0, tzinfo=NEW_YORK),  # over the weekend
    )


def test_hours_period_merges_spans_that_meet_at_midnight(office_hours):
    office_hours.opening_hours.all().delete()
    make_opening_hours(office_hours, 0, dt.time(9, 0), dt.time(0, 0))  # Monday until midnight
    make_opening_hours(office_hours, 1, dt.time(0, 0), dt.time(17, 0))  # Tuesday from midnight

    period = hours_period(office_hours, dt.datetime(2025, 3, 3, 23, 59, tzinfo=NEW_YORK))

    assert period.open is True
    assert period.until == dt.datetime(2025, 3, 4, 17, 0, tzinfo=NEW_YORK)


def test_a_queue_without_hours_never_changes(support):
    support.billing.always_open = False
    support.billing.save()

    assert hours_period(support.billing, timezone.now()) == (False, None, None)
    assert hours_period(support.tech, timezone.now()) == (True, None, None)


# --- chat timeout ----------------------------------------------------------------------------------


def test_the_chat_timeout_ends_a_chat_the_consumer_stopped_answering(
    phone, support, alice, go_online, committed, clock, sweep
):
    support.billing.chat_timeout_minutes = 30  # the queue's override beats the global 1440
    support.billing.save()
    chat = assigned_to(phone, alice, go_online, committed)
    assert chat.deadline_kind == DeadlineKind.CHAT_TIMEOUT
    assert chat.deadline_at == chat.assigned_at + minutes(30)

    fires_after(clock, sweep, minutes(30))

    assert finished(chat, FinishReason.TIMEOUT_END_USER)
    assert phone.new_texts() == [EXPIRED]
    assert not Participant.objects.filter(chat=chat, ended_at__isnull=True).exists()
    assert Chat.objects.held_by(alice).count() == 0


def test_a_consumer_message_pushes_the_chat_timeout_back(phone, support, alice, go_online, committed, clock, sweep):
    support.billing.chat_timeout_minutes = 30
    support.billing.save()
    chat = assigned_to(phone, alice, go_online, committed)

    clock.shift(minutes(20))
    phone.text("Still looking for the invoice")
    chat.refresh_from_db()
    assert chat.deadline_at == timezone.now() + minutes(30)

    clock.shift(minutes(29))  # 49 minutes after assignment, 29 after the consumer's text
    assert sweep() == 0
    clock.shift(minutes(1))
    assert sweep() == 1
    assert finished(chat, FinishReason.TIMEOUT_END_USER)


def test_an_agent_message_does_not_push_the_chat_timeout_back(phone, support, alice, go_online, committed, clock, sweep):
    """The consumer has the chat timeout to answer; the agent writing again changes nothing."""
    support.billing.chat_timeout_minutes = 30
    support.billing.save()
    chat = assigned_to(phone, alice, go_online, committed)

    clock.shift(minutes(20))
    committed(services.send_agent_message, agent=alice, chat=chat, body="Are you still there?")
    clock.shift(minutes(10))

    assert sweep() == 1
    assert finished(chat, FinishReason.TIMEOUT_END_USER)


# --- outbound inactivity ---------------------------------------------------------------------------


@pytest.fixture
def outbound_number(support):
    number = make_number(OUTBOUND, direction=NumberDirection.OUTBOUND_ONLY, messages_per_second=100)
    link_number(support.billing, number, role=NumberRole.OUTBOUND)
    return number


def test_an_inactive_outbound_chat_ends_at_the_outbound_inactivity_minute(
    support, alice, outbound_number, committed, clock, sweep
):
    support.billing.outbound_inactivity_minutes = 15
    support.billing.save()
    chat = committed(
        services.start_outbound_chat,
        agent=alice, consumer_number=CONSUMER, portal_number=outbound_number, body="Your order is ready.",
    )
    chat.refresh_from_db()
    assert chat.deadline_kind == DeadlineKind.OUTBOUND_INACTIVE

    fires_after(clock, sweep, minutes(15))
    assert finished(chat, FinishReason.TIMEOUT_OUTBOUND)


def test_agent_activity_pushes_the_outbound_inactivity_back(support, alice, outbound_number, committed, clock, sweep):
    support.billing.outbound_inactivity_minutes = 15
    support.billing.save()
    chat = committed(
        services.start_outbound_chat,
        agent=alice, consumer_number=CONSUMER, portal_number=outbound_number, body="Your order is ready.",
    )
    clock.shift(minutes(10))
    committed(services.send_agent_message, agent=alice, chat=chat, body="It is at the front desk.")

    clock.shift(minutes(14))
    assert sweep() == 0
    clock.shift(minutes(1))
    assert sweep() == 1
    assert finished(chat, FinishReason.TIMEOUT_OUTBOUND)


# --- dismissal (S8) ---------------------------------------------------------------------------------


def test_an_idle_chat_is_dismissed_at_its_minute_and_comes_back_on_the_consumers_reply(
    phone, alice, bob, go_online, committed, clock, sweep, dismissal_on
):
    chat = assigned_to(phone, alice, go_online, committed)
    phone.text("Let me find my invoice")
    chat.refresh_from_db()
    assert chat.deadline_kind == DeadlineKind.DISMISSAL

    fires_after(clock, sweep, minutes(10))

    chat.refresh_from_db()
    assert chat.status == ChatStatus.DISMISSED
    assert chat.finish_reason == ""
    assert phone.new_texts() == []  # the consumer is not told anything
    assert Chat.objects.held_by(alice).count() == 0  # it left the adapter
    assert Participant.objects.get(chat=chat, agent=alice).status == "dismissed"

    presence.set_agent_status(agent=alice, status=AgentStatus.AWAY)
    go_online(bob)
    phone.text("Found it: INV-42")

    again = phone.chat()
    assert again.pk == chat.pk  # the same chat, back in its queue and given to Bob
    assert again.status == ChatStatus.ASSIGNED and again.agent == bob
    assert phone.new_texts()[0] == dismissal_on.dismissed_chat_auto_response
    kinds = list(ChatEvent.objects.filter(chat=chat).values_list("kind", flat=True))
    assert kinds[-3:] == ["status.dismissed", "status.queued", "status.assigned"]


def test_a_dismissed_chat_with_no_agent_free_waits_queued(phone, alice, go_online, committed, clock, sweep, dismissal_on):
    chat = assigned_to(phone, alice, go_online, committed)
    phone.text("One moment")
    clock.shift(minutes(10))
    sweep()
    presence.set_agent_status(agent=alice, status=AgentStatus.AWAY)

    phone.text("I'm back")

    chat.refresh_from_db()
    assert chat.status == ChatStatus.QUEUED and chat.agent is None
    assert chat.deadline_kind == DeadlineKind.UNANSWERED


def test_a_dismissed_chat_never_goes_back_to_an_agent_whose_adapter_closed(
    phone, alice, go_online, committed, clock, sweep, dismissal_on
):
    # Alice was given the chat, it was dismissed, and she closed her adapter (still "available"
    # during the offline grace: the status changes only when the sweeper sees her gone).
    chat = assigned_to(phone, alice, go_online, committed)
    phone.text("One moment")
    fires_after(clock, sweep, minutes(10))
    presence.agent_disconnected(agent=alice)
    alice.refresh_from_db()
    assert alice.status == AgentStatus.AVAILABLE and alice.connection_count == 0

    phone.text("I'm back")

    chat.refresh_from_db()
    assert chat.status == ChatStatus.QUEUED and chat.agent is None  # it waits for an open adapter
    go_online(alice)
    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == alice  # she reopens it: hers again


def test_a_dismissed_chat_still_expires_by_the_chat_timeout(
    phone, support, alice, go_online, committed, clock, sweep, dismissal_on
):
    support.billing.chat_timeout_minutes = 40
    support.billing.save()
    chat = assigned_to(phone, alice, go_online, committed)
    phone.text("One moment")
    clock.shift(minutes(10))
    assert sweep() == 1
    chat.refresh_from_db()
    assert chat.status == ChatStatus.DISMISSED
    assert chat.deadline_kind == DeadlineKind.CHAT_TIMEOUT

    fires_after(clock, sweep, minutes(30))  # 40 minutes after the consumer's last text
    assert finished(chat, FinishReason.TIMEOUT_END_USER)


def test_no_dismissal_before_both_sides_wrote(phone, alice, go_online, committed, clock, sweep, dismissal_on):
    go_online(alice)
    chat = queued_in_billing(phone)
    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED
    assert chat.deadline_kind == DeadlineKind.CHAT_TIMEOUT  # the agent has not written yet

    clock.shift(minutes(10))
    assert sweep() == 0


def test_the_queue_override_of_the_dismissal_timer_beats_the_global_value(
    phone, support, alice, go_online, committed, clock, sweep, dismissal_on
):
    support.billing.dismissal_minutes = 3
    support.billing.save()
    chat = assigned_to(phone, alice, go_online, committed)
    phone.text("ok")

    fires_after(clock, sweep, minutes(3))
    chat.refresh_from_db()
    assert chat.status == ChatStatus.DISMISSED


def test_dismissal_off_means_no_dismissal(phone, alice, go_online, committed, clock, sweep, chat_settings):
    assert chat_settings.dismissal_enabled is False
    chat = assigned_to(phone, alice, go_online, committed)
    phone.text("ok")

    clock.shift(minutes(60))
    assert sweep() == 0
    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED


def test_an_api_initiated_chat_is_never_dismissed(phone, alice, go_online, committed, clock, sweep, dismissal_on):
    chat = assigned_to(phone, alice, go_online, committed)
    Chat.objects.filter(pk=chat.pk).update(chat_subtype="api_initiated")
    phone.text("Thanks for the reminder")
    chat.refresh_from_db()
    assert chat.deadline_kind == DeadlineKind.CHAT_TIMEOUT

    clock.shift(minutes(60))
    assert sweep() == 0
    chat.refresh_from_db()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == alice


@pytest.mark.parametrize("chat_type", [ChatType.OUTBOUND_SMS, ChatType.API_SMS])
def test_outbound_chats_are_never_dismissed(phone, alice, go_online, committed, clock, sweep, dismissal_on, chat_type):
    chat = assigned_to(phone, alice, go_online, committed)
    Chat.objects.filter(pk=chat.pk).update(chat_type=chat_type)
    phone.text("ok")
    chat.refresh_from_db()
    assert chat.deadline_kind == DeadlineKind.OUTBOUND_INACTIVE


# --- the sweeper itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("chat_type", [ChatType.WAIT_TIME_SMS, ChatType.IN_CALL_SMS])
def test_the_sms_side_of_a_call_has_no_deadline(support, chat_type):
    chat = Chat.objects.create(consumer_number=CONSUMER, portal_number=support.number, chat_type=chat_type)

    deadlines.recompute_deadline(chat)

    assert chat.deadline_at is None and chat.deadline_kind == ""


def test_a_sweep_with_nothing_due_does_nothing(phone, clock, sweep):
    queued_in_billing(phone)
    assert sweep() == 0


def test_a_chat_acted_on_once_is_not_acted_on_again(phone, clock, sweep):
    chat = queued_in_billing(phone)
    clock.shift(minutes(60))

    assert sweep() == 1
    assert sweep() == 0
    assert ChatEvent.objects.filter(chat=chat, kind="status.finished").count() == 1
    assert phone.new_texts() == [EXPIRED]


def test_one_failing_chat_does_not_stop_the_others(support, clock, sweep, monkeypatch):
    chats = queued_with_deadlines(support.billing, support.number, 3)
    broken = chats[1].pk
    real_transition_many = services.transition_many

    def transition_many(chats, *args, **kwargs):
        # Fails after the expired texts were queued, as a broken row would.
        if any(chat.pk == broken for chat in chats):
            raise RuntimeError("database exploded")
        return real_transition_many(chats, *args, **kwargs)

    monkeypatch.setattr(services, "transition_many", transition_many)
    clock.shift(minutes(60 + 3))

    assert sweep() == 2
    statuses = dict(Chat.objects.values_list("pk", "status"))
    assert statuses[broken] == ChatStatus.QUEUED  # rolled back, retried next run
    assert [statuses[c.pk] for c in chats if c.pk != broken] == [ChatStatus.FINISHED] * 2
    assert not Message.objects.filter(chat_id=broken).exists()  # its expired text rolled back too
    assert Message.objects.filter(body=EXPIRED).count() == 2  # the others' texts, once each

    monkeypatch.setattr(services, "transition_many", real_transition_many)
    assert sweep() == 1


def test_more_due_chats_than_one_batch_are_all_expired(support, clock, sweep):
    count = timers.SWEEP_BATCH * 2 + 7
    # Room for every "expired" text in one second: the clock stands still here, so a number's
    # sending limit would make the inline send tasks wait a real second per text past it (~100 s).
    support.number.messages_per_second = count
    support.number.save(update_fields=["messages_per_second"])
    queued_with_deadlines(support.billing, support.number, count)
    clock.shift(minutes(60 + count))

    assert sweep() == count
    assert Chat.objects.filter(status=ChatStatus.FINISHED, finish_reason=FinishReason.EXPIRED_UNANSWERED).count() == count


# Statements of one sweeper run that expires a batch, whatever the batch's size: the locking
# select, the queues with their messages and the numbers, settings and webhook subscribers,
# texts (do-not-contact, messages, status events, transcript), chats, ChatEvents, participants,
# offers, the savepoints, and after a full batch one more select that finds nothing left.
# (SQLite splits an insert of wide rows every ~50 rows.)
MAX_SWEEP_QUERIES = 23


@pytest.mark.parametrize("count", [1, 10, timers.SWEEP_BATCH])
def test_expiring_a_batch_costs_the_same_queries_for_one_chat_or_a_full_batch(
    support, clock, count, django_assert_max_num_queries
):
    queued_with_deadlines(support.billing, support.number, count)
    clock.shift(minutes(60 + count))

    with django_assert_max_num_queries(MAX_SWEEP_QUERIES):
        assert timers.sweep() == count

    assert Chat.objects.filter(status=ChatStatus.FINISHED, finish_reason=FinishReason.EXPIRED_UNANSWERED).count() == count
    assert ChatEvent.objects.filter(kind="status.finished").count() == count
    assert OutboundMessage.objects.filter(body=EXPIRED, status=MessageStatus.QUEUED).count() == count


def test_every_expiry_is_announced_to_the_browser_and_the_event_webhooks(support, clock, sweep, settings):
    """What a browser in each chat's group, Billing's agents and a supervisor hear, and what an
    event webhook subscriber receives, when the sweeper expires a batch."""
    chats = queued_with_deadlines(support.billing, support.number, 3)
    queue = f"queue.{support.billing.pk}"
    listener = GroupListener(fresh_channel_layer(settings), [*(f"chat.{chat.pk}" for chat in chats), queue, "supervisors"])
    clock.shift(minutes(60 + 3))

    with Subscriber() as subscriber:
        EventWebhook.objects.create(url=subscriber.url, event_types=["chat.finished"])
        assert sweep() == 3
        heard = listener.heard()

    for chat in chats:
        # By type, not arrival: with the clock stopped, channels_redis gives every message the
        # same timestamp, which is how it orders a channel's messages.
        others = [event for event in heard[f"chat.{chat.pk}"] if event["type"] != "message.status"]
        assert sorted(event["type"] for event in others) == ["chat.updated", "message.created"]
        told = {event["type"]: event for event in others}
        assert told["message.created"]["message"]["body"] == EXPIRED
        statuses = [event for event in heard[f"chat.{chat.pk}"] if event["type"] == "message.status"]
        assert {event["outbound_id"] for event in statuses} == {told["message.created"]["message"]["outbound_id"]}
        assert told["chat.updated"]["chat"]["status"] == ChatStatus.FINISHED
        assert told["chat.updated"]["chat"]["finish_reason"] == FinishReason.EXPIRED_UNANSWERED
        assert told["chat.updated"] in heard["supervisors"]
        assert {"type": "queue.chat", "chat_id": chat.pk, "status": "finished"}.items() <= next(
            event for event in queue_changes(heard[queue]) if event["chat_id"] == chat.pk
        ).items()
    finished = [event["data"]["chat"] for event in subscriber.events() if event["type"] == "chat.finished"]
    assert sorted(chat["id"] for chat in finished) == sorted(chat.pk for chat in chats)
    assert {chat["finish_reason"] for chat in finished} == {FinishReason.EXPIRED_UNANSWERED}


# --- an API chat whose text quiet hours hold ---------------------------------------------------------


def test_an_api_chat_held_by_quiet_hours_expires_counted_from_when_its_text_went_out(support, committed, clock, sweep):
    """22:30 in New York: quiet hours hold the API's text until 08:00. The consumer cannot answer
    a text they have not received, so the 30 selecting minutes run from 08:00, not 22:30."""
    clock.move_to(dt.datetime(2025, 3, 3, 22, 30, tzinfo=NEW_YORK), tick=False)
    chat = committed(
        api_sms.start_api_chat,
        consumer_number=CONSUMER, portal_number=support.number, queue=support.billing, body="Your parcel is ready.",
    )
    text = OutboundMessage.objects.get(to_number=CONSUMER, kind="api")
    assert text.status == MessageStatus.HELD

    clock.shift(minutes(30))
    assert sweep() == 0
    chat.refresh_from_db()
    assert chat.status == ChatStatus.SELECTING
    clock.shift(minutes(60 * 4))  # the middle of the night: still held, still not due
    assert sweep() == 0

    opening = dt.datetime(2025, 3, 4, 8, 0, tzinfo=NEW_YORK)
    clock.move_to(opening, tick=False)
    committed(sms_tasks.sweep_outbound)
    text.refresh_from_db()
    assert text.status == MessageStatus.DELIVERED  # the consumer has it now

    clock.shift(minutes(30) - SECOND)
    assert sweep() == 0
    chat.refresh_from_db()
    assert chat.status == ChatStatus.SELECTING
    clock.shift(SECOND)
    assert sweep() == 1
    assert finished(chat, FinishReason.EXPIRED_SELECTING)


def test_an_api_chat_whose_text_went_out_at_once_expires_counted_from_creation(phone, support, committed, clock, sweep):
    chat = committed(
        api_sms.start_api_chat,
        consumer_number=CONSUMER, portal_number=support.number, queue=support.billing, body="Your parcel is ready.",
    )
    assert phone.new_texts() == ["Your parcel is ready."]
    chat.refresh_from_db()
    assert (chat.deadline_kind, chat.deadline_at) == (DeadlineKind.SELECTING, chat.created_at + minutes(30))

    fires_after(clock, sweep, minutes(30))
    assert finished(chat, FinishReason.EXPIRED_SELECTING)


def test_run_sweepers_runs_the_chat_timers(phone, clock, committed):
    queued_in_billing(phone)
    clock.shift(minutes(60))

    result = committed(sweepers.run_sweepers)

    assert result["chats"] == 1


def test_the_sweeper_schedule_is_registered_once_by_name_without_catch_up(db, settings):
    from django_q.models import Schedule

    sweepers.register_schedule()
    sweepers.register_schedule()

    schedule = Schedule.objects.get(name=sweepers.SCHEDULE_NAME)
    assert schedule.func == "chats.sweepers.run_sweepers"
    assert schedule.repeats == -1
    assert settings.Q_CLUSTER["catch_up"] is False
    assert settings.Q_CLUSTER["scheduler_interval"] <= 10


# --- several sweepers at once (PostgreSQL) ---------------------------------------------------------------

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="two sweepers racing need real row locks (SQLite ignores SELECT … FOR UPDATE SKIP LOCKED); "
    "run with DATABASE_URL=postgres://…",
)


@pytest.mark.postgres
@postgres_only
@pytest.mark.django_db(transaction=True)
def test_three_sweeps_at_once_act_on_each_chat_once():
    number = make_number("+15550100001", messages_per_second=1000)
    queue = make_queue("Billing")
    link_number(queue, number)
    QueueMessages.objects.create(queue=queue, language="en")
    count = timers.SWEEP_BATCH * 4
    queued_with_deadlines(queue, number, count)
    later = timezone.now() + minutes(60 + count)

    barrier = threading.Barrier(3)
    results: list = []

    def run():
        try:
            barrier.wait(timeout=30)
            results.append(("ok", timers.sweep(now=later)))
        except BaseException as exc:  # noqa: BLE001 — reported below
            results.append(("error", exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert [kind for kind, _ in results] == ["ok"] * 3, results
    assert sum(value for _, value in results) == count
    assert Chat.objects.filter(status=ChatStatus.FINISHED).count() == count
    assert ChatEvent.objects.filter(kind="status.finished").count() == count
    assert Message.objects.filter(author=Author.SYSTEM, body=EXPIRED).count() == count
    per_chat = Message.objects.filter(body=EXPIRED).values_list("chat_id", flat=True)
    assert len(set(per_chat)) == count
    assert Participant.objects.filter(type=ParticipantType.AGENT).count() == 0


# --- the demo (README): a queued simulator chat expires on its own ----------------------------------


def test_the_demo_expires_a_queued_simulator_chat_at_two_minutes(db, client, committed, time_machine):
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("seed_demo", stdout=StringIO())
    admin = get_user_model().objects.get(username="admin")
    client.force_login(admin)
    time_machine.move_to(START, tick=False)

    def simulate(body):
        response = committed(
            client.post, "/simulator/send/", {"consumer": "+15555550123", "portal": "+15550100001", "body": body}
        )
        assert response.status_code == 200, response.content

    simulate("Hi")
    simulate("1")
    chat = Chat.objects.get(consumer_number="+15555550123")
    assert chat.status == ChatStatus.QUEUED and chat.queue.name == "Billing"  # nobody signed in

    time_machine.shift(minutes(2) - SECOND)
    assert committed(timers.sweep) == 0
    time_machine.shift(SECOND)
    assert committed(timers.sweep) == 1
    assert finished(chat, FinishReason.EXPIRED_UNANSWERED)
