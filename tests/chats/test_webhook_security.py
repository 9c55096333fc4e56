"""The inbound and status webhooks only believe Twilio (SPEC S1, S11 step 7): X-Twilio-Signature
over the exact public URL, nothing stored when it fails, and a MessageSid acted on once."""
import pytest

from chats.models import Chat, Message
from sms.models import InboundMessage, MessageStatus, OutboundMessage
from tests.chats.conftest import CONSUMER, GREETING, MENU, PORTAL
from tests.factories import link_number, make_number, make_queue, make_queue_messages
from tests.webhooks import inbound_params, new_sid, post_inbound, post_signed, post_status, sign

INBOUND = "/sms/twilio/inbound/"
STATUS = "/sms/twilio/status/"
SERVICE_SID = "MG" + "b" * 32


def nothing_stored():
    return not InboundMessage.objects.exists() and not Chat.objects.exists() and not OutboundMessage.objects.exists()


def params(body="Hi", **extra):
    return inbound_params(from_number=CONSUMER, to_number=PORTAL, body=body, **extra)


def test_a_valid_inbound_text_is_answered_with_empty_twiml(client, support, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="Hi")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode().endswith("<Response/>")
    assert InboundMessage.objects.get().outcome == "menu"
    # Every reply leaves through the outbound pipeline, tracked, never in the TwiML.
    assert OutboundMessage.objects.filter(to_number=CONSUMER).count() == 3


def test_a_request_without_a_signature_is_refused_and_nothing_is_stored(client, support):
    response = client.post(INBOUND, params())

    assert response.status_code == 403
    assert nothing_stored()


def test_a_wrong_signature_is_refused(client, support):
    response = post_signed(client, INBOUND, params(), signature="bm90IGEgc2lnbmF0dXJl")

    assert response.status_code == 403
    assert nothing_stored()


def test_a_signature_made_with_another_auth_token_is_refused(client, support):
    response = post_signed(client, INBOUND, params(), token="another-accounts-token")

    assert response.status_code == 403
    assert nothing_stored()


def test_a_tampered_body_is_refused(client, support, settings):
    signed = params("Hi")
    signature = sign(f"http://testserver{INBOUND}", signed)
    tampered = {**signed, "Body": "STOP"}

    response = post_signed(client, INBOUND, tampered, signature=signature)

    assert response.status_code == 403
    assert nothing_stored()


def test_a_signature_over_the_url_with_its_query_string_is_accepted(client, support, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed(client, f"{INBOUND}?foo=bar", params())

    assert response.status_code == 200
    assert InboundMessage.objects.count() == 1


def test_a_signature_that_leaves_out_the_query_string_is_refused(client, support):
    body = params()
    signature = sign(f"http://testserver{INBOUND}", body)

    response = post_signed(client, f"{INBOUND}?foo=bar", body, signature=signature)

    assert response.status_code == 403
    assert nothing_stored()


def test_behind_a_proxy_the_public_base_url_is_what_twilio_signed(
    client, support, settings, django_capture_on_commit_callbacks
):
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    body = params()

    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed(client, INBOUND, body)  # signs https://sms.example.com/sms/twilio/inbound/

    assert response.status_code == 200
    assert InboundMessage.objects.count() == 1


def test_behind_a_proxy_a_signature_over_the_internal_url_is_refused(client, support, settings):
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    body = params()
    internal = sign(f"http://testserver{INBOUND}", body)

    response = post_signed(client, INBOUND, body, signature=internal)

    assert response.status_code == 403
    assert nothing_stored()


def test_without_an_auth_token_every_request_is_refused(client, support, settings):
    body = params()
    signature = sign(f"http://testserver{INBOUND}", body, token="whatever")
    settings.TWILIO_AUTH_TOKEN = ""

    response = post_signed(client, INBOUND, body, signature=signature)

    assert response.status_code == 403
    assert nothing_stored()


def test_a_number_in_a_messaging_service_pool_validates_routes_and_answers_through_the_pool(
    client, twilio_settings, auth_token, chat_settings, django_capture_on_commit_callbacks
):
    fake = twilio_settings
    number = make_number("+15550100009", messages_per_second=100, messaging_service_sid=SERVICE_SID)
    queue = make_queue("Pool")
    make_queue_messages(queue, greeting="Pooled hello.", queued="Pooled queue.")
    link_number(queue, number)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_inbound(
            client, from_number=CONSUMER, to_number=number.number, body="Hi", MessagingServiceSid=SERVICE_SID
        )

    assert response.status_code == 200
    chat = Chat.objects.get()
    assert chat.portal_number == number and chat.queue == queue
    assert [m["Body"] for m in fake.sent_messages] == [chat_settings.opt_in_message, "Pooled hello.", "Pooled queue."]
    assert all(m.get("MessagingServiceSid") == SERVICE_SID and "From" not in m for m in fake.sent_messages)
    assert all(m["To"] == CONSUMER for m in fake.sent_messages)


def test_a_replayed_message_sid_changes_nothing(client, support, django_capture_on_commit_callbacks):
    sid = new_sid()
    with django_capture_on_commit_callbacks(execute=True):
        first = post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="Hi", sid=sid)
    sent = OutboundMessage.objects.count()
    messages = Message.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        again = post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="Hi", sid=sid)

    assert first.status_code == again.status_code == 200
    assert again.content.decode().endswith("<Response/>")
    assert InboundMessage.objects.filter(message_sid=sid).count() == 1
    assert OutboundMessage.objects.count() == sent == 3
    assert Message.objects.count() == messages
    assert Chat.objects.count() == 1
    assert list(OutboundMessage.objects.order_by("pk").values_list("body", flat=True))[1:] == [GREETING, MENU]


def test_a_replayed_menu_answer_is_not_answered_twice(client, support, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="Hi")
    sid = new_sid()
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="zzz", sid=sid)

    bodies = list(OutboundMessage.objects.order_by("pk").values_list("body", flat=True))
    assert bodies.count(MENU) == 2  # the first menu and one "invalid choice" menu


def test_a_text_without_from_or_to_is_a_bad_request(client, support):
    body = params()
    del body["From"]

    response = post_signed(client, INBOUND, body)

    assert response.status_code == 400
    assert nothing_stored()


def test_the_webhook_only_takes_post(client, support):
    assert client.get(INBOUND).status_code == 405


# --- the status webhook -------------------------------------------------------------------------


@pytest.fixture
def sent_message(phone):
    phone.text("Hi")
    message = OutboundMessage.objects.filter(to_number=CONSUMER).order_by("pk").first()
    assert message.provider_sid
    return message


def test_a_status_callback_with_a_bad_signature_is_refused(client, sent_message):
    before = sent_message.status
    body = {"MessageSid": sent_message.provider_sid, "MessageStatus": "failed", "ErrorCode": "30003"}

    response = post_signed(client, STATUS, body, signature="bm90IGEgc2lnbmF0dXJl")
    unsigned = client.post(STATUS, body)

    assert response.status_code == 403 and unsigned.status_code == 403
    sent_message.refresh_from_db()
    assert sent_message.status == before
    assert sent_message.error_code == ""


def test_a_signed_status_callback_moves_the_message_forward(client, support, settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post_inbound(client, from_number=CONSUMER, to_number=PORTAL, body="Hi")
    # The local provider already reported "delivered"; a late "undelivered" of another message:
    message = OutboundMessage.objects.order_by("pk").first()
    OutboundMessage.objects.filter(pk=message.pk).update(status=MessageStatus.SENT)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_status(client, sid=message.provider_sid, status="undelivered", error_code="30003")

    assert response.status_code in (200, 204)
    message.refresh_from_db()
    assert message.status == MessageStatus.UNDELIVERED
    assert message.error_code == "30003"
