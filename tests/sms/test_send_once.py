"""SPEC S11 step 6: the outbound pipeline loses nothing and sends nothing twice.

- a message whose send task never ran (the enqueue failed, the broker lost it, the worker was
  killed) is sent by the outbound sweeper once its grace period is over;
- a message is claimed before the provider is called, so the task, a second copy of the task and
  the sweeper never send the same row twice; a worker that dies between the claim and the
  provider's answer leaves a lease that runs out, and the sweeper sends again (at least once);
- a status callback that overtakes the provider's answer to the send is kept and applied when
  the message's sid is saved;
- a send costs a bounded number of queries and leaves no django-q2 result row behind.

Everything goes through the real twilio SDK against tests/fakes/twilio_server.py. Tests that need
a second actor *while* the provider is being called use `HookedTwilio`, the same fake with a
hook run by its server thread after the message is made and before the answer goes back, which
is exactly where a second worker, the sweeper or Twilio's own status callback can step in."""
import datetime as dt

import pytest
from django.db import connections
from django.test import Client
from django_q.models import Failure, Success

from sms.models import MessageStatus, OutboundMessage, PendingProviderStatus
from sms.pipeline import ENQUEUE_GRACE, queue_sms
from sms.tasks import SEND_LEASE, send_message, sweep_outbound
from tests.factories import make_sending_number
from tests.fakes.twilio_server import FakeTwilio
from tests.webhooks import new_sid, post_status

SENDER = "+15550100001"
CONSUMER = "+12125550123"
UTC = dt.timezone.utc
START = dt.datetime(2025, 6, 10, 15, 0, tzinfo=UTC)  # 11:00 in New York


class HookedTwilio(FakeTwilio):
    """The fake Twilio, plus `while_sending(sid)`: run once, in the fake's server thread, after
    Twilio made the message and before its answer reaches the sender."""

    def __init__(self):
        super().__init__()
        self.while_sending = None
        self.hook_errors: list[BaseException] = []

    def _message_resource(self, form):
        resource = super()._message_resource(form)
        hook, self.while_sending = self.while_sending, None
        if hook is not None:
            try:
                hook(resource["sid"])
            except BaseException as exc:  # noqa: BLE001 — reported by the test
                self.hook_errors.append(exc)
            finally:
                connections.close_all()  # this server thread's own connection
        return resource


@pytest.fixture
def hooked(settings):
    fake = HookedTwilio()
    fake.start()
    settings.SMS_PROVIDER = "twilio"
    settings.TWILIO_ACCOUNT_SID = fake.account_sid
    settings.TWILIO_AUTH_TOKEN = fake.auth_token
    settings.TWILIO_API_BASE = fake.base_url
    yield fake
    fake.stop()
    assert not fake.hook_errors, fake.hook_errors


@pytest.fixture(autouse=True)
def no_failed_tasks(db):
    yield
    failures = [f"{failure.func}: {failure.result}" for failure in Failure.objects.all()]
    assert not failures, failures


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(START, tick=False)
    return time_machine


@pytest.fixture
def sender(db):
    return make_sending_number(SENDER)


@pytest.fixture
def broker(monkeypatch):
    """django-q2's broker as the pipeline sees it: `down = True` makes every enqueue raise (Redis
    unreachable), `lose = True` accepts the task and never runs it (a worker killed with it)."""

    import django_q.tasks

    real = django_q.tasks.async_task

    class Broker:
        down = False
        lose = False
        lost: list = []

        def async_task(self, func, *args, **kwargs):
            if self.down:
                raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            if self.lose:
                self.lost.append((func, args))
                return "lost"
            return real(func, *args, **kwargs)

    state = Broker()
    monkeypatch.setattr(django_q.tasks, "async_task", state.async_task)
    return state


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    """The outbound sweeper as its schedule runs it, with the send tasks it enqueues run after
    its commit (the test cluster is sync)."""

    def _sweep() -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return sweep_outbound()

    return _sweep


def posts(fake):
    return fake.requests_to("/Messages.json", "POST")


def history(message):
    return list(message.status_events.values_list("status", flat=True))


def queue(**kwargs) -> OutboundMessage:
    kwargs.setdefault("to", CONSUMER)
    kwargs.setdefault("from_number", SENDER)
    kwargs.setdefault("body", "Your order has shipped.")
    kwargs.setdefault("kind", "api")
    return queue_sms(**kwargs)


# --- nothing lost ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_message_whose_send_task_never_ran_is_sent_by_the_sweeper_after_the_grace(twilio_settings, sweep, sender, clock):
    message = queue()  # the test's transaction never commits: the on-commit enqueue never runs

    assert message.status == MessageStatus.QUEUED and posts(twilio_settings) == []
    clock.shift(ENQUEUE_GRACE - dt.timedelta(seconds=1))
    assert sweep() == 0  # the task may still be on its way
    assert posts(twilio_settings) == []

    clock.shift(dt.timedelta(seconds=2))
    assert sweep() == 1

    message.refresh_from_db()
    assert message.provider_sid and message.attempts == 1
    assert history(message) == ["queued"]
    assert len(posts(twilio_settings)) == 1
    clock.shift(dt.timedelta(hours=1))
    assert sweep() == 0
    assert len(posts(twilio_settings)) == 1


@pytest.mark.django_db
def test_a_broken_task_queue_fails_nothing_and_the_message_goes_out_later(
    twilio_settings, sweep, sender, clock, broker, django_capture_on_commit_callbacks, caplog
):
    broker.down = True

    with django_capture_on_commit_callbacks(execute=True):
        message = queue(kind="agent")  # the request that caused it does not fail

    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED and posts(twilio_settings) == []
    assert f"id={message.pk}" in caplog.text  # the log line names the message

    broker.down = False
    clock.shift(ENQUEUE_GRACE + dt.timedelta(seconds=1))
    assert sweep() == 1

    message.refresh_from_db()
    assert message.provider_sid and len(posts(twilio_settings)) == 1


@pytest.mark.django_db
def test_the_sweeper_survives_a_broken_task_queue(twilio_settings, sweep, sender, clock, broker):
    message = queue()
    clock.shift(ENQUEUE_GRACE + dt.timedelta(seconds=1))
    broker.down = True

    assert sweep() == 1  # handed over, or at least tried: nothing raised

    broker.down = False
    assert sweep() == 0  # the new lease is the task queue's for the grace period
    clock.shift(ENQUEUE_GRACE + dt.timedelta(seconds=1))
    assert sweep() == 1
    message.refresh_from_db()
    assert message.provider_sid and len(posts(twilio_settings)) == 1


# --- nothing sent twice ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_second_copy_of_the_task_never_sends_a_message_already_being_sent(hooked, sender, clock, broker):
    broker.lose = True
    message = queue()
    (_, (pk, lease)), = broker.lost
    second_copy = []
    # The broker delivers the same task to a second worker while the first is talking to Twilio.
    hooked.while_sending = lambda sid: second_copy.append(send_message(pk, lease))

    assert send_message(pk, lease) == "sent"

    assert second_copy == ["skipped"]
    assert len(posts(hooked)) == 1
    message.refresh_from_db()
    assert message.provider_sid and message.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_leaves_a_message_alone_while_a_worker_sends_it(hooked, sender, clock, broker):
    broker.lose = True
    message = queue()
    (_, (pk, lease)), = broker.lost
    broker.lose = False
    swept = []

    def twilio_is_slow(sid):
        clock.shift(ENQUEUE_GRACE + dt.timedelta(seconds=30))  # well past the enqueue grace
        swept.append(sweep_outbound())

    hooked.while_sending = twilio_is_slow

    assert send_message(pk, lease) == "sent"

    assert swept == [0]
    assert len(posts(hooked)) == 1
    message.refresh_from_db()
    assert message.provider_sid


class WorkerKilled(BaseException):
    """What django-q2 does to a worker past its timeout: nothing after this line runs."""


@pytest.mark.django_db
def test_a_worker_killed_after_twilio_accepted_is_retried_when_its_lease_runs_out(
    twilio_settings, sender, clock, monkeypatch, sweep
):
    """The documented at-least-once window: Twilio took the message, the worker died before it
    saved the sid. Nothing is sent again while the lease holds; after it, the sweeper sends again
    (the consumer may get the text twice, which beats never getting it)."""
    from twilio.http.http_client import TwilioHttpClient

    real_request = TwilioHttpClient.request

    def request_then_die(self, *args, **kwargs):
        real_request(self, *args, **kwargs)
        raise WorkerKilled()

    monkeypatch.setattr(TwilioHttpClient, "request", request_then_die)
    message = queue()
    with pytest.raises(WorkerKilled):
        send_message(message.pk, message.lease_until)
    monkeypatch.undo()
    assert len(posts(twilio_settings)) == 1

    clock.shift(SEND_LEASE - dt.timedelta(seconds=1))
    assert sweep() == 0
    assert len(posts(twilio_settings)) == 1

    clock.shift(dt.timedelta(seconds=2))
    assert sweep() == 1
    message.refresh_from_db()
    assert message.provider_sid and message.attempts == 2
    assert len(posts(twilio_settings)) == 2


# --- status callbacks that overtake the send ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_status_callback_that_arrives_before_the_sid_is_saved_is_applied(hooked, sender, clock):
    def twilio_calls_back_first(sid):
        client = Client()
        clock.shift(1)
        assert post_status(client, sid=sid, status="sent").status_code == 204
        clock.shift(1)
        assert post_status(client, sid=sid, status="delivered").status_code == 204
        clock.shift(1)
        assert post_status(client, sid=sid, status="sent").status_code == 204  # a late repeat

    hooked.while_sending = twilio_calls_back_first

    message = queue()  # autocommit: the task runs as queue_sms commits (the test cluster is sync)

    message.refresh_from_db()
    assert message.provider_sid
    assert message.status == MessageStatus.DELIVERED  # never backwards, whatever the order
    assert history(message) == ["queued", "sent", "delivered"]
    assert list(message.status_events.values_list("source", flat=True)) == ["portal", "provider", "provider"]
    assert not PendingProviderStatus.objects.exists()


@pytest.mark.django_db
def test_an_early_undelivered_keeps_its_error_code(twilio_settings, sender, clock, django_capture_on_commit_callbacks):
    sid = new_sid()
    message = queue()
    # Twilio's callback reached us first; here we store the sid Twilio will answer with.
    assert post_status(Client(), sid=sid, status="undelivered", error_code="30003").status_code == 204
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED

    from sms.pipeline import record_provider_sid

    record_provider_sid(message.pk, sid)

    message.refresh_from_db()
    assert message.status == MessageStatus.UNDELIVERED and message.error_code == "30003"
    assert not PendingProviderStatus.objects.exists()


@pytest.mark.django_db
def test_callbacks_for_a_sid_that_never_shows_up_are_forgotten_after_a_day(twilio_settings, sweep, clock):
    assert post_status(Client(), sid=new_sid(), status="delivered").status_code == 204
    assert PendingProviderStatus.objects.count() == 1

    clock.shift(dt.timedelta(hours=23))
    sweep()
    assert PendingProviderStatus.objects.count() == 1

    clock.shift(dt.timedelta(hours=2))
    sweep()
    assert not PendingProviderStatus.objects.exists()


# --- the cost of a send ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("provider", ["twilio", "local"])
def test_a_send_costs_few_queries_and_keeps_no_task_result(
    provider, request, clock, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    fake = request.getfixturevalue("twilio_settings") if provider == "twilio" else None
    make_sending_number(SENDER)
    queue(kind="system", body="warm-up")  # the settings singletons exist in a running portal
    budget = {"twilio": 13, "local": 22}[provider]  # they were 29 and 41

    with django_assert_max_num_queries(budget):
        with django_capture_on_commit_callbacks(execute=True):
            message = queue(kind="agent", body="Hi, this is Alice.")

    message.refresh_from_db()
    assert message.provider_sid and message.attempts == 1
    if fake is not None:
        assert len(posts(fake)) == 1
    else:
        assert message.status == MessageStatus.DELIVERED
        assert history(message) == ["queued", "sent", "delivered"]
    assert not Success.objects.exists()  # a successful send leaves no task result row
