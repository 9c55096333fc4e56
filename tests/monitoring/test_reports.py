"""The five reports of SPEC M4 (issue 13, items 4 and 6): exact figures from hand-made chats, the
page's table, the CSV and the API holding the same rows, bad filters refused clearly, a chart's
bar opening the chats behind it, and query counts that do not grow with agents and queues."""
import csv
import datetime as dt
import io
import re

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.test import Client

from chats.models import Call, Chat, ChatStatus, ChatType, Message, Participant, ParticipantType, StartType, Transfer
from portal.models import AgentStatusChange
from portal.reports.definitions import REPORTS
from tests.api_client import make_api
from tests.factories import make_agent, make_number, make_queue, make_team

pytestmark = pytest.mark.django_db

# Monday 2030-03-04 and Tuesday 2030-03-05 (the test settings' portal time zone is UTC).
MON = dt.datetime(2030, 3, 4, tzinfo=dt.timezone.utc)
RANGE = {"start": "2030-03-04", "end": "2030-03-05"}


def at(hours: float, day: int = 0) -> dt.datetime:
    return MON + dt.timedelta(days=day, hours=hours)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(dt.datetime(2030, 3, 6, 12, tzinfo=dt.timezone.utc), tick=False):
        yield



@pytest.fixture
def api(client, django_capture_on_commit_callbacks):
    return make_api(Client(), django_capture_on_commit_callbacks, name="BI tool")


_n = iter(range(1000, 9999))


def make_chat(queue, number, *, created, queued=None, assigned=None, ended=None, agent=None, **kw) -> Chat:
    status = ChatStatus.FINISHED if ended is not None else ChatStatus.ASSIGNED if assigned is not None else ChatStatus.QUEUED
    chat = Chat.objects.create(
        consumer_number=f"+1555700{next(_n)}", portal_number=number, queue=queue, agent=agent, status=status,
        queued_at=queued, assigned_at=assigned, ends_at=ended, **kw,
    )
    Chat.objects.filter(pk=chat.pk).update(created_at=created)
    if agent is not None and assigned is not None:
        stint = Participant.objects.create(chat=chat, type=ParticipantType.AGENT, agent=agent)
        Participant.objects.filter(pk=stint.pk).update(connected_at=assigned, ended_at=ended)
    return chat


def say(chat, author, when, body="…", agent=None):
    message = Message.objects.create(chat=chat, author=author, body=body, agent=agent)
    Message.objects.filter(pk=message.pk).update(created_at=when)


@pytest.fixture
def day_of_work():
    """Billing and Tech; Alice (Tier 1) answers two chats on Monday, Bob one on Tuesday; one chat
    abandoned, one short abandon; a call whose caller allowed the wait-time SMS."""
    billing, tech, number = make_queue("Billing"), make_queue("Tech"), make_number()
    alice, bob = make_agent("alice"), make_agent("bob")
    tier1 = make_team("Tier 1", agents=[alice])
    AgentStatusChange.objects.create(agent=alice, status="available", at=at(9))
    AgentStatusChange.objects.create(agent=alice, status="offline", at=at(13))

    first = make_chat(billing, number, created=at(9.9), queued=at(10), assigned=at(10, 0) + dt.timedelta(seconds=30), ended=at(11), agent=alice, start_type=StartType.AUTO)
    say(first, "consumer", at(9.9))
    say(first, "agent", at(10) + dt.timedelta(seconds=90), agent=alice)  # first response 60 s
    second = make_chat(billing, number, created=at(11.9), queued=at(12), assigned=at(12) + dt.timedelta(seconds=120), ended=at(13), agent=alice, start_type=StartType.AUTO)
    Transfer.objects.create(chat=second, from_agent=alice, to_agent=bob)
    Transfer.objects.filter(chat=second).update(began_at=at(12.5))
    make_chat(billing, number, created=at(14), queued=at(14), ended=at(14) + dt.timedelta(seconds=300), finish_reason="expired_unanswered")
    make_chat(tech, number, created=at(9, 1), queued=at(9, 1), ended=at(9, 1) + dt.timedelta(seconds=4), finish_reason="end_user_exit")
    make_chat(tech, number, created=at(10, 1), assigned=at(10, 1), ended=at(10.5, 1), agent=bob,
              start_type=StartType.OUTBOUND, chat_type=ChatType.OUTBOUND_SMS)
    call = Call.objects.create(call_sid="CA1", caller_number="+15557001111", queue=billing, wait_time_sms_status="allowed")
    Call.objects.filter(pk=call.pk).update(created_at=at(15))
    return {"billing": billing, "tech": tech, "alice": alice, "bob": bob, "tier1": tier1}


def api_rows(api, name, params=RANGE):
    response = api.get(f"/apps/api/v1/reports/{name}", params)
    assert response.status_code == 200, response.content
    return response.json()["rows"]


def csv_rows(sam, name, params=RANGE):
    response = sam.get(f"/reports/{name}.csv", params)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="tern-{name}-2030-03-04-to-2030-03-05.csv"'
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def by(rows, key):
    return {row[key]: row for row in rows}


def test_users_and_teams_figures(api, day_of_work):
    rows = by(api_rows(api, "users-teams"), "agent")
    alice, bob = rows["Alice"], rows["Bob"]
    assert (alice["answered"], alice["transferred"], alice["teams"]) == (2, 1, "Tier 1")
    assert alice["average_handle_seconds"] == round(((3600 - 30) + (3600 - 120)) / 2)
    assert alice["average_first_response_seconds"] == 60  # the second chat has no agent message
    # Alice was available 9:00–13:00 and with chats 10:00:30–11:00 and 12:02–13:00.
    assert alice["occupancy"] == round(100 * (3570 + 3480) / (4 * 3600), 1)
    assert (bob["answered"], bob["average_first_response_seconds"]) == (1, None)  # outbound: no first response


def test_queues_figures_count_the_short_abandon_in_no_rate(api, day_of_work):
    rows = by(api_rows(api, "queues"), "queue")
    billing, tech = rows["Billing"], rows["Tech"]
    assert (billing["offered"], billing["assigned"], billing["abandoned"], billing["short_abandoned"]) == (3, 2, 1, 0)
    assert billing["service_level"] == 33.3  # 30 s within 60; 120 s not; one long abandon
    assert billing["abandon_rate"] == 33.3 and billing["longest_wait_seconds"] == 300
    assert (tech["offered"], tech["short_abandoned"], tech["service_level"], tech["abandon_rate"]) == (1, 1, None, None)


def test_queues_figures_give_the_csat_and_the_surveys_response_rate(api, day_of_work):
    # Billing's two answered chats were surveyed: one scored 5, one left unanswered; plus two
    # more surveyed chats scoring 2 and 4. CSAT = 4–5 scores ÷ scores; response = scores ÷ sent.
    Chat.objects.filter(queue=day_of_work["billing"], assigned_at__isnull=False).update(survey_sent_at=at(13))
    Chat.objects.filter(queue=day_of_work["billing"], assigned_at=at(10) + dt.timedelta(seconds=30)).update(rating=5)
    for rating in (2, 4):
        make_chat(day_of_work["billing"], Chat.objects.first().portal_number, created=at(15), queued=at(15),
                  assigned=at(15.1), ended=at(15.5), survey_sent_at=at(15.5), rating=rating)

    billing = by(api_rows(api, "queues"), "queue")["Billing"]

    assert billing["csat"] == round(100 * 2 / 3, 1)
    assert billing["survey_response_rate"] == 75.0
    assert by(api_rows(api, "queues"), "queue")["Tech"]["csat"] is None  # no survey: no figure


def test_calls_and_chats_per_day(api, day_of_work):
    monday, tuesday = api_rows(api, "calls-chats")
    assert monday["day"] == "2030-03-04" and tuesday["day"] == "2030-03-05"
    assert (monday["chats"], monday["type_sms"], monday["start_auto_answer"]) == (3, 3, 2)
    assert (monday["calls"], monday["wait_time_sms_allowed"], monday["wait_time_sms_denied"]) == (1, 1, 0)
    assert (tuesday["chats"], tuesday["type_outbound_sms"], tuesday["start_outbound"]) == (2, 1, 1)


def test_performance_counts_texts_in_and_out(api, day_of_work):
    monday, tuesday = api_rows(api, "performance")
    assert (monday["total_sms"], monday["incoming_sms"]) == (1, 1)  # the agent's reply was never sent: no SMS row
    assert tuesday["total_sms"] == 0


def test_chat_history_is_one_row_per_chat_with_its_type(api, sam, day_of_work):
    rows = api_rows(api, "chat-history")
    assert csv_rows(sam, "chat-history")[0]["Consumer"] == "+1••••••" + rows[0]["consumer_number"][-4:]  # masked (SPEC C1)
    assert len(rows) == 5
    assert [row["type"] for row in rows] == ["SMS", "SMS", "SMS", "SMS", "Outbound SMS"]
    assert rows[0]["created_at"] == "2030-03-04T09:54:00+00:00"
    assert rows[0]["first_response_seconds"] == 60 and rows[0]["wait_seconds"] == 30


@pytest.mark.parametrize("name", list(REPORTS))
def test_the_csv_the_table_and_the_api_hold_the_same_rows(sam, api, day_of_work, name, django_user_model):
    # The API gives systems full numbers; a supervisor with the permission sees them too (SPEC C1).
    sam_user = django_user_model.objects.get(username="sam")
    sam_user.user_permissions.add(Permission.objects.get(codename="view_full_numbers"))
    from_api = api_rows(api, name)
    from_csv = csv_rows(sam, name)
    labels = [column.label for column in REPORTS[name].columns]
    assert list(from_csv[0]) == labels
    assert [[str(v) if v is not None else "" for v in row.values()] for row in from_api] == [list(row.values()) for row in from_csv]
    page = sam.get(f"/reports/{name}/", RANGE).content.decode()
    table = page[page.index('id="report-table"'):page.index("</table>", page.index('id="report-table"'))]
    assert table.count("<tr>") - 1 == len(from_api)  # the header row and one per row


@pytest.mark.parametrize(
    "params, message",
    [
        ({"start": "2030-03-05", "end": "2030-03-01"}, "The range is reversed: start 2030-03-05 is after end 2030-03-01."),
        ({"start": "yesterday"}, "start must be a date written YYYY-MM-DD, not 'yesterday'."),
        ({"start": "2029-01-01", "end": "2030-03-01"}, "The range is 425 days; a report covers at most 366."),
        ({"queue": "99"}, "There is no queue with id 99."),
        ({"start": "9999-12-31", "end": "9999-12-31"}, "end must be between 1970-01-01 and 9998-12-31, not '9999-12-31'."),
        ({"agent": "x"}, "agent must be the id of a agent, not 'x'."),
    ],
)
def test_bad_filters_get_a_clear_message_on_the_page_and_400_from_the_api(sam, api, params, message):
    page = sam.get("/reports/queues/", params)
    assert page.status_code == 400 and message.replace("'", "&#x27;") in page.content.decode()
    response = api.get("/apps/api/v1/reports/queues", params)
    assert response.status_code == 400 and response.json() == {"error": message}
    assert sam.get("/reports/queues.csv", params).status_code == 400


def test_an_unknown_report_is_404_and_agents_may_not_read_reports(sam, api, client):
    assert sam.get("/reports/nothing/").status_code == 404
    assert api.get("/apps/api/v1/reports/nothing").json() == {"error": "No such report."}
    agent_client = Client()
    agent_client.force_login(make_agent("carol").user)
    assert agent_client.get("/reports/queues/").status_code == 403
    assert agent_client.get("/reports/queues.csv").status_code == 403


def test_a_bar_opens_the_chats_behind_it(sam, day_of_work):
    page = sam.get("/reports/users-teams/", RANGE).content.decode()
    alice = day_of_work["alice"]
    link = re.search(r'<a href="([^"]+)" class="bar" data-label="Alice" data-value="2">', page).group(1).replace("&amp;", "&")
    assert link == f"/reports/chat-history/?start=2030-03-04&end=2030-03-05&agent={alice.pk}"
    history = sam.get(link).content.decode()
    assert len(re.findall(r'href="/monitor/chats/\d+/"', history)) == 2  # her two chats (the chat's agent)

    day_bar = re.search(r'<a href="([^"]+)" class="bar" data-label="Mar 5"', sam.get("/reports/calls-chats/", RANGE).content.decode())
    assert day_bar.group(1).replace("&amp;", "&") == "/reports/chat-history/?start=2030-03-05&end=2030-03-05"


def test_the_filters_narrow_every_report(api, day_of_work):
    tier1 = day_of_work["tier1"].pk
    assert [row["agent"] for row in api_rows(api, "users-teams", {**RANGE, "team": tier1})] == ["Alice"]
    assert [row["queue"] for row in api_rows(api, "queues", {**RANGE, "queue": day_of_work["tech"].pk})] == ["Tech"]
    assert len(api_rows(api, "chat-history", {**RANGE, "agent": day_of_work["bob"].pk})) == 1


@pytest.mark.parametrize("name", list(REPORTS))
def test_a_report_s_queries_do_not_grow_with_agents_and_queues(api, day_of_work, name, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count():
        with CaptureQueriesContext(connection) as queries:
            api_rows(api, name)
        return len(queries)

    count()  # the first request reads what later ones find cached (the credential's, the settings')
    before = count()
    number = make_number("+15550000077")
    for n in range(12):
        queue = make_queue(f"Extra {n}")
        agent = make_agent(f"extra{n}")
        queue.agents.add(agent)
        make_chat(queue, number, created=at(10), queued=at(10), assigned=at(10.1), ended=at(10.2), agent=agent)
    assert count() == before
    with django_assert_max_num_queries(16):
        api_rows(api, name)
