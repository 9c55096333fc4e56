"""portal.http_threads: each HTTP request runs its sync code on a thread of its own, and the
thread of a finished request serves a later one instead of a new thread being started."""
import asyncio
import threading

import pytest
from django.db import connection
from django.http import HttpResponse
from django.urls import path

from portal.http_threads import ThreadReusingHandler

both_inside = threading.Barrier(2)


def where(request):
    return HttpResponse(str(threading.get_ident()))


def meet(request):
    """Answers only once two requests are inside it at the same time: on one thread, the second
    could not start before the first ended, and the wait would run out."""
    both_inside.wait(timeout=10)
    return HttpResponse(str(threading.get_ident()))


def query(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse(str(threading.get_ident()))


urlpatterns = [path("where/", where), path("meet/", meet), path("query/", query)]


async def get(app, url: str) -> tuple[int, str]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": url, "raw_path": url.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
    }
    received, sent = [], []

    async def receive():
        if not received:
            received.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never leaves

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body.decode()


@pytest.mark.urls(__name__)
def test_a_finished_requests_thread_serves_the_next_request():
    app = ThreadReusingHandler()

    async def one_after_another():
        return [await get(app, "/where/") for _ in range(5)]

    answers = asyncio.run(one_after_another())
    assert {status for status, _ in answers} == {200}
    assert len({thread for _, thread in answers}) == 1
    assert int(answers[0][1]) != threading.get_ident()  # not the event loop's thread


@pytest.mark.urls(__name__)
def test_requests_in_flight_at_once_each_have_a_thread_of_their_own():
    app = ThreadReusingHandler()

    async def at_once():
        first = await get(app, "/where/")  # leaves one idle thread behind
        return first, await asyncio.gather(get(app, "/meet/"), get(app, "/meet/"))

    (_, kept), together = asyncio.run(at_once())
    assert [status for status, _ in together] == [200, 200]
    threads = {thread for _, thread in together}
    assert len(threads) == 2 and kept in threads  # one of them the kept thread, the other a new one


@pytest.mark.urls(__name__)
def test_no_more_threads_are_kept_idle_than_the_limit():
    app = ThreadReusingHandler()
    app.max_idle_threads = 1
    both_inside.reset()

    async def at_once():
        await asyncio.gather(get(app, "/meet/"), get(app, "/meet/"))
        return len(app._idle)

    assert asyncio.run(at_once()) == 1


def test_only_http_is_served():
    with pytest.raises(ValueError, match="only handle ASGI/HTTP"):
        asyncio.run(ThreadReusingHandler()({"type": "websocket"}, None, None))


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the web process's connection pool is PostgreSQL's")
@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_kept_thread_gives_its_database_connection_back_when_its_request_ends():
    """The web process draws PostgreSQL connections from psycopg's pool (CONN_MAX_AGE 0): a
    thread kept idle with its request's connection still out would drain the pool (10 per
    process) after ten requests. Each request's connection goes back when it ends."""
    app = ThreadReusingHandler()

    async def requests():
        answers = [await get(app, "/query/") for _ in range(3)]
        return answers + list(await asyncio.gather(*(get(app, "/query/") for _ in range(4))))

    answers = asyncio.run(requests())
    assert {status for status, _ in answers} == {200}
    assert app._idle, "no thread was kept"
    for executor in app._idle:
        assert executor.submit(lambda: connection.connection is None).result(timeout=10)
