"""SPEC C9 and A: API credentials — made by `manage.py create_api_credential` or in the admin, the
secret shown once and stored hashed, HTTP Basic authentication with key:secret, revocation."""
import base64
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from portal.authentication import ApiClient, ApiCredentialAuthentication
from portal.credentials import create_api_credential, revoke_api_credential
from portal.models import ApiCredential, hash_secret
from tests.factories import admin_form_data


class WhoAmI(APIView):
    """A minimal API endpoint behind API-credential authentication."""

    authentication_classes = [ApiCredentialAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        assert isinstance(request.user, ApiClient)
        return Response({"credential": request.auth.name})


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def call_api(authorization: str | None):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    request = APIRequestFactory().get("/apps/api/v1/whoami", **headers)
    response = WhoAmI.as_view()(request)
    response.render()
    return response


# --- manage.py create_api_credential ----------------------------------------------------------


@pytest.mark.django_db
def test_the_command_prints_the_key_and_the_secret_on_two_lines():
    # When an operator creates a credential from the command line
    out = StringIO()
    call_command("create_api_credential", "Billing system", stdout=out)

    # Then exactly two lines come out: key=… and secret=…
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"key=tk_[0-9a-f]{24}", lines[0])
    assert re.fullmatch(r"secret=[A-Za-z0-9_-]{40,}", lines[1])
    key, secret = lines[0].removeprefix("key="), lines[1].removeprefix("secret=")

    # And the credential is stored by key, its secret only as a hash
    credential = ApiCredential.objects.get(key=key)
    assert credential.name == "Billing system"
    assert credential.is_active
    assert credential.secret_hash != secret
    assert secret not in credential.secret_hash
    assert credential.secret_hash == hash_secret(secret)
    assert credential.check_secret(secret)


@pytest.mark.django_db
def test_each_credential_gets_its_own_key_and_secret():
    first, first_secret = create_api_credential(name="A")
    second, second_secret = create_api_credential(name="B")

    assert first.key != second.key
    assert first_secret != second_secret


@pytest.mark.django_db
def test_the_command_refuses_a_blank_name():
    with pytest.raises(CommandError, match="Give the credential a name"):
        call_command("create_api_credential", "   ", stdout=StringIO())
    assert not ApiCredential.objects.exists()


# --- The admin --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_shows_the_secret_once_and_stores_only_its_hash(admin_client):
    # Given the add page of an API credential
    add_url = reverse("admin:portal_apicredential_add")
    data = admin_form_data(admin_client.get(add_url))
    data["name"] = "CRM"

    # When the admin saves it
    response = admin_client.post(add_url, data, follow=True)

    # Then the success message shows the key and the secret
    assert response.status_code == 200
    messages = [str(message) for message in response.context["messages"]]
    pattern = r"Key: <code>(tk_[0-9a-f]+)</code> Secret: <code>([^<]+)</code>"
    shown = [match.groups() for match in (re.search(pattern, text) for text in messages) if match]
    assert len(shown) == 1, messages
    key, secret = shown[0]
    assert "copy the secret now" in response.content.decode()

    # And only the hash of the secret is stored
    credential = ApiCredential.objects.get()
    assert (credential.name, credential.key) == ("CRM", key)
    assert credential.secret_hash == hash_secret(secret) != secret

    # And the secret is never shown again
    change_page = admin_client.get(reverse("admin:portal_apicredential_change", args=[credential.pk]))
    assert change_page.status_code == 200
    assert key in change_page.content.decode()
    assert secret not in change_page.content.decode()
    assert credential.secret_hash not in change_page.content.decode()
    listing = admin_client.get(reverse("admin:portal_apicredential_changelist"))
    assert secret not in listing.content.decode()


@pytest.mark.django_db
def test_renaming_a_credential_keeps_its_key_and_secret(admin_client):
    credential, secret = create_api_credential(name="CRM")
    url = reverse("admin:portal_apicredential_change", args=[credential.pk])
    data = admin_form_data(admin_client.get(url))
    data["name"] = "CRM (production)"

    response = admin_client.post(url, data)

    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.name == "CRM (production)"
    assert credential.check_secret(secret)


@pytest.mark.django_db
def test_the_revoke_action_revokes_the_selected_credentials(admin_client):
    credential, _ = create_api_credential(name="CRM")

    response = admin_client.post(
        reverse("admin:portal_apicredential_changelist"),
        {"action": "revoke", "_selected_action": [credential.pk]},
    )

    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.revoked_at is not None
    assert not credential.is_active


# --- HTTP Basic with key:secret ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_right_key_and_secret_authenticate_and_record_the_last_use():
    # Given a credential never used
    credential, secret = create_api_credential(name="Billing system")
    assert credential.last_used_at is None

    # When a client calls with key:secret over HTTP Basic
    response = call_api(basic(credential.key, secret))

    # Then it is let in as that credential, and the use is recorded
    assert response.status_code == 200
    assert response.data == {"credential": "Billing system"}
    credential.refresh_from_db()
    assert credential.last_used_at is not None


@pytest.mark.django_db
def test_a_wrong_secret_is_refused_with_a_clear_message():
    credential, secret = create_api_credential(name="Billing system")

    response = call_api(basic(credential.key, secret + "x"))

    assert response.status_code == 401
    assert response.data["detail"] == "Invalid API key or secret."
    assert response["WWW-Authenticate"] == 'Basic realm="Tern API"'
    credential.refresh_from_db()
    assert credential.last_used_at is None


@pytest.mark.django_db
def test_an_unknown_key_is_refused():
    _, secret = create_api_credential(name="Billing system")

    response = call_api(basic("tk_unknown", secret))

    assert response.status_code == 401
    assert response.data["detail"] == "Invalid API key or secret."


@pytest.mark.django_db
def test_a_revoked_credential_is_refused():
    # Given a credential that worked, then was revoked
    credential, secret = create_api_credential(name="Billing system")
    assert call_api(basic(credential.key, secret)).status_code == 200
    revoke_api_credential(credential=credential)

    # When the client calls again with the same key and secret
    response = call_api(basic(credential.key, secret))

    # Then it is refused
    assert response.status_code == 401
    assert response.data["detail"] == "Invalid API key or secret."


@pytest.mark.django_db
def test_a_call_without_credentials_is_refused():
    response = call_api(None)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="Tern API"'
