"""SPEC C2, C3, C5: the rules an admin meets on queues and on the BACK/EXIT command words, through
the real admin pages, and the queue list showing the tree."""
import re

import pytest
from django.urls import reverse

from portal.keywords import PROTECTED_WORDS
from portal.models import ChatSettings
from queues.models import MenuAction, MenuCommand, Queue
from tests.factories import admin_page_data, make_queue, page_text


def submit(admin_client, url: str, **fields):
    """Submit the admin page at `url` with `fields` changed, as the admin would."""
    return admin_client.post(url, admin_page_data(admin_client, url, **fields))


def post_queue_add(admin_client, **fields):
    return submit(admin_client, reverse("admin:queues_queue_add"), **fields)


def post_queue_change(admin_client, queue, **fields):
    return submit(admin_client, reverse("admin:queues_queue_change", args=[queue.pk]), **fields)


def post_command(admin_client, word, action=MenuAction.BACK):
    return submit(admin_client, reverse("admin:queues_menucommand_add"), word=word, action=action)


# --- BACK/EXIT command words ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_default_back_and_exit_words_exist():
    assert set(MenuCommand.objects.values_list("word", "action")) >= {
        ("BACK", MenuAction.BACK),
        ("EXIT", MenuAction.EXIT),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("word", ["STOP", "stop", "Revoke", "OPTOUT", "HELP", "unstop", " Cancel "])
def test_a_command_word_equal_to_a_protected_word_is_refused(admin_client, word):
    # Given the BACK/EXIT command words
    before = MenuCommand.objects.count()

    # When the admin adds a protected SMS command as a BACK word, in any case
    response = post_command(admin_client, word)

    # Then it is refused with a readable error, and nothing is saved
    assert response.status_code == 200
    assert f"{word.strip().upper()} is a protected SMS command" in page_text(response)
    assert MenuCommand.objects.count() == before


def test_every_protected_word_of_the_spec_is_protected():
    assert PROTECTED_WORDS == {
        "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
        "START", "YES", "UNSTOP",
        "HELP", "INFO",
    }  # fmt: skip


@pytest.mark.django_db
def test_a_command_word_equal_to_a_queue_menu_keyword_is_refused(admin_client):
    # Given a menu option reachable with the keyword BILLING
    support = make_queue("Support")
    make_queue("Billing", parent=support, menu_keywords="BILLING, INVOICE")
    before = MenuCommand.objects.count()

    # When the admin adds "invoice" as an EXIT word
    response = post_command(admin_client, "invoice", MenuAction.EXIT)

    # Then it is refused, naming the queue
    assert response.status_code == 200
    assert "INVOICE is a menu keyword of queue Billing; pick another word." in page_text(response)
    assert MenuCommand.objects.count() == before


@pytest.mark.django_db
def test_a_command_word_equal_to_a_menu_option_number_is_refused(admin_client):
    # Given the menu Support with the options Billing (1) and Tech (2)
    support = make_queue("Support")
    make_queue("Billing", parent=support, position=1)
    make_queue("Tech", parent=support, position=2)
    before = MenuCommand.objects.count()

    # When the admin adds "2" as a BACK word
    response = post_command(admin_client, " 2 ", MenuAction.BACK)

    # Then it is refused, naming the menu and the option it would hide
    assert response.status_code == 200
    assert (
        "2 is the number of option 2 (Tech) of the menu Support: a consumer replying 2 could no longer choose it. "
        "Pick another word." in page_text(response)
    )
    assert MenuCommand.objects.count() == before
    # A number past every menu's options is a word like any other
    assert post_command(admin_client, "9", MenuAction.BACK).status_code == 302


@pytest.mark.django_db
def test_a_new_menu_option_whose_number_is_a_command_word_is_refused(admin_client):
    # Given the menu Support with one option, and 2 as an EXIT word
    support = make_queue("Support")
    make_queue("Billing", parent=support, position=1)
    MenuCommand.objects.create(word="2", action=MenuAction.EXIT)

    # When the admin adds a second option, which consumers would pick by replying 2
    response = post_queue_add(admin_client, name="Tech", parent=support.pk, position=2)

    # Then it is refused until the word is changed
    assert response.status_code == 200
    assert "With this queue, reply 2 picks option 2 (Tech) of the menu Support, but 2 is a BACK/EXIT command word." in (
        page_text(response)
    )
    assert not Queue.objects.filter(name="Tech").exists()
    # A hidden option has no number, so it may be added
    assert post_queue_add(admin_client, name="Tech", parent=support.pk, position=2, hidden=True).status_code == 302


@pytest.mark.django_db
def test_a_new_command_word_is_saved_in_capitals(admin_client):
    response = post_command(admin_client, " menu ", MenuAction.BACK)

    assert response.status_code == 302
    assert MenuCommand.objects.get(word="MENU").action == MenuAction.BACK


@pytest.mark.django_db
def test_a_command_word_is_unique_whatever_its_case(admin_client):
    response = post_command(admin_client, "back", MenuAction.EXIT)

    assert response.status_code == 200
    assert "already exists" in page_text(response)
    assert MenuCommand.objects.filter(word__iexact="back").count() == 1


# --- Menu keywords ----------------------------------------------------------------------------


PROTECTED = "{} is a protected SMS command and cannot be a menu keyword."
COMMAND_WORD = "{} is already a BACK/EXIT command word and cannot be a menu keyword."


@pytest.mark.django_db
@pytest.mark.parametrize(
    "keywords, message",
    [
        ("STOP", PROTECTED.format("STOP")),
        ("billing, help", PROTECTED.format("HELP")),
        ("Yes", PROTECTED.format("YES")),
        ("back", COMMAND_WORD.format("BACK")),
        ("BILLING, Exit", COMMAND_WORD.format("EXIT")),
    ],
)
def test_a_menu_keyword_equal_to_a_protected_word_or_a_back_or_exit_word_is_refused(admin_client, keywords, message):
    # When the admin saves a new queue with a protected word or a BACK/EXIT word among its keywords
    response = post_queue_add(admin_client, name="Billing", menu_keywords=keywords)

    # Then it is refused and no queue is created
    assert response.status_code == 200
    assert message in page_text(response)
    assert not Queue.objects.exists()


@pytest.mark.django_db
def test_a_menu_keyword_equal_to_a_custom_command_word_is_refused(admin_client):
    # Given a custom BACK word added in the admin
    assert post_command(admin_client, "menu").status_code == 302

    # When a queue uses it as a keyword
    response = post_queue_add(admin_client, name="Billing", menu_keywords="Menu")

    # Then it is refused
    assert response.status_code == 200
    assert "MENU is already a BACK/EXIT command word" in page_text(response)


@pytest.mark.django_db
def test_menu_keywords_are_saved_normalised(admin_client):
    response = post_queue_add(admin_client, name="Billing", menu_keywords=" billing ,invoice,, Billing ")

    assert response.status_code == 302
    billing = Queue.objects.get(name="Billing")
    assert billing.menu_keywords == "BILLING, INVOICE"
    assert billing.keyword_list == ["BILLING", "INVOICE"]


# --- Dismissal override (C3) ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_dismissal_override_above_the_global_chat_timeout_is_refused(admin_client):
    # Given the global chat timeout of 1,440 minutes and a queue without a timeout override
    ChatSettings.load()
    support = make_queue("Support")

    # When the admin sets the queue's dismissal timer to 2,000 minutes
    response = post_queue_change(admin_client, support, dismissal_minutes="2000")

    # Then it is refused against the effective chat timeout
    assert response.status_code == 200
    assert "The dismissal timer (2000 min) cannot be longer than the chat timeout (1440 min)." in page_text(
        response
    )
    support.refresh_from_db()
    assert support.dismissal_minutes is None


@pytest.mark.django_db
def test_a_dismissal_override_above_the_queues_own_chat_timeout_is_refused(admin_client):
    support = make_queue("Support")

    response = post_queue_change(admin_client, support, chat_timeout_minutes="30", dismissal_minutes="45")

    assert response.status_code == 200
    assert "The dismissal timer (45 min) cannot be longer than the chat timeout (30 min)." in page_text(response)
    support.refresh_from_db()
    assert (support.chat_timeout_minutes, support.dismissal_minutes) == (None, None)


@pytest.mark.django_db
def test_a_chat_timeout_override_below_the_global_dismissal_timer_is_refused_when_dismissal_is_on(admin_client):
    # Given dismissal on globally after 60 minutes
    chat_settings = ChatSettings.load()
    chat_settings.dismissal_enabled = True
    chat_settings.dismissal_minutes = 60
    chat_settings.save()
    support = make_queue("Support")

    # When a queue shortens its chat timeout to 30 minutes without its own dismissal timer
    response = post_queue_change(admin_client, support, chat_timeout_minutes="30")

    # Then it is refused: the effective dismissal timer would outlast the chat
    assert response.status_code == 200
    assert "The dismissal timer (60 min) cannot be longer than the chat timeout (30 min)." in page_text(response)


@pytest.mark.django_db
def test_a_dismissal_override_within_the_chat_timeout_is_saved(admin_client):
    support = make_queue("Support")

    response = post_queue_change(admin_client, support, chat_timeout_minutes="10080", dismissal_minutes="10080")

    assert response.status_code == 302
    support.refresh_from_db()
    assert (support.chat_timeout_minutes, support.dismissal_minutes) == (10080, 10080)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "Ensure this value is greater than or equal to 1."),
        ("10081", "Ensure this value is less than or equal to 10080."),
    ],
)
def test_a_dismissal_override_outside_one_minute_to_one_week_is_refused(admin_client, value, message):
    # Given a queue whose chat timeout is long enough not to matter
    support = make_queue("Support", chat_timeout_minutes=50_000)

    # When the admin sets its dismissal timer out of range
    response = post_queue_change(admin_client, support, dismissal_minutes=value)

    # Then the range error shows and nothing changes
    assert response.status_code == 200
    assert message in page_text(response)
    support.refresh_from_db()
    assert support.dismissal_minutes is None


# --- The tree ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_queue_cannot_be_its_own_parent(admin_client):
    support = make_queue("Support")

    response = post_queue_change(admin_client, support, parent=str(support.pk))

    assert response.status_code == 200
    assert "A queue cannot sit under itself or one of its own sub-queues." in page_text(response)
    support.refresh_from_db()
    assert support.parent_id is None


@pytest.mark.django_db
def test_a_queue_cannot_move_under_its_own_descendant(admin_client):
    # Given Support › Billing › Cards
    support = make_queue("Support")
    billing = make_queue("Billing", parent=support)
    cards = make_queue("Cards", parent=billing)

    # When the admin puts Support under Cards
    response = post_queue_change(admin_client, support, parent=str(cards.pk))

    # Then the cycle is refused and the tree is unchanged
    assert response.status_code == 200
    assert "A queue cannot sit under itself or one of its own sub-queues." in page_text(response)
    support.refresh_from_db()
    assert support.parent_id is None


@pytest.mark.django_db
def test_a_queue_can_move_under_another_branch(admin_client):
    support = make_queue("Support")
    sales = make_queue("Sales", position=2)
    billing = make_queue("Billing", parent=support)

    response = post_queue_change(admin_client, billing, parent=str(sales.pk))

    assert response.status_code == 302
    billing.refresh_from_db()
    assert billing.parent == sales


@pytest.mark.django_db
def test_the_queue_list_shows_children_indented_under_their_parent(admin_client):
    # Given Support with Billing (option 1) and Tech (option 2), and a second top-level queue
    support = make_queue("Support", position=1)
    make_queue("Tech", parent=support, position=2)
    make_queue("Billing", parent=support, position=1)
    make_queue("Abroad", position=2)

    # When the admin opens the queue list
    response = admin_client.get(reverse("admin:queues_queue_changelist"))

    # Then the rows follow the tree, children indented under their parent
    assert response.status_code == 200
    table = page_text(response).split('id="result_list"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<span style="padding-left:([\d.]+)em">(?:└ )?([^<]+)</span>', table)
    assert [(name, float(indent)) for indent, name in rows] == [
        ("Support", 0),
        ("Billing", 1.5),
        ("Tech", 1.5),
        ("Abroad", 0),
    ]
    assert "└ Billing" in table and "└ Tech" in table
    assert "└ Support" not in table


@pytest.mark.django_db
def test_the_queue_list_shows_ids_and_the_queue_page_names_its_agents(admin_client):
    from tests.factories import make_agent

    support = make_queue("Support")
    billing = make_queue("Billing", parent=support)
    billing.agents.add(make_agent("alice"))

    listing = page_text(admin_client.get(reverse("admin:queues_queue_changelist")))
    page = page_text(admin_client.get(reverse("admin:queues_queue_change", args=[billing.pk])))

    assert re.search(rf"<td class=\"field-queue_id\">{billing.pk}</td>", listing)  # the IVR API's queue_id
    assert "Alice on Support › Billing" in page
    assert " object (" not in page
