"""SPEC C4/C11: the admin's Verify action and Test connection, driven through the real admin pages
against the fake Twilio (tests/fakes/twilio_server.py) with SMS_PROVIDER=twilio."""
import pytest
from django.urls import reverse

from sms.models import ProviderConnection, Verification
from tests.factories import make_number, page_text

OWNED = "+15551230001"
VOICE_ONLY = "+15551230002"
STRANGER = "+15559990000"

pytestmark = pytest.mark.django_db


def run_verify_action(admin_client, *numbers):
    """Tick the numbers in the admin list and run "Verify the selected numbers with the provider"."""
    response = admin_client.post(
        reverse("admin:sms_phonenumber_changelist"),
        {"action": "verify", "_selected_action": [n.pk for n in numbers]},
        follow=True,
    )
    assert response.status_code == 200
    return response


def shown_messages(response) -> list[tuple[str, str]]:
    """The (level, text) of each message the admin page shows."""
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_verifying_an_owned_sms_number_marks_it_verified(admin_client, twilio_settings):
    # given
    twilio_settings.add_number(OWNED, "Support line", sms=True)
    number = make_number(OWNED, verified=False)

    # when
    response = run_verify_action(admin_client, number)

    # then
    number.refresh_from_db()
    assert number.verification == Verification.VERIFIED
    assert number.verified_at is not None
    assert shown_messages(response) == [
        ("success", f"{OWNED}: verified. Owned by the Twilio account with SMS capability.")
    ]
    assert f"{OWNED}: verified." in page_text(response)


def test_verifying_a_number_the_account_does_not_own_leaves_it_unverified(admin_client, twilio_settings):
    twilio_settings.add_number(OWNED)
    number = make_number(STRANGER, verified=False)

    response = run_verify_action(admin_client, number)

    number.refresh_from_db()
    assert number.verification == Verification.UNVERIFIED
    assert number.verification_note == "This Twilio account does not own this number."
    assert shown_messages(response) == [
        ("error", f"{STRANGER}: still unverified. This Twilio account does not own this number.")
    ]
    assert "does not own this number" in page_text(response)


def test_verifying_a_voice_only_number_explains_it_cannot_do_sms(admin_client, twilio_settings):
    twilio_settings.add_number(VOICE_ONLY, sms=False, mms=False)
    number = make_number(VOICE_ONLY, verified=False)

    response = run_verify_action(admin_client, number)

    number.refresh_from_db()
    assert number.verification == Verification.UNVERIFIED
    assert "cannot send or receive SMS" in page_text(response)


def test_verifying_several_numbers_reports_each_one(admin_client, twilio_settings):
    twilio_settings.add_number(OWNED)
    owned = make_number(OWNED, verified=False)
    stranger = make_number(STRANGER, verified=False)

    response = run_verify_action(admin_client, owned, stranger)

    owned.refresh_from_db()
    stranger.refresh_from_db()
    assert (owned.verification, stranger.verification) == (Verification.VERIFIED, Verification.UNVERIFIED)
    assert [level for level, _ in shown_messages(response)] == ["success", "error"]


def test_a_previously_verified_number_the_account_no_longer_owns_becomes_unverified(admin_client, twilio_settings):
    number = make_number(STRANGER, verified=True)

    run_verify_action(admin_client, number)

    number.refresh_from_db()
    assert number.verification == Verification.UNVERIFIED
    assert number.verified_at is None


def test_verifying_with_wrong_credentials_says_so_and_changes_nothing(admin_client, twilio_settings, settings):
    # given: the account owns the number, but the portal holds a stale token
    twilio_settings.add_number(OWNED)
    settings.TWILIO_AUTH_TOKEN = "stale-token"
    number = make_number(OWNED, verified=False)

    # when
    response = run_verify_action(admin_client, number)

    # then: a sentence about the credentials, not a server error
    number.refresh_from_db()
    assert number.verification == Verification.UNVERIFIED
    [(level, text)] = shown_messages(response)
    assert level == "error"
    assert "refused the credentials" in text and "TWILIO_AUTH_TOKEN" in text
    assert "refused the credentials" in page_text(response)


def test_verifying_while_twilio_is_unreachable_says_to_try_again(admin_client, twilio_settings, settings):
    twilio_settings.stop()  # nothing listens on TWILIO_API_BASE any more
    number = make_number(OWNED, verified=False)

    response = run_verify_action(admin_client, number)

    number.refresh_from_db()
    assert number.verification == Verification.UNVERIFIED
    assert "Could not reach Twilio" in page_text(response)


# --- Test connection --------------------------------------------------------------------------


def press_test_connection(admin_client):
    response = admin_client.post(reverse("admin:sms_providerconnection_test"), follow=True)
    assert response.status_code == 200
    return response


def test_the_connection_page_offers_the_test_button(admin_client, twilio_settings):
    response = admin_client.get(reverse("admin:sms_providerconnection_changelist"), follow=True)

    assert response.status_code == 200
    assert reverse("admin:sms_providerconnection_test") in page_text(response)
    assert "Not checked yet." in page_text(response)


def test_testing_the_connection_lists_the_accounts_numbers(admin_client, twilio_settings):
    # given
    twilio_settings.add_number(OWNED, "Support line", sms=True)
    twilio_settings.add_number(VOICE_ONLY, "Voice line", sms=False)

    # when
    response = press_test_connection(admin_client)

    # then: the change page of the connection, with the result and the numbers
    text = page_text(response)
    assert shown_messages(response) == [("success", "Connected to the twilio provider: 2 number(s) found.")]
    assert "number(s) found" in text
    assert f"{OWNED} Support line" in text
    assert f"{VOICE_ONLY} Voice line (no SMS)" in text
    connection = ProviderConnection.load()
    assert connection.ok is True
    assert [n["number"] for n in connection.numbers_found] == [OWNED, VOICE_ONLY]


def test_testing_the_connection_with_wrong_credentials_shows_the_failure(admin_client, twilio_settings, settings):
    twilio_settings.add_number(OWNED, "Support line")
    settings.TWILIO_AUTH_TOKEN = "stale-token"

    response = press_test_connection(admin_client)

    text = page_text(response)
    [(level, message)] = shown_messages(response)
    assert level == "error"
    assert "refused the credentials" in message
    assert "Failed: Twilio refused the credentials" in text
    assert OWNED not in text
    assert ProviderConnection.load().ok is False


def test_a_failed_check_clears_the_numbers_of_an_earlier_success(admin_client, twilio_settings, settings):
    twilio_settings.add_number(OWNED, "Support line")
    press_test_connection(admin_client)
    settings.TWILIO_AUTH_TOKEN = "stale-token"

    response = press_test_connection(admin_client)

    assert OWNED not in page_text(response)
    assert ProviderConnection.load().numbers_found == []
