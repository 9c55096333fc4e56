"""SPEC S11 under concurrency (DESIGN rule 4): two workers sending the same message send it once,
and the duplicate limiter holds when the same text is sent twice at the same moment.

PostgreSQL only: SQLite takes one write lock for the whole database and ignores SELECT … FOR
UPDATE, so a race there proves nothing. CI runs the suite a second time with
DATABASE_URL=postgres://…, where these run. Every thread opens its own connection and closes it."""
from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from portal.models import ChatSettings
from sms.models import OutboundMessage
from sms.pipeline import DUPLICATE_MESSAGE_ERROR, SendRefused, queue_sms
from sms.tasks import send_message
from tests.concurrency import POSTGRES_ONLY, THREAD_TIMEOUT, assert_no_errors, run_together
from tests.factories import make_sending_number


pytestmark = POSTGRES_ONLY

SENDER = "+15550100001"
CONSUMER = "+12125550123"






def posts(fake):
    return fake.requests_to("/Messages.json", "POST")


@pytest.fixture
def lost_tasks(monkeypatch):
    """A broker that takes the send task and never runs it: the test plays the workers."""
    import django_q.tasks

    lost = []
    monkeypatch.setattr(django_q.tasks, "async_task", lambda func, *args, **kw: lost.append(args))
    return lost


def test_two_workers_sending_the_same_message_at_once_send_it_once(twilio_settings, lost_tasks):
    make_sending_number(SENDER)
    queue_sms(to=CONSUMER, from_number=SENDER, body="Your order has shipped.", kind="api")
    (pk, lease), = lost_tasks

    for _ in range(3):  # the race is real: run it a few times on fresh rows
        results = run_together(lambda: send_message(pk, lease), lambda: send_message(pk, lease))

        assert_no_errors(results)
        assert sorted(value for _, value in results) == ["sent", "skipped"]
        pk_sent = OutboundMessage.objects.get(pk=pk)
        assert pk_sent.provider_sid and pk_sent.attempts == 1
        lost_tasks.clear()
        queue_sms(to=CONSUMER, from_number=SENDER, body=f"Again {len(posts(twilio_settings))}", kind="system")
        (pk, lease), = lost_tasks

    assert len(posts(twilio_settings)) == 3  # one per message, never two


def test_the_same_text_sent_four_times_at_once_goes_out_once(twilio_settings):
    make_sending_number(SENDER)

    def send():
        return queue_sms(to=CONSUMER, from_number=SENDER, body="Hi, this is Alice.", kind="agent").pk

    results = run_together(send, send, send, send)

    assert_no_errors(results, allowed=(SendRefused,))
    accepted = [value for kind, value in results if kind == "ok"]
    refused = [value for kind, value in results if kind == "error"]
    assert len(accepted) == 1
    assert [error.message for error in refused] == [DUPLICATE_MESSAGE_ERROR] * 3
    assert OutboundMessage.objects.count() == 1
    assert len(posts(twilio_settings)) == 1


def _someone_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


class OpenSender:
    """A first sender whose transaction stays open after `queue_sms` until released, and a second
    send run in another thread meanwhile: what locks make the second wait for."""

    def __init__(self, body: str, kind: str):
        make_sending_number(SENDER)
        ChatSettings.load()  # as in a running portal: nobody waits on the singleton's creation
        self.body, self.kind = body, kind
        self.first_in, self.release = threading.Event(), threading.Event()
        self.outcome: dict = {}

    def _first(self):
        try:
            with transaction.atomic():
                queue_sms(to=CONSUMER, from_number=SENDER, body=self.body, kind=self.kind)
                self.first_in.set()
                self.release.wait(THREAD_TIMEOUT)
        finally:
            connections.close_all()

    def _second(self, to: str):
        try:
            self.first_in.wait(THREAD_TIMEOUT)
            self.outcome["second"] = queue_sms(to=to, from_number=SENDER, body=self.body, kind=self.kind)
        except BaseException as exc:  # noqa: BLE001
            self.outcome["second"] = exc
        finally:
            connections.close_all()

    def start(self, second_to: str) -> None:
        self.threads = [
            threading.Thread(target=self._first, daemon=True),
            threading.Thread(target=self._second, args=(second_to,), daemon=True),
        ]
        for thread in self.threads:
            thread.start()
        assert self.first_in.wait(THREAD_TIMEOUT)

    @property
    def second_running(self) -> bool:
        return self.threads[1].is_alive()

    def finish(self):
        """Let the first transaction go, wait for both; the second send's result (or error)."""
        self.release.set()
        for thread in self.threads:
            thread.join(THREAD_TIMEOUT)
        assert not any(thread.is_alive() for thread in self.threads)
        return self.outcome["second"]


def test_a_duplicate_waits_for_the_first_senders_transaction_then_is_refused(twilio_settings):
    """Deterministic: the first sender's transaction stays open; the second must wait for it
    (without the lock it would read nothing yet and send the same text again)."""
    senders = OpenSender("Hi, this is Alice.", "agent")
    senders.start(second_to=CONSUMER)
    # Let the first transaction go once the second is blocked on it (or, without a lock, done).
    waited = threading.Event()
    while senders.second_running and not _someone_waits_for_a_lock():
        waited.wait(0.01)
    second = senders.finish()

    assert isinstance(second, SendRefused), second
    assert second.message == DUPLICATE_MESSAGE_ERROR
    assert OutboundMessage.objects.count() == 1
    assert len(posts(twilio_settings)) == 1


def test_a_send_to_another_consumer_through_the_same_number_does_not_wait_for_an_open_one(twilio_settings):
    """The duplicate limiter locks the pair of numbers, not the portal number: while one sender's
    transaction is still open, an API text to another consumer through the same number is
    admitted at once (with the number locked, every API request through it waited for the one
    before to commit)."""
    senders = OpenSender("Your order has shipped.", "api")
    senders.start(second_to="+12125550199")
    try:
        senders.threads[1].join(THREAD_TIMEOUT)
        finished_while_first_open = not senders.second_running
    finally:
        second = senders.finish()

    assert finished_while_first_open
    assert isinstance(second, OutboundMessage), second
    assert OutboundMessage.objects.count() == 2
