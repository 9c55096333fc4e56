"""The providers behind sms.providers.base.Provider (DESIGN rule 6).

TwilioProvider is exercised through the real twilio SDK against the loopback fake in
tests/fakes/twilio_server.py; LocalProvider needs no outside service at all."""
import pytest
from twilio.request_validator import RequestValidator

from sms.models import PhoneNumber
from sms.providers import get_provider
from sms.providers.base import OutgoingSms, ProviderError
from sms.providers.local import LocalProvider
from sms.providers.twilio import TwilioProvider
from tests.fakes.twilio_server import FakeTwilio

OWNED = "+15551230001"
VOICE_ONLY = "+15551230002"
STRANGER = "+15559990000"
CONSUMER = "+15557654321"
SERVICE_SID = "MG" + "a" * 32


@pytest.fixture
def twilio(twilio_settings):
    """The provider as the portal builds it (SMS_PROVIDER=twilio, TWILIO_* from settings)."""
    provider = get_provider()
    assert isinstance(provider, TwilioProvider)
    return provider


# --- check_number ---------------------------------------------------------------------------


def test_an_owned_sms_number_is_verified(twilio, fake_twilio):
    # given
    fake_twilio.add_number(OWNED, "Support line", sms=True)

    # when
    check = twilio.check_number(OWNED)

    # then
    assert check.owned and check.sms_capable and check.verified
    assert "SMS capability" in check.message
    lookup = fake_twilio.requests_to("/IncomingPhoneNumbers.json", "GET")[-1]
    assert lookup.param("PhoneNumber") == OWNED


def test_an_owned_number_without_sms_is_not_verified(twilio, fake_twilio):
    fake_twilio.add_number(VOICE_ONLY, "Voice only", sms=False, mms=False)

    check = twilio.check_number(VOICE_ONLY)

    assert check.owned and not check.sms_capable and not check.verified
    assert "cannot send or receive SMS" in check.message


def test_a_number_the_account_does_not_own_is_not_verified(twilio, fake_twilio):
    fake_twilio.add_number(OWNED)

    check = twilio.check_number(STRANGER)

    assert not check.owned and not check.verified
    assert "does not own this number" in check.message


def test_an_owned_short_code_is_verified(twilio, fake_twilio):
    fake_twilio.add_short_code("55123", "Promotions")

    check = twilio.check_number("55123")

    assert check.verified
    lookup = fake_twilio.requests_to("/SMS/ShortCodes.json", "GET")[-1]
    assert lookup.param("ShortCode") == "55123"


def test_a_short_code_the_account_does_not_own_is_not_verified(twilio, fake_twilio):
    fake_twilio.add_short_code("55123")

    check = twilio.check_number("77777")

    assert not check.verified
    assert "does not own this short code" in check.message


def test_wrong_credentials_are_reported_as_a_credentials_problem(twilio_settings, settings):
    # given: the portal's token is not the account's
    settings.TWILIO_AUTH_TOKEN = "not-the-right-token"
    twilio_settings.add_number(OWNED)

    # when
    with pytest.raises(ProviderError) as raised:
        get_provider().check_number(OWNED)

    # then
    assert "credentials" in raised.value.message
    assert "TWILIO_AUTH_TOKEN" in raised.value.message
    assert raised.value.status == 401
    assert not raised.value.retryable


def test_list_numbers_returns_every_owned_number(twilio, fake_twilio):
    fake_twilio.add_number(OWNED, "Support line")
    fake_twilio.add_number(VOICE_ONLY, "Voice only", sms=False)

    numbers = twilio.list_numbers()

    assert [(n.number, n.friendly_name, n.sms_capable) for n in numbers] == [
        (OWNED, "Support line", True),
        (VOICE_ONLY, "Voice only", False),
    ]


@pytest.mark.parametrize(
    ("resource", "ask"),
    [
        ("IncomingPhoneNumbers.json", lambda provider: provider.check_number(OWNED)),
        ("IncomingPhoneNumbers.json", lambda provider: provider.list_numbers()),
        ("ShortCodes.json", lambda provider: provider.check_number("55123")),
    ],
)
def test_a_busy_twilio_during_a_lookup_is_a_retryable_error_not_a_network_one(twilio, fake_twilio, resource, ask):
    fake_twilio.queue_failure(429, resource=resource)

    with pytest.raises(ProviderError) as raised:
        ask(twilio)

    assert raised.value.retryable
    assert raised.value.status == 429
    assert raised.value.message == "Twilio error 20429: Too Many Requests"


# --- send -----------------------------------------------------------------------------------


def test_send_hands_the_message_to_twilio_and_returns_its_sid(twilio, fake_twilio):
    # when
    result = twilio.send(OutgoingSms(to=CONSUMER, from_=OWNED, body="Hello from Tern"))

    # then
    assert result.provider_sid.startswith("SM") and len(result.provider_sid) == 34
    assert result.status == "queued"
    assert fake_twilio.sent_messages == [{"To": CONSUMER, "From": OWNED, "Body": "Hello from Tern"}]


def test_send_passes_media_and_status_callback(twilio, fake_twilio):
    result = twilio.send(
        OutgoingSms(
            to=CONSUMER,
            from_=OWNED,
            body="A picture",
            media_urls=["https://example.com/a.png", "https://example.com/b.png"],
            status_callback="https://tern.example.com/sms/status",
        )
    )

    assert result.provider_sid.startswith("MM")
    sent = fake_twilio.sent_messages[-1]
    assert sent["MediaUrl"] == ["https://example.com/a.png", "https://example.com/b.png"]
    assert sent["StatusCallback"] == "https://tern.example.com/sms/status"


def test_send_through_a_messaging_service_sends_no_from(twilio, fake_twilio):
    result = twilio.send(
        OutgoingSms(to=CONSUMER, from_=OWNED, body="Via the pool", messaging_service_sid=SERVICE_SID)
    )

    sent = fake_twilio.sent_messages[-1]
    assert sent["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in sent
    assert result.status == "accepted"


def test_an_unsubscribed_recipient_is_a_final_error_with_twilios_code(twilio, fake_twilio):
    # given
    fake_twilio.queue_failure(400, 21610, "Attempt to send to unsubscribed recipient")

    # when
    with pytest.raises(ProviderError) as raised:
        twilio.send(OutgoingSms(to=CONSUMER, from_=OWNED, body="Hi"))

    # then
    error = raised.value
    assert error.code == "21610"
    assert error.status == 400
    assert not error.retryable
    assert error.message == "Twilio error 21610: Attempt to send to unsubscribed recipient"
    assert fake_twilio.sent_messages == []


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_retryable(twilio, fake_twilio, status):
    fake_twilio.queue_failure(status)

    with pytest.raises(ProviderError) as raised:
        twilio.send(OutgoingSms(to=CONSUMER, from_=OWNED, body="Hi"))

    assert raised.value.retryable
    assert raised.value.status == status


def test_queued_failures_are_used_in_order_then_sending_works_again(twilio, fake_twilio):
    fake_twilio.queue_failure(429)
    fake_twilio.queue_failure(500)

    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(twilio.send(OutgoingSms(to=CONSUMER, from_=OWNED, body="Hi")).status)
        except ProviderError as exc:
            outcomes.append(exc.status)

    assert outcomes == [429, 500, "queued"]


def test_an_unreachable_twilio_is_a_retryable_provider_error():
    # given: a port nobody listens on any more
    gone = FakeTwilio().start()
    gone.stop()
    provider = TwilioProvider(account_sid=gone.account_sid, auth_token=gone.auth_token, api_base=gone.base_url)

    # when / then: only ProviderError escapes, for sending and for checking alike
    with pytest.raises(ProviderError) as raised:
        provider.send(OutgoingSms(to=CONSUMER, from_=OWNED, body="Hi"))
    assert raised.value.retryable
    assert "Could not reach Twilio" in raised.value.message

    with pytest.raises(ProviderError):
        provider.check_number(OWNED)


def test_missing_credentials_are_a_provider_error(settings):
    settings.TWILIO_ACCOUNT_SID = ""
    settings.TWILIO_AUTH_TOKEN = ""

    with pytest.raises(ProviderError) as raised:
        TwilioProvider().check_number(OWNED)

    assert "not configured" in raised.value.message


# --- fetch_media ----------------------------------------------------------------------------


def test_fetch_media_follows_twilios_redirect_to_storage(twilio, fake_twilio):
    # given: storage refuses a request that still carries the API credentials
    url = fake_twilio.add_media("photo.jpg", b"\xff\xd8jpeg-bytes", "image/jpeg")

    # when
    media = twilio.fetch_media(url)

    # then
    assert media.content == b"\xff\xd8jpeg-bytes"
    assert media.content_type == "image/jpeg"
    api_hit, storage_hit = fake_twilio.requests[-2:]
    assert "Authorization" in api_hit.headers
    assert storage_hit.path == "/fake-media-storage/photo.jpg"
    assert "Authorization" not in storage_hit.headers


def test_fetch_media_of_an_unknown_item_is_a_provider_error(twilio, fake_twilio):
    url = fake_twilio.add_media("photo.jpg", b"x", "image/jpeg").rsplit("/", 1)[0] + "/ME" + "0" * 32

    with pytest.raises(ProviderError) as raised:
        twilio.fetch_media(url)

    assert raised.value.status == 404
    assert not raised.value.retryable


# --- validate_webhook -----------------------------------------------------------------------

WEBHOOK_URL = "https://tern.example.com/sms/inbound"
WEBHOOK_PARAMS = {"MessageSid": "SM" + "1" * 32, "From": CONSUMER, "To": OWNED, "Body": "HELP"}


def test_a_webhook_signed_with_the_auth_token_is_valid(twilio, fake_twilio):
    signature = RequestValidator(fake_twilio.auth_token).compute_signature(WEBHOOK_URL, WEBHOOK_PARAMS)

    assert twilio.validate_webhook(url=WEBHOOK_URL, params=WEBHOOK_PARAMS, signature=signature)


def test_a_tampered_webhook_is_not_valid(twilio, fake_twilio):
    signature = RequestValidator(fake_twilio.auth_token).compute_signature(WEBHOOK_URL, WEBHOOK_PARAMS)
    tampered = {**WEBHOOK_PARAMS, "Body": "STOP"}

    assert not twilio.validate_webhook(url=WEBHOOK_URL, params=tampered, signature=signature)
    assert not twilio.validate_webhook(url=WEBHOOK_URL, params=WEBHOOK_PARAMS, signature="")


# --- LocalProvider --------------------------------------------------------------------------


def test_the_local_provider_is_the_default(settings):
    settings.SMS_PROVIDER = "local"

    assert isinstance(get_provider(), LocalProvider)


def test_an_unknown_provider_name_is_a_provider_error(settings):
    settings.SMS_PROVIDER = "carrier-pigeon"

    with pytest.raises(ProviderError, match="Unknown SMS_PROVIDER"):
        get_provider()


def test_the_local_provider_accepts_every_number_and_message():
    provider = LocalProvider()

    check = provider.check_number(STRANGER)
    first = provider.send(OutgoingSms(to=CONSUMER, from_=OWNED, body="Hi"))
    second = provider.send(OutgoingSms(to=CONSUMER, from_=OWNED, body="Hi"))

    assert check.verified
    assert first.status == "queued" and first.provider_sid.startswith("SM")
    assert first.provider_sid != second.provider_sid
    assert provider.validate_webhook(url=WEBHOOK_URL, params={}, signature="")


def test_the_local_provider_has_no_media():
    with pytest.raises(ProviderError):
        LocalProvider().fetch_media("https://example.com/x.png")


@pytest.mark.django_db
def test_the_local_account_owns_the_portals_numbers():
    PhoneNumber.objects.create(number=OWNED, label="Support line")

    numbers = LocalProvider().list_numbers()

    assert [(n.number, n.friendly_name) for n in numbers] == [(OWNED, "Support line")]
