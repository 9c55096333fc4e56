"""Which language's texts a consumer gets (issue 14, item 3), and the admin saying so: the
queue's text in the chosen language, else the nearest menu above it in that language, else the
default language — and the queue page and the chat settings page warn of each language that
falls back."""
import pytest
from django.urls import reverse

from queues.models import QueueMessages, queue_text
from tests.factories import make_queue, page_text, update_chat_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree():
    support = make_queue("Support")
    billing = make_queue("Billing", parent=support)
    tech = make_queue("Tech", parent=support, position=2)
    QueueMessages.objects.create(queue=support, language="en", greeting="Welcome to Acme", queued="Please hold")
    QueueMessages.objects.create(queue=support, language="es", greeting="Bienvenido a Acme", queued="Espere, por favor")
    QueueMessages.objects.create(queue=billing, language="en", greeting="Billing here", queued="A billing agent is coming")
    QueueMessages.objects.create(queue=billing, language="fr", greeting="Facturation", queued="Un agent arrive")
    return support, billing, tech


def test_the_queues_own_text_in_the_chosen_language_comes_first(tree):
    _, billing, _ = tree
    assert queue_text(billing, "queued", "fr", "en") == "Un agent arrive"
    assert queue_text(billing, "queued", "en", "en") == "A billing agent is coming"


def test_then_the_nearest_menu_above_in_that_language(tree):
    _, billing, tech = tree
    assert queue_text(billing, "queued", "es", "en") == "Espere, por favor"  # Billing has no Spanish; Support does
    assert queue_text(tech, "greeting", "es", "en") == "Bienvenido a Acme"  # Tech has no texts at all


def test_then_the_default_language(tree):
    _, billing, tech = tree
    assert queue_text(billing, "queued", "de", "en") == "A billing agent is coming"
    assert queue_text(tech, "queued", "de", "en") == "Please hold"


def test_a_blank_text_in_the_language_means_send_nothing(tree):
    _, billing, _ = tree
    QueueMessages.objects.filter(queue=billing, language="fr").update(queued="")
    assert queue_text(billing, "queued", "fr", "en") == ""


def test_the_queue_page_says_which_languages_fall_back(tree, admin_client):
    support, billing, _ = tree
    update_chat_settings(enabled_languages=["en", "es", "de"], default_language="en")

    billing_page = page_text(admin_client.get(reverse("admin:queues_queue_change", args=[billing.pk])))
    support_page = page_text(admin_client.get(reverse("admin:queues_queue_change", args=[support.pk])))

    assert (
        "No German texts on this queue or the menus above it: consumers who choose German get the English texts. "
        "Add German under Queue messages." in billing_page
    )
    assert "No Spanish texts" not in billing_page  # Support's Spanish texts serve it
    assert "No German texts" in support_page


def test_a_queue_limited_to_some_languages_is_only_warned_about_those(tree, admin_client):
    _, billing, _ = tree
    update_chat_settings(enabled_languages=["en", "es", "de"], default_language="en")
    billing.languages = ["en", "es"]
    billing.save()

    page = page_text(admin_client.get(reverse("admin:queues_queue_change", args=[billing.pk])))

    assert "No German texts" not in page


def test_the_chat_settings_page_lists_the_queues_without_an_enabled_language(tree, admin_client):
    update_chat_settings(enabled_languages=["en", "es", "de"], default_language="en")

    page = page_text(admin_client.get(reverse("admin:portal_chatsettings_changelist"), follow=True))

    assert (
        "German is enabled, but these queues have no German texts (nor do the menus above them), so consumers who "
        "choose it get English: Support, Support › Billing, Support › Tech." in page
    )
    assert "Spanish is enabled, but" not in page
