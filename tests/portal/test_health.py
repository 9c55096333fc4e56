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


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.django_db
def test_with_redis_away_healthz_says_degraded_and_still_answers_200(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "database": "ok", "redis": "unavailable"}


@pytest.mark.django_db
def test_with_redis_up_healthz_says_so(client, settings):
    if not settings.REDIS_URL:
        pytest.skip("runs in the PostgreSQL + Redis phase")
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "redis": "ok"}
