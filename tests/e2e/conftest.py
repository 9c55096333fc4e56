"""Browser tests (marker `e2e`): Playwright drives Debian's Chromium against a real ASGI server.

pytest-django's `live_server` is WSGI and cannot serve the agent websocket, so a daphne server
runs in a background thread of the test process (`asgi_server`). Sharing the process means it
shares the test database and, without REDIS_URL, the in-memory channel layer. Tests use
`transactional_db`: what a test writes is committed for real, so the server sees it and the work
queued after commit (the django-q2 send task, run inline by the test settings) happens.

A simulated consumer texts through `chats.intake.receive_sms` (`Consumer.text`). The call is run on
the server's event loop, in its executor thread, exactly as a webhook request would be: the
websocket pushes it causes then go through that loop, which the in-memory channel layer needs
(its queues are not thread-safe). With REDIS_URL set the same path works through Redis.

On SQLite the test database is put in a file for the whole session when browser tests are
collected: Django's default in-memory test database cannot be shared by the server's threads
(shared-cache table locks fail instead of waiting)."""
from __future__ import annotations

import asyncio
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PORTAL_NUMBER = "+15550100001"
EXPECT_TIMEOUT_MS = 10_000


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """A file for the SQLite test database when any browser test is going to run (after -m
    deselection, hence trylast)."""
    if not any(item.get_closest_marker("e2e") for item in items):
        return
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return
    test = database.setdefault("TEST", {})
    if not test.get("NAME"):
        # One file per pytest process, so suites running side by side never share it.
        test["NAME"] = str(Path(tempfile.gettempdir()) / f"tern-e2e-{os.getpid()}.sqlite3")


# --- the server --------------------------------------------------------------------------------


class LiveAsgi:
    """A daphne server serving portal.asgi.application on 127.0.0.1, in this process."""

    def __init__(self):
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self):
        from daphne.server import Server
        from twisted.internet import reactor

        from portal.asgi import application

        def ready():
            self.loop = reactor._asyncioEventloop

        self.server = Server(
            application,
            endpoints=["tcp:port=0:interface=127.0.0.1"],
            signal_handlers=False,
            verbosity=0,
            ready_callable=ready,
        )

        def run():
            try:
                reactor.callWhenRunning(self._ready.set)
                self.server.run()
            except BaseException as exc:  # noqa: BLE001 — reported by start()
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=run, name="daphne-e2e", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=20) or self._error or not self.server.listening_addresses:
            raise RuntimeError(f"daphne did not start: {self._error!r}")
        host, port = self.server.listening_addresses[0]
        self.url = f"http://{host}:{port}"

    def stop(self):
        from twisted.internet import reactor

        if self.loop is not None:
            try:
                self.call(_close_connections)
            except Exception:  # noqa: BLE001 — the server is going away anyway
                pass
        reactor.callFromThread(reactor.stop)
        if self._thread is not None:
            self._thread.join(timeout=15)

    def settle(self, timeout: float = 10) -> None:
        """Before the test's database is flushed: wait for the application instances still
        running (a websocket's disconnect writing the agent's presence after the browser closed),
        then close this server's database connections. A flush racing such a write deadlocked on
        PostgreSQL (TRUNCATE against the row the disconnect was updating) and left the test's
        rows behind for the next test."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._busy():
            time.sleep(0.05)
        self.call(_close_connections)

    def _busy(self) -> bool:
        return any(
            (instance := details.get("application_instance")) is not None and not instance.done()
            for details in list(self.server.connections.values())
        )

    def call(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) on the server's loop, in its database thread, as a request
        would; returns its result (or raises its exception)."""
        from channels.db import database_sync_to_async

        async def run():
            return await database_sync_to_async(fn)(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=60)


def _close_connections():
    import gc

    from django.db import connections

    connections.close_all()
    gc.collect()  # connections of finished request threads, not yet freed


@pytest.fixture(scope="session")
def asgi_server(django_db_setup):
    """Started after the test database exists and stopped before it is dropped."""
    from django.db import connections

    with pytest.MonkeyPatch.context() as patch:
        # Every event here is published in this process, straight to the channel layer, so the
        # RealtimeOutbox relay (for task and sweeper processes, portal/realtime.py) has nothing
        # to carry; its 0.3 s database poll would only fail between tests, when pytest-django
        # blocks database access, and fill the logs.
        patch.setattr("chats.consumers.ensure_relay", lambda: None)
        patch.setattr("portal.monitoring.consumers.ensure_relay", lambda: None)  # the supervisors' socket
        # A persistent connection would stay open in the threads the server keeps for later
        # requests (portal.http_threads) and keep PostgreSQL from dropping the test database at
        # the end. Close them at the end of each request.
        for alias in connections:
            patch.setitem(connections[alias].settings_dict, "CONN_MAX_AGE", 0)
        server = LiveAsgi()
        server.start()
        yield server
        server.stop()


@pytest.fixture
def live(asgi_server, transactional_db, settings, tmp_path):
    """The running server with the demo data (SPEC "Demo data") in a fresh database."""
    from chats.management.commands.seed_demo import seed_demo

    settings.MEDIA_ROOT = str(tmp_path / "media")
    seed_demo()
    yield asgi_server
    asgi_server.settle()


# --- the consumer ------------------------------------------------------------------------------


class Consumer:
    """A consumer's phone: texts reach the portal through receive_sms, as Twilio's webhook does."""

    def __init__(self, server: LiveAsgi, number: str, portal_number: str = PORTAL_NUMBER):
        self.server = server
        self.number = number
        self.portal_number = portal_number

    def text(self, body: str, media: list[dict] | None = None) -> str:
        from chats.intake import receive_sms

        _, outcome = self.server.call(
            receive_sms,
            message_sid=f"SMe2e{secrets.token_hex(13)}",
            from_number=self.number,
            to_number=self.portal_number,
            body=body,
            media=media or [],
        )
        return outcome


@pytest.fixture
def consumer(live):
    """consumer("+15557654321") → a Consumer texting the demo's incoming number."""
    return lambda number: Consumer(live, number)


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Chromium, for one test module. While Playwright's sync API is active it marks an event
    loop as running in this thread between its calls, and Django then refuses ORM calls from the
    test (and pytest-django's flush) as "async-unsafe": they are not, the loop is idle, so the
    check is switched off for exactly that time."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Pages:
    """Browser contexts opened by one test, closed (and checked for script errors) after it."""

    def __init__(self, browser, server: LiveAsgi):
        self.browser = browser
        self.server = server
        self.contexts = []
        self.errors: list[str] = []

    def new(self, viewport=(1280, 800)):
        context = self.browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(EXPECT_TIMEOUT_MS)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        # What the page's Content-Security-Policy refused counts as an error too.
        page.on(
            "console",
            lambda msg: self.errors.append(f"{page.url}: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text else None,
        )
        return page

    def login(self, page, username: str, password: str = "demo", next_path: str = "/agent/"):
        from playwright.sync_api import expect

        page.goto(self.server.url + next_path)
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.get_by_role("button", name="Sign in").click()
        return page

    def agent(self, username: str, viewport=(1280, 800)):
        """A signed-in agent on /agent/ with the websocket live. `page.ws_frames` collects what
        the server pushed to it."""
        from playwright.sync_api import expect

        page = self.new(viewport)
        page.ws_frames = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: page.ws_frames.append(str(payload))))
        self.login(page, username)
        expect(page).to_have_url(self.server.url + "/agent/")
        expect(page.locator("#connection")).to_have_text("Live")
        return page

    def close(self):
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser, live):
    pages = Pages(browser, live)
    yield pages
    pages.close()
    assert not pages.errors, f"script errors in the page: {pages.errors}"
