"""The inbound path behind the webhook (chats.intake, DESIGN rule 11): the webhook answers 200 only
for a text it committed, a replay stores nothing new, the batch worker handles a consumer's
texts in the order they came, a text that fails is retried alone and then marked failed, and a
batch that dies in the middle leaves every text pending, handled once by the next run.

The texts are stored as the webhook stores them (the real view, or the row it leaves); the
worker is then run by calling it, as the task and the sweeper do."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection, connections, transaction

import chats.flow
import chats.transcript
from chats import held, intake, services
from chats.models import (
    Author,
    Chat,
    ChatEvent,
    ChatEventKind,
    ChatStatus,
    DisconnectedBy,
    FinishReason,
    Message,
    Participant,
    ParticipantType,
)
from chats.sweepers import run_sweepers
from portal.models import ChatSettings
from sms.models import InboundMessage, InboundState, InboundWake, MessageStatusEvent, OutboundMessage
from tests.chats.conftest import BILLING_QUEUED, CONSUMER, GREETING, INVALID, MENU, PORTAL, TECH_QUEUED, transcript
from tests.concurrency import POSTGRES_ONLY, THREAD_TIMEOUT, assert_no_errors, run_together
from tests.layers import GroupListener, fresh_channel_layer
from tests.webhooks import inbound_params, new_sid, post_inbound, post_signed


def stored(body: str, consumer: str = CONSUMER) -> InboundMessage:
    """A text as the webhook leaves it: committed, pending, nothing else done yet."""
    return intake.store_text(message_sid=new_sid(), from_number=consumer, to_number=PORTAL, body=body, media=[])


def handle_all(capture) -> int:
    with capture(execute=True):
        return intake.process_pending()


def replies(consumer: str = CONSUMER) -> list[str]:
    return list(OutboundMessage.objects.filter(to_number=consumer).order_by("pk").values_list("body", flat=True))


def make_inserts_fail(table: str, *, when: str = "1 = 1") -> None:
    """A trigger that makes the database refuse an INSERT into `table` (NEW.body … in `when`):
    the real failure a full disk or a broken constraint gives."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE OR REPLACE FUNCTION tern_refuse() RETURNS trigger AS $$ BEGIN "
                f"IF {when} THEN RAISE EXCEPTION 'insert refused by the test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(f"CREATE TRIGGER tern_refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION tern_refuse()")
        else:
            cursor.execute(
                f"CREATE TRIGGER tern_refuse BEFORE INSERT ON {table} WHEN {when} "
                "BEGIN SELECT RAISE(ABORT, 'insert refused by the test'); END"
            )


def drop_refusal(table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER tern_refuse ON {table}" if connection.vendor == "postgresql" else "DROP TRIGGER tern_refuse")


# --- the webhook -------------------------------------------------------------------------------


def test_the_webhook_stores_the_text_and_leaves_the_conversation_to_the_worker(client, support):
    response = post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="Hi")

    assert response.status_code == 200
    assert response.content == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
    text = InboundMessage.objects.get()
    assert (text.body, text.state) == ("Hi", InboundState.PENDING)
    assert not Chat.objects.exists() and replies() == []


def test_a_text_the_database_refuses_is_not_acknowledged_and_nothing_is_half_written(client, support):
    make_inserts_fail("sms_inboundmessage")

    response = post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="Hi")

    assert response.status_code == 503  # Twilio keeps a text it did not get a 200 for
    assert response["Retry-After"]
    assert not InboundMessage.objects.exists() and not Chat.objects.exists() and replies() == []


def test_a_replayed_text_stores_nothing_new_and_gets_no_second_answer(client, support, django_capture_on_commit_callbacks):
    params = inbound_params(from_number=CONSUMER, to_number=PORTAL, body="Hi")
    with django_capture_on_commit_callbacks(execute=True):
        first = post_signed(client, "/sms/twilio/inbound/", params)
    answered = replies()
    with django_capture_on_commit_callbacks(execute=True):
        again = post_signed(client, "/sms/twilio/inbound/", params)

    assert first.status_code == again.status_code == 200
    assert InboundMessage.objects.count() == 1
    assert answered == [support_opt_in(), GREETING, MENU]
    assert replies() == answered


def support_opt_in() -> str:
    from portal.models import ChatSettings

    return ChatSettings.load().opt_in_message


def test_a_nul_character_does_not_lose_the_text(client, support):
    response = post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="Hi\x00there")

    assert response.status_code == 200
    assert InboundMessage.objects.get().body == "Hithere"


# --- order -------------------------------------------------------------------------------------


def test_a_consumers_texts_waiting_together_are_handled_in_the_order_they_came(support, django_capture_on_commit_callbacks):
    for body in ("Hi", "7", "2", "Is anyone there?"):
        stored(body)

    assert handle_all(django_capture_on_commit_callbacks) == 4

    chat = Chat.objects.get()
    assert (chat.status, chat.queue) == (ChatStatus.QUEUED, support.tech)
    assert [body for _, body in transcript(chat) if _ == Author.CONSUMER] == ["Hi", "7", "2", "Is anyone there?"]
    assert replies() == [support_opt_in(), GREETING, MENU, INVALID, MENU, TECH_QUEUED]
    assert list(InboundMessage.objects.order_by("pk").values_list("outcome", flat=True)) == [
        "menu", "invalid_choice", "queued", "message"
    ]


def test_a_plain_text_held_for_the_batch_end_is_written_before_the_consumers_next_text_acts(
    support, django_capture_on_commit_callbacks
):
    """A text that only goes into the transcript is written with the batch's others at its end,
    unless the consumer's next text in the batch comes first: that one may end the chat, whose
    transcript then has both in the order they came."""
    stored("Hi"), stored("1")
    handle_all(django_capture_on_commit_callbacks)
    chat = Chat.objects.get()
    for body in ("Still there?", "And now?", "EXIT"):
        stored(body)

    assert handle_all(django_capture_on_commit_callbacks) == 3

    chat.refresh_from_db()
    assert chat.status == ChatStatus.FINISHED and chat.finish_reason == FinishReason.END_USER_EXIT
    assert [body for author, body in transcript(chat) if author == Author.CONSUMER] == [
        "Hi", "1", "Still there?", "And now?", "EXIT"
    ]
    assert list(InboundMessage.objects.order_by("pk").values_list("outcome", flat=True))[-3:] == [
        "message", "message", "exit"
    ]


def test_a_chat_opened_and_ended_in_one_batch_has_its_participant_and_events_written_in_order(
    support, django_capture_on_commit_callbacks
):
    """A new chat's participant and CREATED event are held for the batch's end, unless the
    consumer's next text of the batch comes first: here it ends the chat, which ends the
    participant and records FINISHED after CREATED."""
    stored("Hi"), stored("EXIT")

    assert handle_all(django_capture_on_commit_callbacks) == 2

    chat = Chat.objects.get()
    assert chat.status == ChatStatus.FINISHED
    participant = Participant.objects.get(chat=chat, type=ParticipantType.END_USER)
    assert participant.ended_at is not None
    assert list(ChatEvent.objects.filter(chat=chat).order_by("at", "pk").values_list("kind", flat=True)) == [
        ChatEventKind.CREATED, ChatEventKind.FINISHED
    ]


def test_a_reply_held_for_the_batch_end_goes_out_before_one_sent_at_once(support, django_capture_on_commit_callbacks):
    """Inside a batch the system's replies are held and queued with the batch's others at its end
    (chats.held); a text sent to the same consumer at once meanwhile goes after them, in the
    consumer's queue of texts and in the transcript, never ahead."""
    stored("Hi"), stored("1")
    handle_all(django_capture_on_commit_callbacks)
    chat = Chat.objects.get()
    before = replies()

    with django_capture_on_commit_callbacks(execute=True), held.held_writes(), transaction.atomic():
        chats.transcript.send_texts([(chat, "Held first")])
        assert replies() == before  # held
        chats.transcript.send_text(chat=chat, body="Sent at once")
        held.write_held()

    assert replies()[len(before):] == ["Held first", "Sent at once"]
    assert [body for _, body in transcript(chat)][-2:] == ["Held first", "Sent at once"]


def test_in_a_batch_only_consumers_new_to_the_number_get_the_opt_in_message(support, django_capture_on_commit_callbacks):
    """The batch reads once which of its consumers texted the number before: a returning consumer's
    new chat starts with the greeting, a new consumer's with the opt-in message."""
    stored("Hi")
    handle_all(django_capture_on_commit_callbacks)
    services.end_chat(chat=Chat.objects.get(), by=DisconnectedBy.SYSTEM, reason=FinishReason.EXPIRED_SELECTING,
                      notify_consumer=False)
    before = len(replies())
    newcomers = ["+15557660001", "+15557660002"]
    for consumer in (CONSUMER, *newcomers):  # three first texts: the batch reads its facts once
        stored("Hello again", consumer)

    assert handle_all(django_capture_on_commit_callbacks) == 3

    assert replies()[before:] == [GREETING, MENU]
    for consumer in newcomers:
        assert replies(consumer) == [support_opt_in(), GREETING, MENU]
    for chat in Chat.objects.filter(status=ChatStatus.SELECTING):  # the first deadline saved with the chat
        assert chat.deadline_kind == "expired_selecting"
        assert chat.deadline_at == chat.last_consumer_message_at + dt.timedelta(
            minutes=ChatSettings.load().selecting_expiration_minutes
        )


def test_a_text_waiting_for_a_retry_holds_back_the_same_consumers_later_texts(support, django_capture_on_commit_callbacks):
    """A menu answer is never applied to the wrong menu: while the first text waits for its
    retry, the consumer's "1" waits too; another consumer's texts go on."""
    make_inserts_fail("chats_chat", when=f"NEW.consumer_number = '{CONSUMER}'")
    first = stored("Hi")
    choice = stored("1")
    other = stored("Hello", consumer="+15557650000")

    handle_all(django_capture_on_commit_callbacks)
    first.refresh_from_db(), choice.refresh_from_db(), other.refresh_from_db()
    assert (first.state, first.attempts, choice.state, choice.attempts) == ("pending", 1, "pending", 0)
    assert first.error  # what went wrong, for the admin
    assert other.state == "done"
    assert not Chat.objects.filter(consumer_number=CONSUMER).exists()

    drop_refusal("chats_chat")
    InboundMessage.objects.filter(pk=first.pk).update(next_attempt_at=None)  # its retry is due
    handle_all(django_capture_on_commit_callbacks)

    chat = Chat.objects.get(consumer_number=CONSUMER)
    assert (chat.status, chat.queue) == (ChatStatus.QUEUED, support.billing)
    assert replies() == [support_opt_in(), GREETING, MENU, BILLING_QUEUED]


# --- failures ----------------------------------------------------------------------------------


def test_a_text_that_keeps_failing_is_marked_failed_with_its_error_and_blocks_nobody_else(
    support, django_capture_on_commit_callbacks, clock, admin_client
):
    make_inserts_fail("chats_message", when="NEW.body = 'boom'")
    texts = [stored("Hi", consumer=f"+1555765000{n}") for n in range(3)]
    for text in texts:
        stored("boom" if text == texts[1] else "1", consumer=text.from_number)

    handle_all(django_capture_on_commit_callbacks)
    for _ in range(intake.MAX_ATTEMPTS - 1):
        clock.shift(dt.timedelta(seconds=max(intake.RETRY_DELAYS) + 1))
        run_sweepers()
        handle_all(django_capture_on_commit_callbacks)

    states = dict(InboundMessage.objects.filter(body__in=["1", "boom"]).values_list("from_number", "state"))
    assert states == {texts[0].from_number: "done", texts[1].from_number: "failed", texts[2].from_number: "done"}
    failed = InboundMessage.objects.get(body="boom")
    assert failed.attempts == intake.MAX_ATTEMPTS and "insert refused by the test" in failed.error
    assert Message.objects.filter(body="boom").count() == 0  # rolled back each time, never half-written

    page = admin_client.get("/admin/sms/inboundmessage/?state=failed")
    assert page.status_code == 200
    assert failed.message_sid in page.content.decode()
    detail = admin_client.get(f"/admin/sms/inboundmessage/{failed.pk}/change/")
    assert "insert refused by the test" in detail.content.decode()

    drop_refusal("chats_message")
    admin_client.post(
        "/admin/sms/inboundmessage/", {"action": "try_again", "_selected_action": [failed.pk]}
    )
    handle_all(django_capture_on_commit_callbacks)
    failed.refresh_from_db()
    assert failed.state == "done" and Message.objects.filter(body="boom").count() == 1


def test_a_text_that_fails_after_some_replies_were_queued_takes_them_back_and_the_others_keep_theirs(
    support, django_capture_on_commit_callbacks
):
    """The replies' status events of a batch are inserted together at its end: those of a text
    rolled back after its first replies were queued go with it, the others' are all there."""
    consumers = [f"+1555767000{n}" for n in range(3)]
    menu = MENU.replace("'", "''")
    make_inserts_fail("sms_outboundmessage", when=f"NEW.to_number = '{consumers[1]}' AND NEW.body = '{menu}'")
    texts = [stored("Hi", consumer=consumer) for consumer in consumers]

    handle_all(django_capture_on_commit_callbacks)

    states = [InboundMessage.objects.get(pk=text.pk).state for text in texts]
    assert states == [InboundState.DONE, InboundState.PENDING, InboundState.DONE]  # the second waits for its retry
    assert replies(consumers[1]) == []  # its opt-in and greeting were taken back with it
    for consumer in (consumers[0], consumers[2]):
        assert replies(consumer) == [support_opt_in(), GREETING, MENU]
    first_events = MessageStatusEvent.objects.filter(status="queued").values_list("message_id", flat=True)
    assert sorted(first_events) == sorted(OutboundMessage.objects.values_list("pk", flat=True))  # none left without its message


def test_when_a_text_fails_its_batch_runs_again_and_the_others_are_told_and_sent_once(
    support, settings, django_capture_on_commit_callbacks
):
    """A batch runs its texts without a savepoint each; the one that raises rolls the batch back
    and it runs again, each text on its own. What the first run did is never seen: each other
    consumer's text reaches its chat's page once, the failing one's never."""
    consumers = [f"+1555768000{n}" for n in range(3)]
    for consumer in consumers:
        stored("Hi", consumer=consumer)
        stored("1", consumer=consumer)
    handle_all(django_capture_on_commit_callbacks)
    chats = {chat.consumer_number: chat for chat in Chat.objects.filter(consumer_number__in=consumers)}
    listener = GroupListener(fresh_channel_layer(settings), [f"chat.{chat.pk}" for chat in chats.values()])
    make_inserts_fail("chats_message", when="NEW.body = 'boom'")
    texts = [stored("boom" if consumer == consumers[1] else f"Still there? {n}", consumer=consumer)
             for n, consumer in enumerate(consumers)]

    assert handle_all(django_capture_on_commit_callbacks) == 3

    states = [InboundMessage.objects.get(pk=text.pk) for text in texts]
    assert [(text.state, text.attempts) for text in states] == [("done", 0), ("pending", 1), ("done", 0)]
    heard = listener.heard()
    for n, consumer in enumerate(consumers):
        told = [event["message"]["body"] for event in heard[f"chat.{chats[consumer].pk}"]
                if event["type"] == "message.created"]
        assert told == ([] if n == 1 else [f"Still there? {n}"])
        bodies = [body for author, body in transcript(chats[consumer]) if author == Author.CONSUMER]
        assert bodies == ["Hi", "1"] + ([] if n == 1 else [f"Still there? {n}"])


def test_a_batch_that_dies_in_the_middle_leaves_every_text_pending_and_the_next_run_handles_each_once(
    support, monkeypatch, django_capture_on_commit_callbacks
):
    """The worker killed mid-batch (SystemExit is what django-q2's worker gets on SIGTERM; a
    SIGKILL commits nothing either): the batch's transaction never commits."""
    for n in range(5):
        stored("Hi", consumer=f"+1555766000{n}")
    handle = chats.flow.handle_inbound
    seen = []

    def dies_on_the_third(inbound, facts=None):
        seen.append(inbound.pk)
        if len(seen) == 3:
            raise SystemExit("worker killed")
        return handle(inbound, facts)

    monkeypatch.setattr(chats.flow, "handle_inbound", dies_on_the_third)
    with pytest.raises(SystemExit):
        handle_all(django_capture_on_commit_callbacks)
    assert InboundMessage.objects.filter(state="pending").count() == 5
    assert not Chat.objects.exists() and not OutboundMessage.objects.exists()

    monkeypatch.setattr(chats.flow, "handle_inbound", handle)
    assert handle_all(django_capture_on_commit_callbacks) == 5
    assert Chat.objects.count() == 5
    for n in range(5):
        assert replies(f"+1555766000{n}") == [support_opt_in(), GREETING, MENU]


def test_the_sweeper_handles_a_text_whose_wake_up_was_lost(support, django_capture_on_commit_callbacks):
    stored("Hi")  # its after-commit wake-up never ran: the test transaction does not commit

    with django_capture_on_commit_callbacks(execute=True):
        result = run_sweepers()

    assert result["inbound"] == 1
    assert replies() == [support_opt_in(), GREETING, MENU]


# --- workers racing (PostgreSQL) ---------------------------------------------------------------


def on_postgres(test):
    for mark in POSTGRES_ONLY:
        test = mark(test)
    return test


@pytest.mark.parametrize("workers", [4])
@on_postgres
def test_workers_racing_take_each_text_once_and_each_consumers_texts_in_order(support, workers):
    consumers = [f"+155577{n:05d}" for n in range(40)]
    for consumer in consumers:
        for body in ("Hi", "2", "Still there?"):
            InboundMessage.objects.create(message_sid=new_sid(), from_number=consumer, to_number=PORTAL, body=body)

    def worker():
        handled = 0
        while True:
            count = intake.process_batch(limit=7)
            handled += count
            if count == 0 and not InboundMessage.objects.filter(state="pending").exists():
                return handled

    results = run_together(*[worker for _ in range(workers)])

    assert_no_errors(results)
    assert sum(value for _, value in results) == 120
    assert InboundMessage.objects.filter(state="done").count() == 120
    for consumer in consumers:
        chat = Chat.objects.get(consumer_number=consumer)
        assert (chat.status, chat.queue_id) == (ChatStatus.QUEUED, support.tech.pk)
        assert [body for author, body in transcript(chat) if author == Author.CONSUMER] == ["Hi", "2", "Still there?"]
        assert replies(consumer) == [support_opt_in(), GREETING, MENU, TECH_QUEUED]


@on_postgres
def test_a_worker_holding_a_consumers_text_keeps_their_next_text_from_other_workers(support, monkeypatch):
    first = InboundMessage.objects.create(message_sid=new_sid(), from_number=CONSUMER, to_number=PORTAL, body="Hi")
    InboundMessage.objects.create(message_sid=new_sid(), from_number=CONSUMER, to_number=PORTAL, body="1")
    InboundMessage.objects.create(message_sid=new_sid(), from_number="+15557650000", to_number=PORTAL, body="Hello")
    holding, release = threading.Event(), threading.Event()
    handle = chats.flow.handle_inbound

    def hold_the_first(inbound, facts=None):
        outcome = handle(inbound, facts)
        if inbound.pk == first.pk:
            holding.set()
            assert release.wait(THREAD_TIMEOUT)
        return outcome

    monkeypatch.setattr(chats.flow, "handle_inbound", hold_the_first)
    results = []

    def slow_worker():
        try:
            results.append(intake.process_batch(limit=1))
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow_worker, daemon=True)
    thread.start()
    try:
        assert holding.wait(THREAD_TIMEOUT)
        # Another worker meanwhile: the consumer's "1" is not its to take; the other consumer's is.
        assert intake.process_batch() == 1
        assert InboundMessage.objects.get(body="Hello").state == "done"
        assert InboundMessage.objects.get(body="1").state == "pending"
    finally:
        release.set()
        thread.join(THREAD_TIMEOUT)
    assert results == [1]
    assert intake.process_batch() == 1
    chat = Chat.objects.get(consumer_number=CONSUMER)
    assert (chat.status, chat.queue_id) == (ChatStatus.QUEUED, support.billing.pk)


# --- the ASGI app: the webhooks' short path ------------------------------------------------------


async def asgi_post(path: str, params: dict, signature: str) -> tuple[int, dict]:
    from urllib.parse import urlencode

    from channels.testing import HttpCommunicator

    from portal.asgi import application

    communicator = HttpCommunicator(
        application, "POST", path, body=urlencode(params).encode(),
        headers=[(b"host", b"testserver"), (b"content-type", b"application/x-www-form-urlencoded"),
                 (b"x-twilio-signature", signature.encode())],
    )
    response = await communicator.get_response(timeout=10)
    return response["status"], {k.decode().lower(): v.decode() for k, v in response["headers"]}


@pytest.mark.django_db(transaction=True)
async def test_through_the_asgi_app_the_webhook_stores_and_checks_the_signature_and_pages_keep_their_headers(support):
    from asgiref.sync import sync_to_async

    from tests.webhooks import sign

    params = inbound_params(from_number=CONSUMER, to_number=PORTAL, body="Hi")
    status, _ = await asgi_post("/sms/twilio/inbound/", params, sign("http://testserver/sms/twilio/inbound/", params))
    refused, _ = await asgi_post("/sms/twilio/inbound/", {**params, "MessageSid": new_sid()}, "forged")

    assert (status, refused) == (200, 403)
    assert await sync_to_async(InboundMessage.objects.filter(message_sid=params["MessageSid"]).exists)()
    assert await sync_to_async(InboundMessage.objects.count)() == 1

    from channels.testing import HttpCommunicator

    from portal.asgi import application

    page = await HttpCommunicator(application, "GET", "/accounts/login/", headers=[(b"host", b"testserver")]).get_response(timeout=10)
    headers = {k.decode().lower(): v.decode() for k, v in page["headers"]}
    assert page["status"] == 200 and headers.get("x-frame-options") == "DENY"


def test_a_wake_request_whose_task_never_ran_is_cleared_by_the_sweeper(support, django_capture_on_commit_callbacks, settings):
    """Without Redis the flag is a row: a task that was never enqueued (the broker failed after
    the flag was set) must not keep every later webhook from waking a worker."""
    from chats.intake import _ask
    from portal import shared_redis

    if settings.REDIS_URL:
        shared_redis.client().set(intake.WAKE_KEY, 1, ex=intake.WAKE_TTL_SECONDS)
    else:
        InboundWake.objects.update_or_create(pk=1, defaults={"requested": True})
    assert _ask() is False  # a webhook now would enqueue nothing

    with django_capture_on_commit_callbacks(execute=True):
        run_sweepers()

    assert _ask() is True  # the next webhook wakes a worker again


@pytest.mark.parametrize(
    "field, value",
    [("From", "whatsapp:+155576543210000"), ("To", "+1555010000100000000000"), ("MessageSid", "SM" + "0" * 70), ("From", "+1555\x00765")],
)
def test_a_malformed_sender_number_or_sid_is_refused_with_400_not_retried_forever(client, support, field, value):
    """A value the inbound log cannot hold is refused for good (400), never a 500 nor a 503 that
    Twilio would retry the same way."""
    params = inbound_params(from_number=CONSUMER, to_number=PORTAL, body="Hi")
    params[field] = value
    if field == "MessageSid":
        params["SmsSid"] = value

    response = post_signed(client, "/sms/twilio/inbound/", params)

    assert response.status_code == 400
    assert response.content.decode() == f"{field} is malformed."
    assert not InboundMessage.objects.exists()
