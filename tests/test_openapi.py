"""The OpenAPI schema and docs of the public API (SPEC A4): served at /apps/api/v1/schema/ and
readable at /apps/api/v1/docs/ from an installed package's static files (nothing fetched from
the internet); every endpoint, its errors and examples documented; and Schemathesis, run
in-process against the served schema, finds no input that makes any endpoint answer 5xx.

The Schemathesis run is bounded (a few dozen generated requests per operation, no shrinking
deadline), so it stays well within a CI run."""
from __future__ import annotations

import secrets

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chats.models import ChatType
from sms import sessionless
from tests.api_client import basic
from tests.factories import link_number, make_number, make_queue, make_queued_chats

SCHEMA = "/apps/api/v1/schema/"
PUBLIC_PATHS = {
    "/apps/api/v1/sms/": {"post"},
    "/apps/api/v1/sessionless_sms/": {"post"},
    "/apps/api/v1/sessionless_sms/{request_id}/": {"get"},
    "/apps/api/v1/chats/": {"get"},
    "/apps/api/v1/chats/{chat_id}/": {"get"},
    "/apps/api/v1/chats/{chat_id}/messages/": {"get"},
    "/apps/api/v1/chats/{chat_id}/media/{media_id}/": {"get"},
    "/apps/api/v1/consent/": {"get"},
    "/apps/api/v1/consumers/erase/": {"post"},
}


@pytest.fixture
def served_schema(client):
    response = client.get(SCHEMA, {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_the_schema_documents_every_public_endpoint_and_no_agent_one(served_schema):
    paths = served_schema["paths"]

    for path, methods in PUBLIC_PATHS.items():
        assert set(paths[path]) - {"parameters"} == methods, path
    assert not any("/agent/" in path for path in paths)


def test_every_operation_documents_its_errors_with_examples_and_the_credential(served_schema):
    assert served_schema["components"]["securitySchemes"]["apiCredential"] == {
        "type": "http",
        "scheme": "basic",
        "description": served_schema["components"]["securitySchemes"]["apiCredential"]["description"],
    }
    for path, methods in PUBLIC_PATHS.items():
        for method in methods:
            operation = served_schema["paths"][path][method]
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            assert operation["security"] == [{"apiCredential": []}], where
            assert {"200", "401", "429"} <= set(operation["responses"]), where
            for code in ("401", "429"):
                examples = operation["responses"][code]["content"]["application/json"]["examples"]
                assert examples, where


def test_the_outbound_sms_errors_are_all_documented_with_their_exact_messages(served_schema):
    operation = served_schema["paths"]["/apps/api/v1/sms/"]["post"]
    examples = operation["responses"]["400"]["content"]["application/json"]["examples"]
    documented = {example["value"]["error"] for example in examples.values()}

    assert {
        "SMS service is not enabled",
        "Outbound SMS service is not enabled",
        "Only one of `agent_id` or `agent_email` can be provided.",
        "chat_type needs to be provided",
        "Valid chat_type needs to be provided",
        "end_user_number is required",
        "end_user_number is invalid",
        "outbound_number is required",
        "outbound_number is invalid",
        "outbound_number is not found",
        "Non US phone number service is not enabled",
        "message is required",
        "message exceeds maximum number of characters by 12",
        "Outbound SMS failed. Consumer is already in an active SMS session.",
        "Outbound SMS failed. Agent is not connected to chat.",
        "Ticket is not found",
    } <= documented
    chat = served_schema["components"]["schemas"]["PublicChat"]["properties"]
    for field in (
        "id", "lang", "chat_type", "status", "created_at", "queued_at", "assigned_at", "ends_at", "wait_duration",
        "chat_duration", "rating", "has_feedback", "out_ticket_id", "out_ticket_url", "verified", "disconnected_by",
        "fail_reason", "selected_menu", "menu_path", "agent_info", "end_user", "photos", "videos", "transfers",
        "participants", "offer_type", "offer_events", "answer_type", "outbound_number", "finish_reason",
        "chat_subtype",
    ):
        assert field in chat, field
        assert chat[field].get("description") or chat[field].get("type") or chat[field].get("allOf") or chat[field].get("$ref") or chat[field].get("oneOf"), field


def test_the_outbound_sms_request_body_is_the_serializer_that_reads_it(served_schema):
    """OutboundSmsSerializer both reads the body and describes it: every field, the required ones."""
    body = served_schema["paths"]["/apps/api/v1/sms/"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    component = served_schema["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]

    assert schema == {"$ref": "#/components/schemas/OutboundSmsRequest"}
    assert body["required"] is True
    assert body["content"]["application/json"]["examples"]["Request"]["value"]["chat_type"] == "sms"
    assert set(component["properties"]) == {
        "agent_id", "agent_email", "chat_type", "chat_subtype", "end_user_number", "outbound_number", "message",
        "ticket_id",
    }
    assert set(component["required"]) == {"chat_type", "end_user_number", "outbound_number", "message"}
    assert component["properties"]["agent_id"]["type"] == "integer"
    assert component["properties"]["agent_email"] == {
        "type": "string", "minLength": 1, "format": "email", "description": "The same agent by e-mail; not with agent_id.",
    }
    for name in ("chat_type", "chat_subtype", "end_user_number", "outbound_number", "message", "ticket_id"):
        assert component["properties"][name]["type"] == "string", name
        assert component["properties"][name]["description"], name


@pytest.mark.parametrize("path", ["/apps/api/v1/docs/", "/apps/api/v1/docs", "/apps/api/v1/docs/swagger/"])
def test_the_docs_page_is_served_without_anything_from_the_internet(client, path):
    response = client.get(path)

    assert response.status_code == 200
    page = response.content.decode()
    assert "/apps/api/v1/schema" in page
    assert "http://" not in page.replace("http://testserver", "") and "https://" not in page
    for asset in ("/static/drf_spectacular_sidecar/",):
        assert asset in page


def test_the_redoc_page_forbids_images_from_elsewhere(client):
    """ReDoc's footer would load Redocly's logo from its CDN; the page's policy blocks it."""
    page = client.get("/apps/api/v1/docs/").content.decode()

    assert 'http-equiv="Content-Security-Policy"' in page
    assert "img-src 'self' data: blob:" in page


def test_the_docs_scripts_are_static_files_of_an_installed_package(client):
    page = client.get("/apps/api/v1/docs/").content.decode()
    script = page.split('src="', 2)[1].split('"', 1)[0] if 'src="' in page else ""

    assert script.startswith("/static/drf_spectacular_sidecar/")
    assert client.get(script).status_code == 200


# --- Schemathesis ---------------------------------------------------------------------------------


@pytest.fixture
def api_world(db, settings, monkeypatch):
    """A portal with a number, queues and chats to be asked about, an API credential, no rate
    limit in the way, and a session-less pace of its own."""
    settings.API_RATE_LIMIT = "1000000/minute"
    monkeypatch.setattr(sessionless, "LIMIT_KEY", f"sessionless-test-{secrets.token_hex(6)}")
    from portal.credentials import create_api_credential

    number = make_number("+15550100002", messages_per_second=1000)  # the number of the documented examples
    queue = make_queue("Support")
    link_number(queue, number)
    chats = make_queued_chats(queue, number, 3)
    chats[0].chat_type = ChatType.API_SMS
    chats[0].save(update_fields=["chat_type"])
    credential, secret = create_api_credential(name="Schemathesis")
    return {"Authorization": basic(credential.key, secret)}


OPERATIONS = sorted(f"{method.upper()} {path}" for path, methods in PUBLIC_PATHS.items() for method in methods)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", OPERATIONS)
def test_no_generated_request_makes_the_api_fail(label, mode, api_world, wsgi_app, django_capture_on_commit_callbacks):
    """Schemathesis' strategies for each operation, valid (positive) and invalid (negative)
    inputs, driven by Hypothesis in this test (its pytest plugin does not run on this pytest)."""
    schema = schemathesis.openapi.from_wsgi(SCHEMA + "?format=json", wsgi_app)
    operation = schema.find_operation_by_label(label)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        with django_capture_on_commit_callbacks(execute=True):
            response = case.call(headers=api_world)
        case.validate_response(response, checks=CHECKS)

    run()
