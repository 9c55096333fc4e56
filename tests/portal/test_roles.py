"""Who is who (issue 13, item 1): supervisors hold portal.view_monitoring through the Supervisors
group; `/` sends each person to the place for their role; the admin links to those places; an
agent's status edited in the admin is kept in the status history like the adapter's."""
import pytest

from portal.models import AgentStatus
from portal.roles import can_monitor
from tests.factories import admin_page_data, make_agent, make_supervisor

pytestmark = pytest.mark.django_db


@pytest.fixture
def supervisor():
    return make_supervisor("sam")


def test_the_supervisors_group_exists_after_migrate_and_grants_monitoring(supervisor, django_user_model):
    assert can_monitor(supervisor)
    assert not can_monitor(make_agent("alice").user)
    assert can_monitor(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))


@pytest.mark.parametrize(
    "who, home",
    [("agent", "/agent/"), ("supervisor", "/monitor/"), ("admin", "/admin/")],
)
def test_the_root_sends_each_person_to_their_place(client, supervisor, admin_user, who, home):
    user = {"agent": lambda: make_agent("alice").user, "supervisor": lambda: supervisor, "admin": lambda: admin_user}[who]()
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == home


def test_the_root_asks_a_stranger_to_sign_in_and_signing_in_lands_on_the_role_s_place(client, supervisor):
    assert client.get("/")["Location"] == "/accounts/login/?next=/"
    response = client.post("/accounts/login/", {"username": "sam", "password": "demo"})
    assert response["Location"] == "/"
    assert client.get("/")["Location"] == "/monitor/"


def test_the_admin_links_to_the_places_people_work(admin_client):
    page = admin_client.get("/admin/").content.decode()
    for place in ["/agent/", "/monitor/", "/reports/", "/simulator/", "/apps/api/v1/docs/"]:
        assert page.count(f'href="{place}"') == 2, place  # the header's links and the index's box


def test_a_status_edited_in_the_admin_is_stamped_and_kept_in_the_history(admin_client):
    agent = make_agent("alice")
    url = f"/admin/portal/agentprofile/{agent.pk}/change/"
    response = admin_client.post(url, admin_page_data(admin_client, url, status=AgentStatus.AWAY))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.status == AgentStatus.AWAY
    assert list(agent.status_changes.values_list("status", "at")) == [(AgentStatus.AWAY, agent.status_changed_at)]
