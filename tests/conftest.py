"""Fixtures shared by the whole suite."""
import pytest

from tests.fakes.twilio_server import FakeTwilio

# --- fake Twilio (tests/fakes/twilio_server.py) -------------------------------------------------


@pytest.fixture
def fake_twilio():
    """A loopback fake of Twilio's REST API, started for one test and stopped after it."""
    fake = FakeTwilio()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def twilio_settings(settings, fake_twilio):
    """SMS_PROVIDER=twilio with the fake's credentials and TWILIO_API_BASE pointing at it."""
    return fake_twilio.use_in(settings)


# --- end of fake Twilio fixtures ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_wake_request_left(settings):
    """The batch worker's wake flag lives in Redis when REDIS_URL is set, outside the test's
    transaction: a request left by an earlier test (whose task never ran) would make this
    test's texts wait for the sweeper."""
    if settings.REDIS_URL:
        from chats.intake import WAKE_KEY
        from portal import shared_redis

        shared_redis.client().delete(WAKE_KEY)


@pytest.fixture
def no_failed_tasks(db):
    """django-q2 keeps a task's exception in a Failure row instead of raising it: a send task
    that crashed must fail the test that ran it. Modules that send ask for it with
    `pytestmark = pytest.mark.usefixtures("no_failed_tasks")`."""
    from django_q.models import Failure

    yield
    failures = [f"{failure.func}: {failure.result}" for failure in Failure.objects.all()]
    assert not failures, failures


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Call a service as a request would: its after-commit work runs before it returns."""

    def run(fn, /, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


@pytest.fixture
def wsgi_app():
    """The project's WSGI application, called in-process inside the test's transaction (for
    Schemathesis): like Django's test client, without closing the database connection at the end
    of each request (which would end the test's transaction on PostgreSQL)."""
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
