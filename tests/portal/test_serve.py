"""`manage.py serve`: the web server, the task cluster and the sweeper together, stopped
together; `--web-workers N` runs N web processes on one port."""
import http.client
import json
from collections import Counter
import urllib.parse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from tests.fakes.twilio_server import FakeTwilio

STARTUP_SECONDS = 90
STOP_SECONDS = 30


def test_several_web_processes_need_a_shared_channel_layer(settings, monkeypatch):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **kw: started.append(a))

    with pytest.raises(CommandError, match="REDIS_URL"):
        call_command("serve", "--web-workers", "2")

    assert started == []


@pytest.mark.parametrize("value", ["0", "-1", "two", "33"])
def test_the_number_of_web_processes_must_be_sensible(value, monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **kw: pytest.fail("nothing may start"))

    with pytest.raises(CommandError, match="web-workers"):
        call_command("serve", "--web-workers", value)


@pytest.mark.parametrize(
    "role, started",
    [("web", ["web"]), ("tasks", ["qcluster"]), ("sweeper", ["sweep"]), ("all", ["web", "qcluster", "sweep"])],
)
def test_a_role_starts_only_its_part(role, started, monkeypatch):
    """`serve --role`: a machine may run only the web, only the task cluster or only the sweeper."""
    from portal.management.commands.serve import Command, roles_of

    commands = []
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kw: commands.append(args) or object())

    Command()._start_children({}, "127.0.0.1", free_port(), 1, roles_of(role))

    def part(command):
        return "web" if "portal.web" in map(str, command) else command[2]  # the daphne server, or manage.py X

    assert sorted(part(command) for command in commands) == sorted(started)


def test_a_role_needs_the_shared_channel_layer_and_broker(settings, monkeypatch):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **kw: pytest.fail("nothing may start"))

    with pytest.raises(CommandError, match="--role tasks splits the portal"):
        call_command("serve", "--role", "tasks")


# --- the real processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes():
    """(pid, state, ppid, session, command line) of every running process, from /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # state, ppid, pgrp, session, …
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        yield int(entry), fields[0], int(fields[1]), int(fields[3]), cmdline


def children_of(pid: int) -> dict[int, str]:
    """pid → command line of the processes whose parent is `pid`."""
    return {child: cmdline for child, _, ppid, _, cmdline in processes() if ppid == pid}


def session_members(sid: int) -> dict[int, str]:
    """pid → command line of every live process in session `sid` (serve runs in one of its own,
    so its children's children — the task cluster's workers — count too)."""
    return {pid: cmdline for pid, state, _, session, cmdline in processes() if session == sid and state != "Z"}


def left_behind(sid: int) -> dict[int, str]:
    """What of session `sid` is still running STOP_SECONDS after serve itself has exited."""
    deadline = time.monotonic() + STOP_SECONDS
    while (members := session_members(sid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return members


def health(port: int, timeout: float = 10) -> int:
    """GET /healthz on a new connection; its status, or 0 when nothing answered in `timeout`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def holds_write_locks(pid: int) -> bool:
    """Whether the process holds an exclusive POSIX lock (SQLite's) on any file: /proc/locks
    names its pid. An open SQLite connection in WAL mode holds a shared one all along."""
    with open("/proc/locks") as locks:  # "1: POSIX  ADVISORY  WRITE <pid> …", "1: -> POSIX …" for a waiter
        for line in locks:
            fields = line.replace("->", "").split()
            if fields and fields[3] == "WRITE" and fields[4] == str(pid):
                return True
    return False


def pause_when_unlocked(pid: int, timeout: float = STARTUP_SECONDS) -> None:
    """SIGSTOP the process at a moment it holds no exclusive file lock. A web process closes its
    SQLite connection after it has answered; the last connection to close checkpoints the WAL
    under SQLite's exclusive lock, and a process paused in that moment keeps the lock: every other
    process's next query then waits for it (busy, then /healthz's 503) until it runs again."""
    deadline = time.monotonic() + timeout
    while True:
        os.kill(pid, signal.SIGSTOP)
        if not holds_write_locks(pid):
            return
        os.kill(pid, signal.SIGCONT)
        assert time.monotonic() < deadline, f"process {pid} kept a file lock for {timeout} s"
        time.sleep(0.01)


def logged(output) -> str:
    """The end of what serve and its children printed so far, read through a handle of its own
    (theirs share the file's offset)."""
    with open(output.name) as log_file:
        return log_file.read()[-6000:]


@pytest.fixture
def serve(tmp_path):
    """Start `manage.py serve` in its own session, on a port of its own and an SQLite file of its
    own; after the test, kill whatever of it is left. Whatever the database under the suite, serve
    runs the same way here, so these tests run in `make test`'s phase only, not again in CI's
    PostgreSQL + Redis one, where `tests/portal/test_topology.py` runs serve's parts on those."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("serve runs on an SQLite file of its own: this test runs in the SQLite phase")
    started = []

    def start(*args, migrated: bool = False, before: str = "", **extra_env):
        """`before`: Python run in the migrated database before serve starts (`manage.py shell -c`)."""
        env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            DJANGO_SETTINGS_MODULE="tests.portal.serve_settings", TERN_VAR_DIR=str(tmp_path), LOG_LEVEL="WARNING",
            **extra_env,
        )
        if migrated or before:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=settings.BASE_DIR, env=env, check=True
            )
        if before:
            subprocess.run([sys.executable, "manage.py", "shell", "-c", before], cwd=settings.BASE_DIR, env=env, check=True)
        port = free_port()
        output = open(tmp_path / "serve.log", "w+")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), *args],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        deadline = time.monotonic() + STARTUP_SECONDS
        while health(port) != 200:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not answer in time"
            time.sleep(0.5)
        return process, port, output

    yield start
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its session: serve and its children
        except ProcessLookupError:
            pass
        process.wait()


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_two_web_processes_answer_on_one_port_and_stop_with_the_rest(serve, how):
    process, port, output = serve("--web-workers", "2")
    children = children_of(process.pid)
    web = [pid for pid, cmdline in children.items() if "portal.web" in cmdline]
    assert len(web) == 2 and all("--fd" in children[pid] for pid in web)
    assert len(children) == 4  # two web processes, the task cluster, the sweeper

    # Each web process answers on the port on its own while the other one is paused. serve
    # answered once one of them was up; the other may still be starting (on a loaded machine for
    # longer than a request's usual timeout), and until it accepts, the connection waits in the
    # shared socket's backlog: the first request may wait as long as serve may take to start.
    for answering in web:
        paused = [pid for pid in web if pid != answering]
        for pid in paused:
            pause_when_unlocked(pid)
        try:
            answers = [health(port, timeout=STARTUP_SECONDS), health(port), health(port)]
            assert answers == [200, 200, 200], f"web {answering} alone answered {answers}; serve's log:\n{logged(output)}"
        finally:
            for pid in paused:
                os.kill(pid, signal.SIGCONT)

    running = session_members(process.pid)
    assert set(children) < set(running)  # serve's children and theirs: the task cluster's workers
    if how == "SIGTERM":
        process.send_signal(signal.SIGTERM)
    else:  # a terminal's Ctrl-C: SIGINT to the whole foreground group
        os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=STOP_SECONDS) == 0
    assert all(not os.path.exists(f"/proc/{pid}") for pid in children)
    # Nothing of it keeps running: not the task cluster's own worker processes either.
    assert left_behind(process.pid) == {}
    output.seek(0)
    printed = output.read()
    assert f"http://127.0.0.1:{port}/agent/" in printed
    assert "Web processes    2" in printed
    assert "Stopped." in printed


def test_a_multipart_body_the_web_server_cannot_parse_reaches_the_api_and_gets_its_json_error(serve):
    """Issue 11, item 8: Twisted, under daphne, answered an empty multipart body (just the closing
    boundary, as HTTP clients send one) with a bare 400 before Django saw it: no Content-Type, no
    body. Now the API answers, in JSON (here: no credentials). The web process alone: on this
    unmigrated database a task cluster would only fail and be started again."""
    process, port, output = serve("--role", "web")
    for body in (b"--xyz--\r\n", b"garbage"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST", "/apps/api/v1/sessionless_sms/", body=body,
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        answer = conn.getresponse()
        assert answer.status == 401 and answer.getheader("Content-Type") == "application/json"
        assert json.loads(answer.read()) == {"error": "Authentication credentials were not provided."}
        conn.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_SECONDS) == 0


def test_with_redis_down_at_start_serve_stays_up_and_the_webhook_still_stores_texts(serve, tmp_path):
    """Issue 11, item 3: the task cluster cannot reach its broker; it is started again and again
    while the web keeps answering, and says so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = sock.getsockname()[1]  # nothing listens there once the socket is closed
    process, port, output = serve(REDIS_URL=f"redis://127.0.0.1:{down}/0")

    deadline = time.monotonic() + 20
    printed = ""
    while "starting it again" not in printed and time.monotonic() < deadline:
        time.sleep(0.5)
        output.seek(0)
        printed = output.read()
    assert "tasks process exited" in printed and "starting it again" in printed
    assert process.poll() is None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    answer = conn.getresponse()
    assert answer.status == 200 and b'"redis": "unavailable"' in answer.read()
    conn.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_SECONDS) == 0


def test_sigterm_in_the_middle_of_a_burst_answers_every_stored_text_and_stores_every_answered_one(serve, tmp_path):
    """Issue 11, item 7: daphne alone cancelled the requests it held ("Killed 17 pending
    application instances"): texts stored and never answered, or neither. Now every request is
    either answered 200 and stored, or refused without being stored (503, or no connection)."""
    import sqlite3
    import threading

    from tests.webhooks import inbound_params, sign

    token = "serve-test-token"
    process, port, output = serve(migrated=True, TWILIO_AUTH_TOKEN=token, PUBLIC_BASE_URL="")
    url = f"http://127.0.0.1:{port}/sms/twilio/inbound/"
    outcomes: list[tuple[str, int]] = []  # (MessageSid, status or 0 for no answer)
    lock = threading.Lock()
    stop_sending = threading.Event()

    def consumer(n: int):
        conn = None
        for step in range(200):
            if stop_sending.is_set():
                return
            params = inbound_params(from_number=f"+1555800{n:04d}", to_number="+15550100001", body=f"text {step}")
            body = urllib.parse.urlencode(params)
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sign(url, params, token)}
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                conn.request("POST", "/sms/twilio/inbound/", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except OSError:
                status = 0
                conn = None
            with lock:
                outcomes.append((params["MessageSid"], status))
            if status == 0:
                return  # the server is gone

    threads = [threading.Thread(target=consumer, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(outcomes) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_SECONDS) == 0
    stop_sending.set()
    for thread in threads:
        thread.join(30)

    with sqlite3.connect(tmp_path / "tern.sqlite3") as db:
        stored = {sid for (sid,) in db.execute("SELECT message_sid FROM sms_inboundmessage")}
    answered = {sid for sid, status in outcomes if status == 200}
    refused = {sid for sid, status in outcomes if status != 200}
    print(f"\nSIGTERM test: {len(outcomes)} requests, {len(answered)} answered 200, {len(refused)} refused "
          f"({dict(Counter(status for _, status in outcomes))}), {len(stored)} stored")
    assert len(answered) >= 100
    assert answered <= stored, "answered 200 but not stored"
    assert not (refused & stored), "stored but not answered 200"
    assert {status for _, status in outcomes} <= {200, 503, 0}


def scrape(port: int, **headers) -> tuple[int, dict]:
    """GET /metrics: its status and {(name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers)
        answer = conn.getresponse()
        text = answer.read().decode()
    finally:
        conn.close()
    if answer.status != 200:
        return answer.status, {}
    return 200, {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_add_up_the_web_and_task_processes_of_serve(serve, tmp_path):
    """Issue 17, item 5, on the real processes: a consumer's text through the web process, the
    reply sent by a task worker; the web's /metrics shows both (prometheus-client's multiprocess
    mode, one folder per serve) and the database's figures; --metrics-port shows the processes'."""
    from tests.webhooks import inbound_params, sign

    token = "serve-test-token"
    figures_port = free_port()
    process, port, output = serve(
        "--metrics-port", str(figures_port),
        before="from chats.management.commands.seed_demo import seed_demo; seed_demo()",
        TWILIO_AUTH_TOKEN=token, PUBLIC_BASE_URL="",
    )
    status, before = scrape(port)
    assert status == 200
    delivered_before = before[("tern_outbound_messages", (("status", "delivered"),))]

    params = inbound_params(from_number="+15558200001", to_number="+15550100001", body="Hi")
    url = f"http://127.0.0.1:{port}/sms/twilio/inbound/"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/sms/twilio/inbound/", body=urllib.parse.urlencode(params), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sign(url, params, token)})
    assert conn.getresponse().status == 200
    conn.close()

    sent = (("provider", "local"),)
    deadline = time.monotonic() + 60
    # The send is timed when the provider answers; its status is written just after: wait for both.
    delivered = ("tern_outbound_messages", (("status", "delivered"),))
    while (
        (figures := scrape(port)[1]).get(("tern_provider_send_seconds_count", sent), 0) < 1
        or figures[delivered] <= delivered_before
    ):
        assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
        time.sleep(0.3)
    assert figures[("tern_http_requests_total", (("method", "POST"), ("status", "200"), ("view", "twilio-inbound")))] == 1
    assert figures[("tern_webhook_seconds_count", (("webhook", "inbound"),))] == 1
    assert figures[("tern_inbound_pending_texts", ())] == 0
    # Each kind of process froze what it had loaded out of the garbage collector's scans. The
    # sweeper's loop does so before its first round, which a busy machine may start after the
    # reply has gone (the webhook wakes the task workers, not the sweeper): wait for it too.
    def frozen(role: str) -> float:
        return figures.get(("tern_gc_frozen_objects", (("role", role),)), 0)

    roles = ("web", "tasks", "sweeper")
    while min(map(frozen, roles)) <= 20_000 and time.monotonic() < deadline:
        time.sleep(0.3)
        figures = scrape(port)[1]
    for role in roles:
        assert frozen(role) > 20_000, role

    assert scrape(port, **{"X-Forwarded-For": "203.0.113.9"})[0] == 403  # through the proxy, no token
    status, processes_only = scrape(figures_port)
    assert status == 200
    assert processes_only[("tern_provider_send_seconds_count", sent)] == figures[("tern_provider_send_seconds_count", sent)]
    assert ("tern_inbound_pending_texts", ()) not in processes_only  # the database's figures are the web's

    folders = list((tmp_path / "metrics").glob("serve-*"))
    assert [folder.name for folder in folders] == [f"serve-{process.pid}"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_SECONDS) == 0
    assert not folders[0].exists()


class StallingTwilio(FakeTwilio):
    """The fake Twilio answering each send after ANSWER_SECONDS, and, after `stall()`, holding the
    answer to the next send until `release()`: a worker killed meanwhile dies with the message
    made at Twilio and its answer unread."""

    ANSWER_SECONDS = 0.05

    def __init__(self):
        super().__init__()
        self.stalled = threading.Event()
        self.held_port = 0  # the held send's connection, at its sender's end
        self._release: threading.Event | None = None
        self._armed: threading.Event | None = None

    def stall(self):
        self.stalled.clear()
        self._armed = threading.Event()

    def release(self):
        if self._release is not None:
            self._release.set()

    def _message_resource(self, form):
        resource = super()._message_resource(form)
        with self._lock:
            held, self._armed = self._armed, None
        if held is not None:
            self._release = held
            self.held_port = next(r.client_port for r in reversed(self.requests) if r.form is form)
            self.stalled.set()
            held.wait(30)
        else:
            time.sleep(self.ANSWER_SECONDS)
        return resource

    def made_for(self, number):
        return [m for m in self.message_resources if m["to"] == number]


def connection_owner(port: int, candidates) -> int | None:
    """The pid among `candidates` holding the loopback TCP connection whose local port is `port`;
    None once its process is dead (the kernel closed the socket with it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()  # sl, local "0100007F:1F90", remote, state, …, uid, timeout, inode
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in candidates:
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                return pid
        except OSError:
            continue
    return None


def stalled_live_sender(fake: StallingTwilio, sid: int) -> int:
    """Wait for a send held at the fake by a live process of session `sid`, and return its pid.
    A send a just-killed worker had on the wire can reach the fake after the next `stall()` and be
    held in its stead: that one is let go and the wait goes on."""
    deadline = time.monotonic() + 60
    while fake.stalled.wait(max(deadline - time.monotonic(), 0)):
        sender = connection_owner(fake.held_port, session_members(sid))
        if sender is not None:
            return sender
        fake.release()
        fake.stall()
    pytest.fail("no send from a live process reached Twilio within 60 s")


def test_task_workers_killed_three_times_mid_send_lose_nothing_and_send_nothing_twice(serve, tmp_path):
    """Issue 11, items 5 and 6, on the real processes: 100 replies to 50 consumers (two each) while
    the task cluster is killed with SIGKILL three times, each time with a message made at Twilio
    and its answer unread. Every message is sent, none twice, each consumer's two in order, and
    the last killed send is recovered within half a minute."""
    import sqlite3

    consumers = [f"+1555810{n:04d}" for n in range(50)]
    before = (
        "from sms.pipeline import queue_sms\n"
        f"for to in {consumers!r}:\n"
        "    queue_sms(to=to, from_number='+15550100001', body='first for ' + to)\n"
        "    queue_sms(to=to, from_number='+15550100001', body='second for ' + to)\n"
    )
    with StallingTwilio() as fake:
        fake.stall()
        process, port, output = serve(
            before=before,
            SMS_PROVIDER="twilio",
            TWILIO_ACCOUNT_SID=fake.account_sid,
            TWILIO_AUTH_TOKEN=fake.auth_token,
            TWILIO_API_BASE=fake.base_url,
            PUBLIC_BASE_URL="",
        )
        for kill in range(3):
            sender = stalled_live_sender(fake, process.pid)
            cluster = {pid for pid, cmdline in session_members(process.pid).items() if "qcluster" in cmdline}
            assert sender in cluster, f"kill {kill + 1}: the send came from {session_members(process.pid).get(sender)}"
            for pid in cluster:
                os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            fake.release()  # the answer goes to a dead worker
            if kill < 2:
                fake.stall()

        def unsent() -> int:
            with sqlite3.connect(tmp_path / "tern.sqlite3") as db:
                return db.execute("SELECT count(*) FROM sms_outboundmessage WHERE provider_sid IS NULL").fetchone()[0]

        deadline = time.monotonic() + 90
        while unsent() and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        recovered_in = time.monotonic() - killed_at
        assert unsent() == 0, (tmp_path / "serve.log").read_text()[-3000:]

        with sqlite3.connect(tmp_path / "tern.sqlite3") as db:
            saved = dict(db.execute("SELECT provider_sid, to_number FROM sms_outboundmessage"))
        made = list(fake.message_resources)
        print(f"\nkill test: {len(made)} made at Twilio for 100 messages; recovered {recovered_in:.1f} s after the last kill")
        assert len(made) == 100, "a message was sent twice"
        assert {m["sid"] for m in made} == set(saved)
        for number in consumers:
            assert [m["body"] for m in fake.made_for(number)] == [f"first for {number}", f"second for {number}"]
        assert recovered_in < 45
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_SECONDS) == 0
