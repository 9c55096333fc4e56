"""GET /healthz (SPEC "Interfaces that stay stable"): 200 when the database answers, else 503."""
import pytest
from django.db import OperationalError, connection


def database_down(execute, sql, params, many, context):
    raise OperationalError("database is unavailable")


@pytest.mark.django_db
def test_healthz_answers_ok_when_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_answers_503_when_the_database_fails(client):
    # Given a database that fails every query
    with connection.execute_wrapper(database_down):
        # When the health check runs
        response = client.get("/healthz")

    # Then it reports the outage
    assert response.status_code == 503
    assert response.json()["status"] != "ok"


@pytest.mark.django_db
def test_healthz_needs_no_login(client):
    response = client.get("/healthz", follow=False)

    assert response.status_code == 200


@pytest.mark.django_db
def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
