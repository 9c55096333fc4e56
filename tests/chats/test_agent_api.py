"""The agent adapter's REST actions under /apps/api/v1/agent/ (session auth + CSRF), each as the
browser calls it (SPEC S5–S9, S12, C1, M5), and each refusal: a 4xx with {"error": "<sentence>"}.

The consumer texts through the signed inbound webhook (tests/chats/conftest.py `phone`); every
request runs inside django_capture_on_commit_callbacks(execute=True), so what happens after
commit (the SMS send, assignment) has happened when the test looks."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.test import Client

from chats.models import Author, Chat, ChatStatus, ChatType, FinishReason, Media, Message, Offer, StartType, Transfer
from portal.models import AgentStatus, ChatShortcut, CrmContact
from queues.models import AnswerType
from sms.models import NumberDirection, NumberRole
from sms.pipeline import add_do_not_contact
from tests.chats.conftest import CHAT_ENDED, CONSUMER, OTHER_CONSUMER, PORTAL
from tests.factories import (
    link_number,
    make_crm_contact,
    make_sending_number,
    make_team,
    update_chat_settings,
)

API = "/apps/api/v1/agent/"
MASKED = "+1••••••4321"  # CONSUMER as an agent without the permission sees it
OUTBOUND = "+15550100002"
NEW_CONSUMER = "+15557770000"
OPT_IN_TEXT = "Acme here. Reply YES to get texts from us, STOP to opt out."


class Adapter:
    """An agent's browser: logged in with the password, calling the REST actions as JSON."""

    def __init__(self, user, capture, *, csrf_checks: bool = False):
        self.client = Client(enforce_csrf_checks=csrf_checks)
        self.capture = capture
        self.csrf_token = ""
        if user is not None:
            assert self.client.login(username=user.get_username(), password="demo")

    def open_page(self):
        """GET /agent/, which sets the csrftoken cookie the page's script sends back."""
        response = self.client.get("/agent/")
        self.csrf_token = self.client.cookies["csrftoken"].value
        return response

    def get(self, path: str):
        with self.capture(execute=True):
            return self.client.get(API + path)

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True):
        headers = {"X-CSRFToken": self.csrf_token} if csrf and self.csrf_token else {}
        with self.capture(execute=True):
            return self.client.post(API + path, data or {}, content_type="application/json", headers=headers)

    # The actions, by name
    def state(self):
        response = self.get("state")
        assert response.status_code == 200, response.content
        return response.json()

    def send(self, chat, body: str):
        return self.post(f"chats/{chat.pk}/messages", {"body": body})

    def messages(self, chat):
        return self.get(f"chats/{chat.pk}/messages")


@pytest.fixture
def adapter(django_capture_on_commit_callbacks):
    def open_as(agent_or_user, **kw) -> Adapter:
        user = getattr(agent_or_user, "user", agent_or_user)
        return Adapter(user, django_capture_on_commit_callbacks, **kw)

    return open_as


@pytest.fixture
def alice_chat(phone, alice, go_online):
    """Alice online alone; the consumer texts Hello, picks 1 (Billing) and the chat is hers."""
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    chat = phone.chat()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == alice
    phone.new_texts()
    return chat


@pytest.fixture
def outbound_number(support):
    number = make_sending_number(OUTBOUND, direction=NumberDirection.OUTBOUND_ONLY, label="Outbound")
    link_number(support.billing, number, role=NumberRole.OUTBOUND)
    link_number(support.tech, number, role=NumberRole.OUTBOUND)
    return number


@pytest.fixture
def opt_in_shortcut(db):
    return ChatShortcut.objects.create(keyword="optin", text=OPT_IN_TEXT, is_opt_in=True, category="Outbound")


@pytest.fixture
def manual_billing(support):
    support.billing.answer_type = AnswerType.MANUAL
    support.billing.save(update_fields=["answer_type"])
    return support.billing


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body["error"]


# --- state ------------------------------------------------------------------------------------------


def test_state_lists_held_chats_with_unread_counts_and_masked_numbers(phone, alice_chat, alice, adapter, support):
    browser = adapter(alice)
    state = browser.state()
    assert state["agent"]["id"] == alice.pk and state["agent"]["status"] == "available"
    [chat] = state["chats"]
    assert chat["id"] == alice_chat.pk
    assert chat["consumer_number"] == MASKED
    assert chat["portal_number"] == PORTAL
    assert chat["queue_name"] == "Billing"
    assert chat["status"] == "assigned" and chat["agent_id"] == alice.pk
    assert chat["unread"] == 2  # "Hello" and "1"
    assert state["offers"] == []
    assert {q["name"] for q in state["queues"]} == {"Support › Billing", "Support › Tech"}
    assert "you" in state["stats"] and "team" in state["stats"]
    assert CONSUMER not in browser.get("state").content.decode()

    phone.text("Are you there?")
    assert browser.state()["chats"][0]["unread"] == 3

    response = browser.post(f"chats/{alice_chat.pk}/read")
    assert response.status_code == 200 and response.json() == {"marked": 3}
    assert browser.state()["chats"][0]["unread"] == 0
    assert not Message.objects.filter(chat=alice_chat, author=Author.CONSUMER, read_at__isnull=True).exists()


def test_an_agent_with_the_permission_sees_the_full_number(alice_chat, alice, adapter):
    alice.user.user_permissions.add(Permission.objects.get(codename="view_full_numbers"))
    assert adapter(alice).state()["chats"][0]["consumer_number"] == CONSUMER


def test_with_masking_off_every_agent_sees_the_full_number(alice_chat, alice, adapter):
    update_chat_settings(mask_consumer_numbers=False)
    assert adapter(alice).state()["chats"][0]["consumer_number"] == CONSUMER


def test_the_transcript_in_order_with_authors(alice_chat, alice, adapter, phone):
    browser = adapter(alice)
    assert browser.send(alice_chat, "Hi, Alice here.").status_code == 201
    phone.text("Thanks")
    response = browser.messages(alice_chat)
    assert response.status_code == 200
    entries = [(m["author"], m["body"]) for m in response.json()["messages"]]
    assert [body for author, body in entries if author == "consumer"] == ["Hello", "1", "Thanks"]
    assert entries[0] == ("consumer", "Hello")
    assert entries[-2:] == [("agent", "Hi, Alice here."), ("consumer", "Thanks")]
    assert ("system", "Alice from Billing has joined the chat.") in entries


# --- CSRF ---------------------------------------------------------------------------------------------


def test_actions_need_the_csrf_token_of_the_page(alice, adapter, go_online):
    go_online(alice)
    browser = adapter(alice, csrf_checks=True)
    refused = browser.post("status", {"status": "away"}, csrf=False)
    assert "CSRF" in error_of(refused, 403)
    alice.refresh_from_db()
    assert alice.status == AgentStatus.AVAILABLE

    browser.open_page()
    assert browser.csrf_token
    response = browser.post("status", {"status": "away"})
    assert response.status_code == 200, response.content
    alice.refresh_from_db()
    assert alice.status == AgentStatus.AWAY


# --- status -------------------------------------------------------------------------------------------


def test_status_switch_and_capacity_appearing_assigns_a_waiting_chat(phone, alice, adapter, go_online):
    go_online(alice)
    browser = adapter(alice)
    response = browser.post("status", {"status": "away"})
    assert response.status_code == 200 and response.json()["status"] == "away"

    phone.text("Hello")
    phone.text("1")
    assert phone.chat().status == ChatStatus.QUEUED  # nobody available

    response = browser.post("status", {"status": "available"})
    assert response.status_code == 200 and response.json()["status"] == "available"
    chat = phone.chat()
    assert chat.status == ChatStatus.ASSIGNED and chat.agent == alice
    assert [c["id"] for c in browser.state()["chats"]] == [chat.pk]


def test_an_unknown_status_is_refused(alice, adapter):
    assert "status" in error_of(adapter(alice).post("status", {"status": "busy"}), 400)
    alice.refresh_from_db()
    assert alice.status == AgentStatus.OFFLINE


# --- offers (manual answer) -------------------------------------------------------------------------


def test_the_first_agent_to_accept_an_offer_wins(phone, manual_billing, alice, bob, adapter, go_online):
    go_online(alice)
    go_online(bob)
    phone.text("Hello")
    phone.text("1")
    chat = phone.chat()
    assert chat.status == ChatStatus.QUEUED
    alice_browser, bob_browser = adapter(alice), adapter(bob)
    offers = alice_browser.state()["offers"]
    assert [o["id"] for o in offers] == [chat.pk]
    assert offers[0]["consumer_number"] == MASKED
    # An open offer lets the agent read the conversation before accepting.
    assert alice_browser.messages(chat).status_code == 200

    response = alice_browser.post(f"offers/{chat.pk}/accept")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "assigned" and response.json()["agent_id"] == alice.pk
    assert response.json()["start_type"] == StartType.MANUAL

    taken = bob_browser.post(f"offers/{chat.pk}/accept")
    assert error_of(taken, 409) == "Another agent already accepted this chat."
    assert taken.json()["code"] == "taken"
    chat.refresh_from_db()
    assert chat.agent == alice
    assert Offer.objects.get(chat=chat, agent=bob).status == Offer.Status.WITHDRAWN
    assert bob_browser.state()["offers"] == []
    # The withdrawn offer gives Bob no way into Alice's chat.
    assert bob_browser.messages(chat).status_code == 404
    assert bob_browser.get(f"chats/{chat.pk}/contact").status_code == 404


def test_accepting_over_capacity_is_refused(make_phone, manual_billing, support, alice, adapter, go_online):
    alice.max_concurrent_chats = 1
    alice.save(update_fields=["max_concurrent_chats"])
    go_online(alice)
    billing_phone, tech_phone = make_phone(CONSUMER), make_phone(OTHER_CONSUMER)
    billing_phone.text("Hello")
    billing_phone.text("1")  # Billing: manual answer, offered to Alice while she has room
    offered = billing_phone.chat()
    assert Offer.objects.filter(chat=offered, agent=alice, status=Offer.Status.OFFERED).exists()
    tech_phone.text("Hello")
    tech_phone.text("2")  # Tech: auto answer, Alice's one chat
    assert tech_phone.chat().agent == alice

    refused = adapter(alice).post(f"offers/{offered.pk}/accept")
    assert error_of(refused, 409) == "You already hold 1 chat, your maximum."
    offered.refresh_from_db()
    assert offered.status == ChatStatus.QUEUED and offered.agent is None


def test_accepting_a_chat_never_offered_is_404(phone, manual_billing, alice, bob, adapter, go_online):
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    chat = phone.chat()
    assert error_of(adapter(bob).post(f"offers/{chat.pk}/accept"), 404)


# --- messages -----------------------------------------------------------------------------------------


def test_send_a_message_and_a_shortcut(phone, alice_chat, alice, adapter, opt_in_shortcut):
    browser = adapter(alice)
    response = browser.send(alice_chat, "How can I help?")
    assert response.status_code == 201, response.content
    message = response.json()
    assert message["author"] == "agent" and message["agent_id"] == alice.pk and message["agent_name"] == "Alice"
    assert message["body"] == "How can I help?"
    assert message["status"] in {"queued", "sending", "sent", "delivered"}
    assert phone.new_texts() == ["How can I help?"]

    response = browser.post(f"chats/{alice_chat.pk}/messages", {"shortcut": "optin"})
    assert response.status_code == 201 and response.json()["body"] == OPT_IN_TEXT
    # The same text again inside the duplicate window is refused (SPEC S11), with the reason.
    duplicate = browser.post(f"chats/{alice_chat.pk}/messages", {"shortcut": "/optin"})
    assert "duplicate" in error_of(duplicate, 400), duplicate.json()
    assert phone.new_texts() == [OPT_IN_TEXT]
    alice_chat.refresh_from_db()
    assert alice_chat.last_agent_message_at is not None


def test_an_empty_message_is_refused(phone, alice_chat, alice, adapter):
    browser = adapter(alice)
    for body in ("", "   \n"):
        assert error_of(browser.post(f"chats/{alice_chat.pk}/messages", {"body": body}), 400) == "Write a message first."
    assert error_of(browser.post(f"chats/{alice_chat.pk}/messages", {}), 400) == "Write a message first."
    assert "/nope" in error_of(browser.post(f"chats/{alice_chat.pk}/messages", {"shortcut": "nope"}), 400)
    assert "1600" in error_of(browser.post(f"chats/{alice_chat.pk}/messages", {"body": "x" * 1601}), 400)
    assert phone.new_texts() == []
    assert not Message.objects.filter(chat=alice_chat, author=Author.AGENT).exists()


# --- transfer ---------------------------------------------------------------------------------------


def test_transfer_to_an_available_agent(alice_chat, alice, bob, adapter, go_online):
    go_online(bob)
    alice_browser, bob_browser = adapter(alice), adapter(bob)
    targets = alice_browser.get("transfer-targets").json()
    assert [a["id"] for a in targets["agents"]] == [bob.pk]
    assert {q["name"] for q in targets["queues"]} == {"Support › Billing", "Support › Tech"}

    response = alice_browser.post(f"chats/{alice_chat.pk}/transfer", {"agent_id": bob.pk})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ended"
    alice_chat.refresh_from_db()
    assert alice_chat.agent == bob and alice_chat.status == ChatStatus.ASSIGNED
    assert alice_browser.state()["chats"] == []
    assert [c["id"] for c in bob_browser.state()["chats"]] == [alice_chat.pk]
    # The chat is Bob's now: to Alice it no longer exists.
    assert alice_browser.messages(alice_chat).status_code == 404
    assert bob_browser.send(alice_chat, "Bob here.").status_code == 201


def test_a_failed_transfer_leaves_the_chat_with_the_agent(alice_chat, alice, bob, adapter):
    browser = adapter(alice)  # Bob is offline
    response = browser.post(f"chats/{alice_chat.pk}/transfer", {"agent_id": bob.pk})
    assert error_of(response, 409) == "Transfer failed: Bob is not available."
    alice_chat.refresh_from_db()
    assert alice_chat.agent == alice and alice_chat.status == ChatStatus.ASSIGNED
    assert Transfer.objects.get(chat=alice_chat).status == Transfer.Status.FAILED


def test_transfer_to_a_queue(alice_chat, alice, bob, support, adapter, go_online):
    support.tech.agents.remove(alice)
    go_online(bob)
    response = adapter(alice).post(f"chats/{alice_chat.pk}/transfer", {"queue_id": support.tech.pk})
    assert response.status_code == 200, response.content
    alice_chat.refresh_from_db()
    assert alice_chat.queue == support.tech
    assert alice_chat.agent == bob and alice_chat.status == ChatStatus.ASSIGNED  # Tech's agent took it


def test_a_transfer_names_exactly_one_target(alice_chat, alice, bob, support, adapter):
    browser = adapter(alice)
    path = f"chats/{alice_chat.pk}/transfer"
    assert "either an agent or a queue" in error_of(browser.post(path, {}), 400)
    assert "either an agent or a queue" in error_of(browser.post(path, {"agent_id": bob.pk, "queue_id": support.tech.pk}), 400)
    assert error_of(browser.post(path, {"agent_id": 10**9}), 400) == "That agent does not exist."
    assert error_of(browser.post(path, {"queue_id": 10**9}), 400) == "That queue does not exist."
    assert "menu" in error_of(browser.post(path, {"queue_id": support.menu.pk}), 409)
    alice_chat.refresh_from_db()
    assert alice_chat.agent == alice


# --- end ----------------------------------------------------------------------------------------------


def test_end_a_chat_then_it_refuses_everything(phone, alice_chat, alice, adapter):
    browser = adapter(alice)
    response = browser.post(f"chats/{alice_chat.pk}/end")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "finished"
    assert response.json()["finish_reason"] == FinishReason.AGENT_ENDED
    assert phone.new_texts() == [CHAT_ENDED]
    assert browser.state()["chats"] == []

    assert error_of(browser.post(f"chats/{alice_chat.pk}/end"), 409) == "This chat has ended."
    assert error_of(browser.send(alice_chat, "Still there?"), 409) == "This chat has ended."
    assert error_of(browser.post(f"chats/{alice_chat.pk}/transfer", {"queue_id": alice_chat.queue_id}), 409)
    assert phone.new_texts() == []
    # Its transcript stays readable to the agent who held it.
    assert browser.messages(alice_chat).status_code == 200


# --- outbound (SPEC S9) ---------------------------------------------------------------------------------


def test_start_an_outbound_chat(alice, adapter, go_online, outbound_number, make_phone, opt_in_shortcut):
    go_online(alice)
    browser = adapter(alice)
    state = browser.state()
    assert [n["number"] for n in state["outbound_numbers"]] == [OUTBOUND]
    assert [s["keyword"] for s in state["shortcuts"] if s["is_opt_in"]] == ["optin"]

    response = browser.post(
        "outbound", {"consumer_number": NEW_CONSUMER, "portal_number_id": outbound_number.pk, "body": OPT_IN_TEXT}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "assigned" and body["agent_id"] == alice.pk
    assert body["start_type"] == StartType.OUTBOUND and body["chat_type"] == ChatType.OUTBOUND_SMS
    assert body["consumer_number"] == "+1••••••0000" and body["portal_number"] == OUTBOUND
    assert make_phone(NEW_CONSUMER, portal=OUTBOUND).new_texts() == [OPT_IN_TEXT]
    chat = Chat.objects.get(pk=body["id"])
    assert chat.crm_record is not None
    assert [c["id"] for c in browser.state()["chats"]] == [chat.pk]


def test_outbound_refusals(alice, adapter, go_online, outbound_number, support):
    go_online(alice)
    browser = adapter(alice)

    def start(number=NEW_CONSUMER, portal_number_id=outbound_number.pk, body="Hi"):
        return browser.post("outbound", {"consumer_number": number, "portal_number_id": portal_number_id, "body": body})

    assert "E.164" in error_of(start("5551234"), 400)
    assert error_of(start(portal_number_id=10**9), 400) == "Pick one of your queues' outbound numbers."
    assert "not an outbound number of your queues" in error_of(start(portal_number_id=support.number.pk), 400)

    add_do_not_contact(consumer_number=NEW_CONSUMER, portal_number=OUTBOUND, source="stop")
    assert "opted out" in error_of(start(), 400)
    assert start("+15557770001").status_code == 201
    assert "already an active chat" in error_of(start("+15557770001"), 409)

    assert error_of(start("+15557770002", body="  "), 400) == "Write the first message: it is what the consumer sees."
    update_chat_settings(outbound_sms_enabled=False)
    assert error_of(start("+15557770002"), 400) == "Outbound SMS is turned off."
    assert Chat.objects.filter(chat_type=ChatType.OUTBOUND_SMS).count() == 1


def test_starting_an_outbound_chat_at_capacity_is_refused(alice_chat, alice, adapter, outbound_number):
    alice.max_concurrent_chats = 1
    alice.save(update_fields=["max_concurrent_chats"])
    response = adapter(alice).post(
        "outbound", {"consumer_number": NEW_CONSUMER, "portal_number_id": outbound_number.pk, "body": "Hello"}
    )
    assert error_of(response, 409) == "You already hold 1 chat, your maximum."


# --- CRM contact (SPEC S12) -------------------------------------------------------------------------------


def test_pick_one_of_several_matching_contacts(phone, alice, go_online, adapter):
    first = make_crm_contact(CONSUMER, "Dana Scully", email="dana@example.com")
    second = make_crm_contact(CONSUMER, "Fox Mulder")
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    chat = phone.chat()
    assert chat.crm_needs_choice is True
    browser = adapter(alice)
    assert browser.state()["chats"][0]["crm_needs_choice"] is True

    contact = browser.get(f"chats/{chat.pk}/contact").json()
    assert contact["needs_choice"] is True and contact["contact"] is None
    assert [(m["id"], m["name"]) for m in contact["matches"]] == [(first.pk, "Dana Scully"), (second.pk, "Fox Mulder")]

    response = browser.post(f"chats/{chat.pk}/contact", {"contact_id": second.pk})
    assert response.status_code == 200, response.content
    assert response.json()["needs_choice"] is False
    assert response.json()["contact"]["id"] == second.pk
    chat.refresh_from_db()
    assert chat.crm_needs_choice is False and chat.crm_record.contact == second


def test_create_a_new_contact_instead(phone, alice, go_online, adapter):
    make_crm_contact(CONSUMER, "Dana Scully")
    make_crm_contact(CONSUMER, "Fox Mulder")
    stranger = make_crm_contact("+15559990000", "Someone else")
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    chat = phone.chat()
    browser = adapter(alice)
    refused = browser.post(f"chats/{chat.pk}/contact", {"contact_id": stranger.pk})
    assert error_of(refused, 400) == "That contact does not have this consumer's number."

    nameless = browser.post(f"chats/{chat.pk}/contact", {"new_name": "   "})
    assert error_of(nameless, 400) == "Enter the new contact's name."
    assert CrmContact.objects.filter(phone_number=CONSUMER).count() == 2

    response = browser.post(f"chats/{chat.pk}/contact", {"new_name": "Walter Skinner"})
    assert response.status_code == 200, response.content
    created = CrmContact.objects.get(name="Walter Skinner")
    assert created.phone_number == CONSUMER
    assert response.json()["contact"]["id"] == created.pk
    assert CrmContact.objects.filter(phone_number=CONSUMER).count() == 3


# --- stats (SPEC M5) ---------------------------------------------------------------------------------------


def test_your_stats_and_the_team_average(make_phone, alice, bob, go_online, adapter):
    make_team("Tier 1", agents=[alice, bob])
    start = dt.datetime(2030, 3, 4, 10, 0, tzinfo=dt.timezone.utc)
    with time_machine.travel(start, tick=False) as clock:
        go_online(alice)
        go_online(bob)
        alice_browser, bob_browser = adapter(alice), adapter(bob)
        first = make_phone(CONSUMER)
        first.text("Hello")
        first.text("1")
        assert first.chat().agent == alice  # both idle: the first agent by id
        clock.shift(dt.timedelta(minutes=2))
        assert alice_browser.post(f"chats/{first.chat().pk}/end").status_code == 200

        clock.shift(dt.timedelta(minutes=3))
        second = make_phone(OTHER_CONSUMER)
        second.text("Hello")
        second.text("2")
        assert second.chat().agent == bob  # longest idle now
        clock.shift(dt.timedelta(minutes=4))
        assert bob_browser.post(f"chats/{second.chat().pk}/end").status_code == 200

        alice_stats = alice_browser.get("stats").json()
        bob_stats = bob_browser.get("stats").json()
    assert alice_stats == {
        "you": {"answered": 1, "average_duration_seconds": 120},
        "team": {"answered": 1.0, "average_duration_seconds": 180},
    }
    assert bob_stats == {
        "you": {"answered": 1, "average_duration_seconds": 240},
        "team": {"answered": 1.0, "average_duration_seconds": 180},
    }


# --- who may do what -----------------------------------------------------------------------------------------


def test_another_agents_chat_is_404_on_every_action(alice_chat, bob, adapter, go_online, support):
    go_online(bob)
    browser = adapter(bob)
    chat_id = alice_chat.pk
    calls = [
        ("get", f"chats/{chat_id}/messages", None),
        ("post", f"chats/{chat_id}/messages", {"body": "Hi"}),
        ("post", f"chats/{chat_id}/transfer", {"queue_id": support.tech.pk}),
        ("post", f"chats/{chat_id}/end", None),
        ("post", f"chats/{chat_id}/read", None),
        ("get", f"chats/{chat_id}/contact", None),
        ("post", f"chats/{chat_id}/contact", {"new_name": "X"}),
        ("post", f"offers/{chat_id}/accept", None),
    ]
    unknown = Chat.objects.order_by("-pk").first().pk + 1000
    for method, path, data in calls:
        response = browser.get(path) if method == "get" else browser.post(path, data)
        assert error_of(response, 404) == "No such chat.", path
        # An id that does not exist answers the same: ids reveal nothing.
        missing = path.replace(str(chat_id), str(unknown))
        response = browser.get(missing) if method == "get" else browser.post(missing, data)
        assert error_of(response, 404) == "No such chat.", missing
    alice_chat.refresh_from_db()
    assert alice_chat.status == ChatStatus.ASSIGNED and alice_chat.agent.user.username == "alice"
    assert not Message.objects.filter(chat=alice_chat, body="Hi").exists()


def test_a_user_who_is_not_an_agent_is_refused(adapter, db):
    carol = get_user_model().objects.create_user("carol", "carol@example.com", "demo")
    browser = adapter(carol)
    assert error_of(browser.get("state"), 403) == "Only agents can use the adapter."
    assert error_of(browser.post("status", {"status": "available"}), 403) == "Only agents can use the adapter."


def test_anonymous_is_refused(adapter, alice_chat):
    browser = adapter(None)
    for response in (browser.get("state"), browser.post("status", {"status": "available"}), browser.messages(alice_chat)):
        assert response.status_code in {401, 403}
        assert error_of(response, response.status_code)
    assert Message.objects.filter(chat=alice_chat, author=Author.AGENT).count() == 0


# --- media ------------------------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def _stored_media(chat, content: bytes, content_type: str) -> Media:
    message = Message.objects.create(chat=chat, author=Author.CONSUMER, body="")
    media = Media(message=message, content_type=content_type, size=len(content))
    media.file.save("picture", ContentFile(content), save=True)
    return media


def test_media_is_served_to_its_agent_with_its_type_and_never_as_a_page(alice_chat, alice, bob, adapter, media_root):
    media = _stored_media(alice_chat, PNG, "image/png")
    response = adapter(alice).client.get(f"/agent/media/{media.pk}/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    message = adapter(alice).messages(alice_chat).json()["messages"][-1]
    assert message["media"][0]["url"] == f"/agent/media/{media.pk}/"

    assert adapter(bob).client.get(f"/agent/media/{media.pk}/").status_code == 404
    assert adapter(None).client.get(f"/agent/media/{media.pk}/").status_code in {302, 403, 404}


def test_html_sent_as_media_is_sandboxed(alice_chat, alice, adapter, media_root):
    media = _stored_media(alice_chat, b"<script>alert(1)</script>", "text/html")
    response = adapter(alice).client.get(f"/agent/media/{media.pk}/")
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    csp = response["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp


def test_the_adapter_page_allows_only_its_own_scripts_and_connections(adapter, alice):
    """A strict Content-Security-Policy: an injected inline script or a foreign host never runs
    or is reached (the browser tests fail on anything the policy refuses)."""
    response = adapter(alice).open_page()

    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'"
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert policy["connect-src"] == "'self' ws://testserver"
    assert policy["frame-ancestors"] == "'none'"


def test_the_agent_sets_where_the_contact_is_for_quiet_hours(phone, alice, go_online, adapter):
    go_online(alice)
    phone.text("Hello")
    phone.text("1")
    chat = phone.chat()
    browser = adapter(alice)

    response = browser.post(f"chats/{chat.pk}/contact", {"time_zone": "America/Los_Angeles", "state": "CA"})

    assert response.status_code == 200, response.content
    assert (response.json()["contact"]["time_zone"], response.json()["contact"]["state"]) == ("America/Los_Angeles", "CA")
    contact = CrmContact.objects.get(phone_number=CONSUMER)
    assert (contact.time_zone, contact.state) == ("America/Los_Angeles", "CA")
    assert error_of(browser.post(f"chats/{chat.pk}/contact", {"time_zone": "Mars/Base"}), 400) == "Pick a time zone from the list."
    assert error_of(browser.post(f"chats/{chat.pk}/contact", {"state": "ZZ"}), 400) == "Pick a US state from the list."
    assert browser.post(f"chats/{chat.pk}/contact", {"time_zone": "", "state": ""}).json()["contact"]["time_zone"] == ""
