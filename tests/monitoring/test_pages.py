"""The monitor's pages (SPEC M1–M3, issue 13 items 1 and 3): supervisors and admins only, each
page rendered with its figures, its live part alone on ?fragment=1, numbers masked."""
import pytest

from chats.models import Message
from tests.factories import make_agent, make_available_agent, make_number, make_queue, make_queued_chats, page_text

pytestmark = pytest.mark.django_db

PAGES = ["/monitor/", "/monitor/queues/", "/monitor/agents/", "/monitor/chats/", "/monitor/messages/", "/monitor/state"]



@pytest.fixture
def waiting():
    billing = make_queue("Billing")
    make_available_agent("alice", queues=[billing])
    return make_queued_chats(billing, make_number(), 2, first_consumer=15551234500)


@pytest.mark.parametrize("url", PAGES)
def test_an_agent_is_refused_every_page_and_a_stranger_is_asked_to_sign_in(client, url):
    assert client.get(url)["Location"].startswith("/accounts/login/")
    client.force_login(make_agent("alice").user)
    response = client.get(url)
    assert response.status_code == 403
    assert "Supervisors only" in page_text(response)


@pytest.mark.parametrize("url", PAGES)
def test_supervisors_and_admins_see_every_page(sam, admin_client, waiting, url):
    for who in (sam, admin_client):
        assert who.get(url).status_code == 200


def test_the_overview_shows_the_queue_the_agent_and_the_waiting_chats_masked(sam, waiting):
    text = page_text(sam.get("/monitor/"))
    assert "Billing" in text and "Alice" in text and "0 / 3" in text
    assert f"#{waiting[0].pk}" in text
    assert "+15551234500" not in text  # masked (SPEC C1)


def test_the_live_part_alone_on_fragment(sam, waiting):
    html = sam.get("/monitor/?fragment=1").content.decode()
    assert 'id="queues-table" data-live' in html and "<header" not in html


def test_a_chat_s_transcript_is_read_only(sam, waiting):
    Message.objects.create(chat=waiting[0], author="consumer", body="Where is my refund?")
    response = sam.get(f"/monitor/chats/{waiting[0].pk}/")
    assert "Where is my refund?" in page_text(response)
    assert b"<textarea" not in response.content and b'name="body"' not in response.content
    assert sam.get("/monitor/chats/999999/").status_code == 404


def test_the_state_answers_json_with_queues_agents_and_ongoing_chats(sam, waiting):
    state = sam.get("/monitor/state").json()
    assert [q["name"] for q in state["queues"]] == ["Billing"] and state["queues"][0]["waiting"] == 2
    assert [a["username"] for a in state["agents"]] == ["alice"]
    assert len(state["ongoing"]["chats"]) == 2


def test_a_search_that_matches_nothing_says_so(sam, waiting):
    assert "No chats here." in page_text(sam.get("/monitor/chats/?list=previous&q=nothing-like-this"))
