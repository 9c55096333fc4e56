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
    settings.SMS_PROVIDER = "twilio"
    settings.TWILIO_ACCOUNT_SID = fake_twilio.account_sid
    settings.TWILIO_AUTH_TOKEN = fake_twilio.auth_token
    settings.TWILIO_API_BASE = fake_twilio.base_url
    return fake_twilio


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
