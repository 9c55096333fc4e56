"""GET /metrics (issue 17, item 5): Prometheus' text format, after a real conversation; readable
with the token, or from this machine directly, never through the proxy without it."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.chats.conftest import CONSUMER, PORTAL
from tests.webhooks import inbound_params, sign


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(figures, name, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def test_after_a_conversation_the_figures_have_moved(client, phone, support):
    before = scrape(client)

    phone.text("Hi")  # the greeting and the menu go out
    phone.text("1")  # queued in Billing
    after = scrape(client)

    assert value(after, "tern_queue_waiting_chats", queue="Support › Billing") == 1
    assert value(after, "tern_queue_waiting_chats", queue="Support › Tech") == 0
    assert value(after, "tern_queue_longest_wait_seconds", queue="Support › Billing") >= 0
    assert value(after, "tern_inbound_pending_texts") == 0  # both handled
    sent = value(after, "tern_outbound_messages", status="delivered") - value(before, "tern_outbound_messages", status="delivered")
    assert sent == len(phone.inbox()) >= 2
    # Each reply was handed to the (local) provider once, timed.
    sends = value(after, "tern_provider_send_seconds_count", provider="local") - value(
        before, "tern_provider_send_seconds_count", provider="local"
    )
    assert sends == sent
    assert value(after, "tern_agents_connected") == 0
    assert ("tern_agents", (("status", "offline"),)) in after
    assert "tern_task_queue_depth" in {name for name, _ in after}


@pytest.mark.django_db(transaction=True)
async def test_the_asgi_app_counts_requests_by_view_and_times_the_webhook(support, auth_token, settings):
    from asgiref.sync import sync_to_async
    from channels.testing import HttpCommunicator

    from prometheus_client import REGISTRY

    from portal.asgi import application
    from sms.models import InboundMessage
    from tests.chats.test_intake import asgi_post

    def count(view, status):
        labels = {"view": view, "method": "POST", "status": str(status)}
        return REGISTRY.get_sample_value("tern_http_requests_total", labels) or 0

    def timed():
        return REGISTRY.get_sample_value("tern_webhook_seconds_sum", {"webhook": "inbound"}) or 0

    stored, refused, seconds = count("twilio-inbound", 200), count("twilio-inbound", 403), timed()

    params = inbound_params(from_number=CONSUMER, to_number=PORTAL, body="Hi")
    assert (await asgi_post("/sms/twilio/inbound/", params, sign("http://testserver/sms/twilio/inbound/", params)))[0] == 200
    assert (await asgi_post("/sms/twilio/inbound/", params, "forged"))[0] == 403
    assert await sync_to_async(InboundMessage.objects.count)() == 1

    assert count("twilio-inbound", 200) == stored + 1
    assert count("twilio-inbound", 403) == refused + 1
    assert timed() > seconds

    # What the scrape shows: the same counter, read through the app itself.
    settings.METRICS_TOKEN = "t0ken"
    headers = [(b"host", b"testserver"), (b"authorization", b"Bearer t0ken")]
    page = await HttpCommunicator(application, "GET", "/metrics", headers=headers).get_response(10)
    assert page["status"] == 200
    text = page["body"].decode()
    assert f'tern_http_requests_total{{method="POST",status="200",view="twilio-inbound"}} {stored + 1:.1f}' in text
    assert 'tern_webhook_seconds_bucket{le="0.15",webhook="inbound"}' in text


def test_through_the_proxy_without_a_token_it_is_refused(client, db):
    response = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert response.status_code == 403
    assert b"METRICS_TOKEN" in response.content


def test_from_another_machine_it_is_refused(client, db):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403


def test_with_a_token_only_its_bearer_reads(client, db, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"

    assert client.get("/metrics").status_code == 401  # even from this machine
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    figures = scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-metrics-token", HTTP_X_FORWARDED_FOR="203.0.113.9",
                     REMOTE_ADDR="10.0.0.7")
    assert value(figures, "tern_inbound_pending_texts") == 0
