"""The production topology on loopback (issue 17, item 4): Debian's nginx running
deploy/nginx/tern.conf — TLS with a certificate made for the test — in front of two
`serve --role web` processes, one `serve --role tasks`, PostgreSQL and Redis, with the production
environment of docs/deploy.md (HTTPS=true, DEBUG=false, PUBLIC_BASE_URL=https://sms.example.com).

A consumer's signed webhook goes through nginx and the reply reaches (fake) Twilio; an agent's
websocket through nginx hears the chat; with one web process stopped, the next requests are still
answered. CI's PostgreSQL + Redis phase runs it (`make test` installs nginx there when missing)."""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.fakes.twilio_server import FakeTwilio
from tests.portal.test_serve import free_port, health
from tests.webhooks import inbound_params, sign

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql" or not settings.REDIS_URL,
        reason="the production topology runs on PostgreSQL and Redis (CI's second phase: DATABASE_URL and REDIS_URL)",
    ),
]

ROOT = Path(settings.BASE_DIR)
SITE = ROOT / "deploy" / "nginx" / "tern.conf"
HOST = "sms.example.com"
PUBLIC = f"https://{HOST}"
PORTAL_NUMBER = "+15550100001"  # the demo's support line
STARTUP_SECONDS = 90
REDIS_DB = 13  # not the suite's


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not found:
        pytest.fail("This test needs Debian's nginx: `make test` installs it on PostgreSQL (apt-get install nginx).")
    return found


def site_for_test(*, web_ports, http_port, https_port, cert, key, static) -> str:
    """deploy/nginx/tern.conf with only its addresses and paths changed; each must be there once,
    so the test breaks if the shipped site changes shape."""
    text = SITE.read_text()
    changes = {
        "server 127.0.0.1:8001 ": f"server 127.0.0.1:{web_ports[0]} ",
        "server 127.0.0.1:8002 ": f"server 127.0.0.1:{web_ports[1]} ",
        "    listen 80;\n": f"    listen 127.0.0.1:{http_port};\n",
        "    listen [::]:80;\n": "",
        "    listen 443 ssl http2;\n": f"    listen 127.0.0.1:{https_port} ssl http2;\n",
        "    listen [::]:443 ssl http2;\n": "",
        "/etc/letsencrypt/live/sms.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/sms.example.com/privkey.pem": str(key),
        "/var/lib/tern/staticfiles/": f"{static}/",
    }
    for old, new in changes.items():
        assert text.count(old) == 1, f"deploy/nginx/tern.conf no longer has {old!r} once"
        text = text.replace(old, new)
    return text


@pytest.fixture
def database():
    """A PostgreSQL database of its own (the processes migrate and seed it), dropped after."""
    import psycopg

    base = settings.DATABASES["default"]
    params = {key: base[name] for key, name in (("host", "HOST"), ("port", "PORT"), ("user", "USER"), ("password", "PASSWORD")) if base.get(name)}
    name = f"tern_topology_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    user = urllib.parse.quote(params.get("user", "postgres"))
    password = f":{urllib.parse.quote(params['password'])}" if params.get("password") else ""
    yield f"postgres://{user}{password}@{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{name}"
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url():
    import redis

    parts = urllib.parse.urlsplit(settings.REDIS_URL)
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{REDIS_DB}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def started(tmp_path):
    """Start a process in a session of its own; after the test, kill whatever of it is left."""
    processes = []

    def start(command, *, log: str, env=None):
        output = open(tmp_path / f"{log}.log", "w")
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def wait_until(check, what: str, logs: Path, seconds: float = STARTUP_SECONDS):
    deadline = time.monotonic() + seconds
    while not (result := check()):
        if time.monotonic() > deadline:
            printed = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log")))
            pytest.fail(f"{what} did not happen in {seconds} s\n{printed}")
        time.sleep(0.2)
    return result


class Through:
    """HTTPS requests to nginx on loopback, as to https://sms.example.com."""

    def __init__(self, port: int):
        self.port = port
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE

    def request(self, method: str, path: str, *, body: str | None = None, headers=None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.tls)
        try:
            conn.request(method, path, body=body, headers={"Host": HOST, **(headers or {})})
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            conn.close()

    def text(self, consumer: str, body: str, token: str) -> int:
        """A consumer's text, as Twilio posts it: signed for the public URL."""
        params = inbound_params(from_number=consumer, to_number=PORTAL_NUMBER, body=body)
        path = "/sms/twilio/inbound/"
        status, _, _ = self.request(
            "POST", path, body=urllib.parse.urlencode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "X-Twilio-Signature": sign(PUBLIC + path, params, token)},
        )
        return status


def test_nginx_two_web_processes_and_the_task_workers_serve_a_conversation_and_survive_a_stopped_web(
    database, redis_url, started, tmp_path
):
    nginx = nginx_binary()
    var = tmp_path / "var"
    with FakeTwilio() as twilio:
        env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            DJANGO_SETTINGS_MODULE="portal.settings",
            DATABASE_URL=database,
            REDIS_URL=redis_url,
            TERN_VAR_DIR=str(var),
            SECRET_KEY=secrets.token_urlsafe(50),
            DEBUG="false",
            ALLOWED_HOSTS=f"{HOST},127.0.0.1",
            PUBLIC_BASE_URL=PUBLIC,
            HTTPS="true",
            SMS_PROVIDER="twilio",
            TWILIO_ACCOUNT_SID=twilio.account_sid,
            TWILIO_AUTH_TOKEN=twilio.auth_token,
            TWILIO_API_BASE=twilio.base_url,
            LOG_LEVEL="WARNING",
        )

        def manage(*args) -> str:
            done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        manage("migrate", "--noinput", "-v0")
        manage("seed_demo")
        manage("collectstatic", "--noinput", "-v0")
        session_key = manage(
            "shell", "-c",
            "from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model\n"
            "from django.contrib.sessions.backends.db import SessionStore\n"
            "alice = get_user_model().objects.get(username='alice')\n"
            "s = SessionStore()\n"
            "s.update({SESSION_KEY: str(alice.pk), BACKEND_SESSION_KEY: 'django.contrib.auth.backends.ModelBackend', "
            "HASH_SESSION_KEY: alice.get_session_auth_hash()})\n"
            "s.create()\n"
            "print(s.session_key)\n",
        ).split()[-1]  # the last line: what the shell printed before it is not ours

        # The processes, as the systemd units start them.
        web_ports = [free_port(), free_port()]
        webs = [
            started([sys.executable, "manage.py", "serve", "--role", "web", "--host", "127.0.0.1", "--port", str(port)],
                    log=f"web-{port}", env=env)
            for port in web_ports
        ]
        started([sys.executable, "manage.py", "serve", "--role", "tasks"], log="tasks", env=env)

        # nginx with the shipped site, a certificate for sms.example.com, everything else in tmp.
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
        http_port, https_port = free_port(), free_port()
        (tmp_path / "tern.conf").write_text(site_for_test(
            web_ports=web_ports, http_port=http_port, https_port=https_port, cert=cert, key=key, static=var / "staticfiles",
        ))
        temp = tmp_path / "nginx-temp"
        temp.mkdir()
        (tmp_path / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"worker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/nginx-error.log warn;\n"
            "daemon off;\nevents { worker_connections 256; }\n"
            f"http {{\n  include /etc/nginx/mime.types;\n  access_log {tmp_path}/nginx-access.log;\n"
            + "".join(f"  {kind}_temp_path {temp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + f"  include {tmp_path}/tern.conf;\n}}\n"
        )
        config = ["-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "nginx-error.log")]
        checked = subprocess.run([nginx, "-t", *config], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        started([nginx, *config], log="nginx")

        for port in web_ports:
            wait_until(lambda: health(port) == 200, f"the web process on {port} answering", tmp_path)
        through = Through(https_port)
        wait_until(lambda: health_through(through) == 200, "nginx answering", tmp_path)

        # Static files come from disk, with nginx's own content type.
        status, headers, _ = through.request("GET", "/static/admin/css/base.css")
        assert (status, headers.get("Content-Type")) == (200, "text/css")
        # Plain HTTP is sent to HTTPS; so is a page asked for over HTTP behind the proxy.
        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        plain.request("GET", "/agent/", headers={"Host": HOST})
        answer = plain.getresponse()
        assert (answer.status, answer.getheader("Location")) == (301, f"{PUBLIC}/agent/")
        plain.close()

        # A consumer texts through nginx; the greeting and menu reach Twilio from the task workers.
        consumer = "+15558300001"
        assert through.text(consumer, "Hi", twilio.auth_token) == 200
        wait_until(lambda: [m for m in twilio.message_resources if m["to"] == consumer], "a reply sent to Twilio", tmp_path)

        # Alice's adapter, through nginx, hears the chat once the consumer picks Billing.
        events = asyncio.run(hear_after_choice(https_port, session_key, through, consumer, twilio.auth_token))
        assert events[0]["type"] == "hello"

        # One web process stops (drains and exits); nginx answers every next request through the other.
        webs[0].send_signal(signal.SIGTERM)
        assert webs[0].wait(timeout=30) == 0
        statuses = [through.text(f"+155583001{n:02d}", "Hi", twilio.auth_token) for n in range(10)]
        statuses += [health_through(through) for _ in range(5)]
        assert statuses == [200] * 15
        # nginx did try the stopped process, and passed those requests on to the other one.
        refused = [line for line in (tmp_path / "nginx-error.log").read_text().splitlines()
                   if "Connection refused" in line and f"127.0.0.1:{web_ports[0]}" in line]
        assert refused, "no request was sent to the stopped web process: the failover was not exercised"
        wait_until(
            lambda: len({m["to"] for m in twilio.message_resources}) >= 11, "replies to the ten new consumers", tmp_path
        )


def health_through(through: Through) -> int:
    try:
        return through.request("GET", "/healthz")[0]
    except OSError:
        return 0


async def hear_after_choice(port, session_key, through: Through, consumer: str, token: str) -> list[dict]:
    """Alice's socket opens (its "hello" arrives), then the consumer picks Billing; the events
    until the chat reaches her."""
    import aiohttp

    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    events: list[dict] = []
    async with aiohttp.ClientSession() as client:
        async with client.ws_connect(
            f"https://127.0.0.1:{port}/ws/agent/", ssl=tls, server_hostname=HOST,
            headers={"Host": HOST, "Origin": PUBLIC, "Cookie": f"sessionid={session_key}"},
        ) as socket:
            try:
                await asyncio.wait_for(_until_chat(socket, events, through, consumer, token), 60)
            except TimeoutError:
                pytest.fail(f"the chat did not reach alice's socket; she heard {events}")
    return events


def reached(events: list[dict], consumer: str) -> bool:
    """Alice heard the consumer's chat assigned to her (she sees the number masked: its last four
    digits)."""
    return any(
        e.get("type") == "chat.updated" and e["chat"]["status"] == "assigned" and e["chat"]["agent_id"] == events[0]["agent_id"]
        and e["chat"]["consumer_number"].endswith(consumer[-4:]) and e["chat"]["queue_name"] == "Billing"
        for e in events
    )


async def _until_chat(socket, events: list[dict], through: Through, consumer: str, token: str) -> None:
    import aiohttp

    chosen = False
    while not reached(events, consumer):
        message = await socket.receive()
        assert message.type == aiohttp.WSMsgType.TEXT, message
        events.append(json.loads(message.data))
        if events[-1].get("type") == "hello" and not chosen:
            chosen = True
            assert await asyncio.to_thread(through.text, consumer, "1", token) == 200
