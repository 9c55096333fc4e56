"""SPEC C1, C7: the rules of the settings pages, and the one-row ("singleton") behaviour of every
settings model, through the real admin pages."""
import pytest
from django.contrib import admin
from django.urls import reverse

from portal.models import BlendingMessages, ChatSettings, InCallSmsSettings, OperationSettings
from sms.models import ProviderConnection
from tests.factories import add_inline_row, admin_form_data, inline_prefix, page_text

SINGLETONS = [ChatSettings, InCallSmsSettings, OperationSettings, ProviderConnection]


def admin_url(model, view, *args):
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def settings_page(admin_client, model):
    row = model.load()
    response = admin_client.get(admin_url(model, "change", row.pk))
    assert response.status_code == 200
    return response


def post_chat_settings(admin_client, **fields):
    data = admin_form_data(settings_page(admin_client, ChatSettings))
    data.update(fields)
    return admin_client.post(admin_url(ChatSettings, "change", 1), data)


# --- Chat settings: the dismissal timer (C1) ----------------------------------------------------


@pytest.mark.django_db
def test_the_chat_settings_page_saves_unchanged_defaults(admin_client):
    response = post_chat_settings(admin_client)

    assert response.status_code == 302
    assert ChatSettings.objects.count() == 1


@pytest.mark.django_db
def test_a_dismissal_timer_above_the_chat_timeout_is_refused(admin_client):
    # Given the default chat timeout of 1,440 minutes
    # When the admin sets the dismissal timer to 1,441 minutes
    response = post_chat_settings(admin_client, dismissal_enabled="on", dismissal_minutes="1441")

    # Then it is refused with both values in the message, and nothing changes
    assert response.status_code == 200
    assert "The dismissal timer (1441 min) cannot be longer than the chat timeout (1440 min)." in page_text(
        response
    )
    row = ChatSettings.load()
    assert (row.dismissal_enabled, row.dismissal_minutes) == (False, 60)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "Ensure this value is greater than or equal to 1."),
        ("10081", "Ensure this value is less than or equal to 10080."),
    ],
)
def test_a_dismissal_timer_outside_one_minute_to_one_week_is_refused(admin_client, value, message):
    # Given a chat timeout long enough not to matter
    response = post_chat_settings(admin_client, chat_timeout_minutes="50000", dismissal_minutes=value)

    assert response.status_code == 200
    assert message in page_text(response)
    row = ChatSettings.load()
    assert (row.chat_timeout_minutes, row.dismissal_minutes) == (1440, 60)


@pytest.mark.django_db
def test_a_one_week_dismissal_timer_is_accepted_when_the_chat_timeout_allows_it(admin_client):
    response = post_chat_settings(
        admin_client, chat_timeout_minutes="10080", dismissal_enabled="on", dismissal_minutes="10080"
    )

    assert response.status_code == 302
    row = ChatSettings.load()
    assert (row.chat_timeout_minutes, row.dismissal_enabled, row.dismissal_minutes) == (10080, True, 10080)


@pytest.mark.django_db
def test_the_default_language_must_be_enabled(admin_client):
    response = post_chat_settings(admin_client, default_language="es", enabled_languages=["en"])

    assert response.status_code == 200
    assert "Spanish must also be an enabled language." in page_text(response)


# --- In-call SMS settings: the custom message limit (C7) -----------------------------------------


def post_in_call_settings(admin_client, **fields):
    page = settings_page(admin_client, InCallSmsSettings)
    data = admin_form_data(page)
    prefix = inline_prefix(page, BlendingMessages)
    # The page opens with one empty row of prompts (at least one language is required): fill it.
    assert data[f"{prefix}-TOTAL_FORMS"] == ["1"]
    data[f"{prefix}-TOTAL_FORMS"] = "0"
    add_inline_row(
        data,
        prefix,
        language="en",
        consent_prompt="Press 1 to get a text while you wait, press 2 to keep waiting.",
        sms_sent_prompt="We have sent you a text.",
        incorrect_selection_prompt="Sorry, that was not a valid choice.",
        wait_time_sms_text="Reply with details or photos.",
    )
    data.update(fields)
    return admin_client.post(admin_url(InCallSmsSettings, "change", 1), data)


@pytest.mark.django_db
def test_a_custom_in_call_message_limit_of_919_characters_is_refused(admin_client):
    response = post_in_call_settings(admin_client, custom_messages_allowed="on", custom_message_limit="919")

    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 918." in page_text(response)
    assert InCallSmsSettings.load().custom_messages_allowed is False
    assert not BlendingMessages.objects.exists()


@pytest.mark.django_db
def test_a_custom_in_call_message_limit_of_918_characters_is_accepted(admin_client):
    response = post_in_call_settings(admin_client, custom_messages_allowed="on", custom_message_limit="918")

    assert response.status_code == 302
    row = InCallSmsSettings.load()
    assert (row.custom_messages_allowed, row.custom_message_limit) == (True, 918)
    assert row.messages.get().language == "en"


@pytest.mark.django_db
def test_the_in_call_settings_need_prompts_in_at_least_one_language(admin_client):
    # Given the in-call settings page with its prompts row left empty
    page = settings_page(admin_client, InCallSmsSettings)
    data = admin_form_data(page)

    # When the admin saves it as it is
    response = admin_client.post(admin_url(InCallSmsSettings, "change", 1), data)

    # Then the language of the prompts is asked for
    assert response.status_code == 200
    assert "This field is required." in page_text(response)
    assert not BlendingMessages.objects.exists()


# --- One row only ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("model", SINGLETONS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("view", ["changelist", "add"])
def test_the_list_and_add_pages_lead_to_the_one_rows_change_page(admin_client, model, view):
    # When the admin opens the list or the add page of a settings model
    response = admin_client.get(admin_url(model, view))

    # Then they are sent to the change page of the one row, created on first use
    assert response.status_code == 302
    assert response.url == admin_url(model, "change", 1)
    assert model.objects.count() == 1
    assert admin_client.get(response.url).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model", SINGLETONS, ids=lambda m: m.__name__)
def test_a_second_row_cannot_be_created(model):
    # Given the settings row
    first = model.load()

    # When code saves a new instance, even with another primary key
    second = model()
    second.save()
    third = model(pk=7)
    third.save()

    # Then it is still the one row
    assert first.pk == second.pk == third.pk == 1
    assert model.objects.count() == 1
    assert model.load().pk == 1


@pytest.mark.django_db
@pytest.mark.parametrize("model", SINGLETONS, ids=lambda m: m.__name__)
def test_deleting_the_settings_row_does_nothing(model):
    row = model.load()

    row.delete()

    assert model.objects.filter(pk=1).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("model", SINGLETONS, ids=lambda m: m.__name__)
def test_the_admin_offers_no_delete_for_settings(admin_client, model):
    # Given the settings row's admin page
    row = model.load()
    model_admin = admin.site._registry[model]
    page = admin_client.get(admin_url(model, "change", row.pk))

    # Then it has no delete link, the delete page is forbidden, and no delete action exists
    assert page.status_code == 200
    assert admin_url(model, "delete", row.pk) not in page.content.decode()
    assert 'class="deletelink"' not in page.content.decode()
    assert admin_client.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=1).exists()
    assert not model_admin.has_delete_permission(page.wsgi_request, row)
    assert "delete_selected" not in model_admin.get_actions(page.wsgi_request)
