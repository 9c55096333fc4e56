"""The hot path's cost (DESIGN, Tests): the webhook, then each kind of consumer text as the batch
worker handles it (chats.intake), in a bounded number of queries whatever the length of the chat.

The webhook only stores: its queries are counted alone. The texts of a conversation as
bench/inbound.py sends them — a first text (a new chat: opt-in, greeting, menu), the menu choice,
then texts in the queued chat — are then handled by `intake.process_batch()`, with their replies
handed to the task queue as in production (the test settings otherwise send them inline, and the
send task is not the text's cost). The queue here is an in-memory one, so the figures do not
depend on the broker: django-q2's ORM broker adds one INSERT per trip, Redis none."""
import datetime as dt
import zoneinfo

import pytest

from chats import intake, services
from chats.models import Author, Chat, ChatStatus, Message
from sms.models import InboundMessage, InboundState, MessageStatus, OutboundMessage
from sms.send_queue import SEND_MANY, SEND_ONE
from tests.api_client import make_api
from tests.chats.conftest import CONSUMER, GREETING, MENU, PORTAL
from tests.factories import make_transcript
from tests.webhooks import post_inbound

# The figures as they are: a regression fails here. In a test the after-commit work runs after
# the request, out of its settings cache, so the event webhooks' subscribers are read once per
# event here, once per batch in production.
#
# The webhook: the savepoint, the INSERT, the wake flag (without Redis; with Redis it is a cache
# key) and the savepoint's release.
WEBHOOK_MAX = 4
# A text in a chat, handled: the claim, the settings, the chat (with its number, the consumer's
# opt-out and the command words, in one query), the transcript entry, the chat's timestamps and
# the text's state; in a queued chat, the queue's assignment run after commit. Was 9 on the
# request path, without the claim and the state; 11 while each text had a savepoint of its own
# in the batch (now only when a text of the batch failed and it runs again).
TEXT_IN_A_CHAT_MAX = 9
# A new chat's first text, with its three replies (opt-in, greeting, menu: the messages, their
# first status events and their transcript entries in one INSERT each), and whether a CSAT survey
# awaits the consumer's answer; the chat's first deadline goes in with its INSERT. Was 37 on the
# request path, then 30, then 29 with an INSERT for each reply and each transcript entry, then 25
# with a savepoint of its own.
FIRST_TEXT_MAX = 22
# The menu choice that queues the chat, with the queued text (the choice's transcript entry goes in
# with the text's, and its last text time with the chat's move to the queue); was 22 with a
# savepoint of its own, 19 with an INSERT and an UPDATE of its own.
MENU_CHOICE_MAX = 17
# The agent's reply, without the send task that runs after commit.
AGENT_REPLY_MAX = 12


class MemoryBroker:
    """A django-q2 broker that keeps what is enqueued in a list."""

    enqueued: list = []

    def __init__(self, list_key=None):
        self.list_key = list_key

    def enqueue(self, task):
        MemoryBroker.enqueued.append(task)
        return len(MemoryBroker.enqueued)


@pytest.fixture
def task_queue(monkeypatch):
    """Replies (and the batch worker's wake-up) go to the task queue, as in production, instead
    of being run inline; returns how many sends were enqueued so far, and in how many tasks."""
    from django_q.conf import Conf
    from django_q.signing import SignedPackage

    from sms import send_queue

    MemoryBroker.enqueued = []
    monkeypatch.setattr(send_queue._brokers, "broker", None, raising=False)  # the thread's cached one
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "BROKER_CLASS", f"{__name__}.MemoryBroker")

    def sends() -> tuple[int, int]:
        tasks = [SignedPackage.loads(task) for task in MemoryBroker.enqueued]
        jobs = [1 if t["func"] == SEND_ONE else len(t["args"][0]) for t in tasks if t["func"] in (SEND_ONE, SEND_MANY)]
        return sum(jobs), len(jobs)

    return sends


def queued_replies(consumer=CONSUMER) -> list[str]:
    return list(
        OutboundMessage.objects.filter(to_number=consumer, status=MessageStatus.QUEUED)
        .order_by("pk")
        .values_list("body", flat=True)
    )


def store(client, body, capture, consumer=CONSUMER):
    with capture(execute=True):
        response = post_inbound(client, from_number=consumer, to_number=PORTAL, body=body)
    assert response.status_code == 200
    return response


def text(client, body, capture, consumer=CONSUMER):
    """The webhook stores the text; the batch worker handles it (and its after-commit work)."""
    store(client, body, capture, consumer)
    with capture(execute=True):
        assert intake.process_batch() == 1


def test_the_webhook_only_stores_and_wakes_the_worker(
    client, support, task_queue, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    with django_assert_max_num_queries(WEBHOOK_MAX):
        store(client, "Hi, I have a question", django_capture_on_commit_callbacks)

    text = InboundMessage.objects.get()
    assert (text.state, text.outcome) == (InboundState.PENDING, "")
    assert [SignedPackage_func(task) for task in MemoryBroker.enqueued] == [intake.RUN_TASK]
    assert queued_replies() == []


def SignedPackage_func(task) -> str:
    from django_q.signing import SignedPackage

    return SignedPackage.loads(task)["func"]


def test_a_first_text_costs_a_bounded_number_of_queries(
    client, support, chat_settings, task_queue, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    store(client, "Hi, I have a question", django_capture_on_commit_callbacks)

    with django_assert_max_num_queries(FIRST_TEXT_MAX), django_capture_on_commit_callbacks(execute=True):
        assert intake.process_batch() == 1

    assert queued_replies() == [chat_settings.opt_in_message, GREETING, MENU]
    assert task_queue() == (3, 1)  # one consumer's three replies: one task, in order


def test_a_menu_choice_costs_a_bounded_number_of_queries(
    client, support, task_queue, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    text(client, "Hi, I have a question", django_capture_on_commit_callbacks)
    store(client, "1", django_capture_on_commit_callbacks)

    with django_assert_max_num_queries(MENU_CHOICE_MAX), django_capture_on_commit_callbacks(execute=True):
        assert intake.process_batch() == 1

    chat = Message.objects.filter(body="1").get().chat
    assert (chat.status, chat.queue) == (ChatStatus.QUEUED, support.billing)
    assert task_queue()[0] == 4
    # The choice in the transcript, ahead of the queued text; its time on the chat.
    *_, choice, queued = chat.messages.order_by("pk")
    assert (choice.author, choice.body, queued.author) == (Author.CONSUMER, "1", Author.SYSTEM)
    assert chat.last_consumer_message_at > chat.created_at


@pytest.mark.parametrize("earlier", [0, 1000])
def test_a_text_in_a_queued_chat_costs_a_bounded_number_of_queries(
    client, support, task_queue, earlier, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    text(client, "Hi, I have a question", django_capture_on_commit_callbacks)
    text(client, "1", django_capture_on_commit_callbacks)
    chat = Message.objects.filter(body="1").get().chat
    make_transcript(chat, earlier)
    store(client, "Anyone there? I have been waiting a while.", django_capture_on_commit_callbacks)

    with django_assert_max_num_queries(TEXT_IN_A_CHAT_MAX), django_capture_on_commit_callbacks(execute=True):
        assert intake.process_batch() == 1

    assert chat.messages.filter(body="Anyone there? I have been waiting a while.").exists()
    assert task_queue()[0] == 4  # no reply to a text in the queue


# A batch of first texts from many consumers: what each text adds, and what the batch costs
# whatever its size (the claim; the numbers, chats, opt-outs, open CSAT surveys and command words
# of the batch, read once, and which of its consumers texted the number before (the opt-in goes to
# the others); the settings; the replies' status events in one INSERT and the texts marked done
# in one UPDATE). Alone, a first text is 25; in a batch it was 16 before the first-contact check
# joined the batch's reads and the chat's deadline its INSERT, 14 before its three replies and
# their transcript entries went in with one INSERT each, 10 before a batch ran without a savepoint
# per text, 7 before the new chats' participants and events went in with one INSERT each for the
# batch (chats.held), 5 before the replies and their transcript entries went in with the batch's
# others (chats.held): what is left is the chat's INSERT, in a savepoint (another text of the
# consumer's may have made it a moment ago). 118 queries for 20 texts before, 81 after.
BATCH_FIXED_MAX = 21
PER_FIRST_TEXT_MAX = 3


def test_a_batch_of_first_texts_costs_less_per_text_and_sends_in_few_tasks(
    client, support, chat_settings, task_queue, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    consumers = [f"+1555765{n:04d}" for n in range(20)]
    for consumer in consumers:
        store(client, "Hi", django_capture_on_commit_callbacks, consumer=consumer)

    with django_assert_max_num_queries(BATCH_FIXED_MAX + PER_FIRST_TEXT_MAX * len(consumers)), \
            django_capture_on_commit_callbacks(execute=True):
        assert intake.process_batch() == len(consumers)

    for consumer in consumers:
        assert queued_replies(consumer) == [chat_settings.opt_in_message, GREETING, MENU]
    assert task_queue() == (60, 3)  # 60 replies in tasks of at most 25, each consumer's in one


# A batch of texts in queued chats, one per consumer: the batch's reads (the claim, the settings,
# the numbers, chats, opt-outs and command words), the transcript entries in one INSERT and the
# chats' last-text times and deadlines in one UPDATE, the texts marked done, and the queue's
# assignment run after commit. Nothing per text (each was an INSERT and an UPDATE of its own, and
# a savepoint).
BATCH_IN_CHATS_MAX = 12
# The same when each consumer texted twice: the batch runs in rounds, each pair's first text and
# then each pair's second, the round's facts read once for all its texts (a pair's second text
# looked its chat up alone, and wrote what the batch held so far, before: 3 queries a consumer).
BATCH_TWICE_IN_CHATS_MAX = 16
# A batch of menu choices, one per consumer, each entering its queue: the batch's reads, the
# choices' and the queued notices' transcript entries and the notices themselves with the
# batch's others (chats.held); per choice, the chat's UPDATE to queued. 76 queries for 20
# choices when each choice's entries and notice went in on their own, 38 since.
BATCH_MENU_FIXED_MAX = 18
PER_MENU_CHOICE_MAX = 1


@pytest.mark.parametrize("texts, max_queries", [(1, BATCH_IN_CHATS_MAX), (2, BATCH_TWICE_IN_CHATS_MAX)])
def test_a_batch_of_texts_in_chats_costs_the_same_whatever_its_size(
    texts, max_queries, client, support, task_queue, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    consumers = [f"+1555766{n:04d}" for n in range(20)]
    for consumer in consumers:
        store(client, "Hi", django_capture_on_commit_callbacks, consumer=consumer)
        store(client, "1", django_capture_on_commit_callbacks, consumer=consumer)
    with django_capture_on_commit_callbacks(execute=True):
        intake.process_pending()
    bodies = ["Still waiting, {}", "Hello? {}"][:texts]
    for consumer in consumers:
        for body in bodies:
            store(client, body.format(consumer), django_capture_on_commit_callbacks, consumer=consumer)

    with django_assert_max_num_queries(max_queries), django_capture_on_commit_callbacks(execute=True):
        assert intake.process_batch() == texts * len(consumers)

    for chat in Chat.objects.filter(consumer_number__in=consumers):
        assert chat.status == ChatStatus.QUEUED
        said = [m.body for m in chat.messages.order_by("pk")][-texts:]
        assert said == [body.format(chat.consumer_number) for body in bodies]
        assert chat.last_consumer_message_at > chat.created_at
    assert task_queue()[0] == 4 * len(consumers)  # no reply to a text in the queue


def test_a_batch_of_menu_choices_costs_less_per_text(
    client, support, task_queue, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    consumers = [f"+1555767{n:04d}" for n in range(20)]
    for consumer in consumers:
        store(client, "Hi", django_capture_on_commit_callbacks, consumer=consumer)
    with django_capture_on_commit_callbacks(execute=True):
        intake.process_pending()
    for consumer in consumers:
        store(client, "1", django_capture_on_commit_callbacks, consumer=consumer)

    with django_assert_max_num_queries(BATCH_MENU_FIXED_MAX + PER_MENU_CHOICE_MAX * len(consumers)), \
            django_capture_on_commit_callbacks(execute=True):
        assert intake.process_batch() == len(consumers)

    for chat in Chat.objects.filter(consumer_number__in=consumers):
        assert (chat.status, chat.queue) == (ChatStatus.QUEUED, support.billing)
        *_, choice, queued = chat.messages.order_by("pk")
        assert (choice.author, choice.body, queued.author) == (Author.CONSUMER, "1", Author.SYSTEM)
        assert queued_replies(chat.consumer_number)[-1] == queued.body
    assert task_queue()[0] == 4 * len(consumers)


@pytest.fixture
def assigned_chat(phone, alice, go_online):
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    chat = phone.chat()
    assert chat.status == ChatStatus.ASSIGNED
    return chat


@pytest.mark.parametrize("earlier", [0, 10, 1000])
def test_a_consumer_text_in_an_assigned_chat_costs_a_bounded_number_of_queries(
    client, assigned_chat, earlier, task_queue, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    make_transcript(assigned_chat, earlier)
    before = Message.objects.filter(chat=assigned_chat).count()

    store(client, "One more thing", django_capture_on_commit_callbacks)

    with django_assert_max_num_queries(TEXT_IN_A_CHAT_MAX), django_capture_on_commit_callbacks(execute=True):
        assert intake.process_batch() == 1

    assert Message.objects.filter(chat=assigned_chat).count() == before + 1


@pytest.mark.parametrize("earlier", [0, 1000])
def test_an_agent_reply_costs_a_bounded_number_of_queries(
    assigned_chat, alice, earlier, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    """The reply itself, without the send task that runs after commit."""
    make_transcript(assigned_chat, earlier)

    with django_assert_max_num_queries(AGENT_REPLY_MAX):
        services.send_agent_message(agent=alice, chat=assigned_chat, body="Let me check that for you.")

    assert assigned_chat.messages.filter(author="agent").count() == 1


def test_pushed_chats_read_their_queue_and_number_once_per_block(assigned_chat, django_assert_num_queries):
    """A chat.updated carries the queue's name and the portal number: a chat loaded without them
    (most code paths select_related them) reads each once per unit of work, not once per chat."""
    from chats.events import chat_payload
    from portal.singletons import cached_singletons

    copies = [Chat.objects.get(pk=assigned_chat.pk) for _ in range(5)]  # queue and number not loaded

    with cached_singletons(), django_assert_num_queries(2):
        payloads = [chat_payload(chat) for chat in copies]

    assert {(p["queue_name"], p["portal_number"]) for p in payloads} == {("Billing", PORTAL)}


def test_a_settings_change_applies_to_the_next_text(phone, chat_settings, make_phone):
    """The settings are read once per text, not kept: what an admin saves applies at once."""
    phone.text("Hi")
    assert phone.new_texts()[0] == chat_settings.opt_in_message

    chat_settings.opt_in_message = "Welcome! Reply STOP to opt out."
    chat_settings.save()
    other = make_phone("+15557650001")
    other.text("Hi")

    assert other.new_texts()[0] == "Welcome! Reply STOP to opt out."


# The Outbound SMS API (SPEC A1), one request that opens a chat: the credential, the settings,
# the number with its queues (one query), the consumer's active chat locked, do-not-contact, the
# chat (a savepoint for the one-active-chat constraint around its INSERT, deadline included), its
# participant and created event, the event webhooks' subscribers, the text (on PostgreSQL the
# duplicate limiter's lock on the pair of numbers, one more; the duplicate check, the contact's
# zone and the quiet-hours rules, the message and its first status event, the transcript entry),
# the CRM record (lookup, contact, record, opening entry, the chat's link), then the chat object
# read for the answer with its relations (5). In a test the request's transaction is a savepoint
# (2 more). Was 34 (36 for an outbound-only number).
API_SMS_MAX = 30


@pytest.mark.parametrize("earlier", [0, 1000])
def test_an_outbound_sms_api_request_costs_a_bounded_number_of_queries(
    client, support, task_queue, earlier, time_machine, django_assert_max_num_queries,
    django_capture_on_commit_callbacks,
):
    time_machine.move_to(dt.datetime(2030, 3, 5, 10, 0, tzinfo=zoneinfo.ZoneInfo("America/New_York")), tick=False)
    api = make_api(client, django_capture_on_commit_callbacks)
    request = {"chat_type": "sms", "chat_subtype": "api_initiated", "end_user_number": CONSUMER,
               "outbound_number": PORTAL, "message": "Your order #1234 is ready for pickup."}
    earlier_chat = Chat.objects.get(pk=api.post("/apps/api/v1/sms", request).json()["id"])
    make_transcript(earlier_chat, earlier)
    Chat.objects.filter(pk=earlier_chat.pk).update(status=ChatStatus.FINISHED)

    with django_assert_max_num_queries(API_SMS_MAX):
        response = api.post("/apps/api/v1/sms", {**request, "message": "Your refund was sent."})

    assert response.status_code == 200, response.json()
    chat = Chat.objects.get(pk=response.json()["id"])
    assert (chat.status, chat.deadline_kind) == (ChatStatus.SELECTING, "expired_selecting")
    assert list(chat.messages.values_list("body", flat=True)) == ["Your refund was sent."]
    assert task_queue()[0] == 2  # each request's text handed to the send task
