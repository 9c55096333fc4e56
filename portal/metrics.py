"""What each process counts for Prometheus (issue 17, item 5): the requests by view and status,
the webhooks' latency and the time the SMS provider takes to accept a message. The figures the
database holds (pending texts, queued chats, agents connected…) are read when /metrics is scraped
(portal.monitoring.exporter), so every process and machine agrees on them.

Several processes on one machine: `serve` gives its children one folder of their own in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode: each process writes its figures
to a file there), and /metrics adds up the files of every process of that `serve` — the web
processes and, when they run beside them, the task cluster's workers. Outside `serve` (tests,
`runserver`) the figures live in this process's memory."""
from __future__ import annotations

import hmac
from http import HTTPStatus
import ipaddress
import os
import shutil
import threading
import time
from functools import lru_cache
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.urls import Resolver404, resolve
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Twilio gives a webhook 15 s; the buckets see the 150 ms and 500 ms targets (issue 10).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 15)
# The URL names of the webhooks whose latency is measured, and the label each gets.
WEBHOOKS = {"twilio-inbound": "inbound", "twilio-status": "status"}

REQUESTS = Counter(
    "tern_http_requests", "HTTP requests answered, by view (URL name) and status.", ["view", "method", "status"]
)
WEBHOOK_SECONDS = Histogram(
    "tern_webhook_seconds", "Time to answer Twilio's SMS webhooks.", ["webhook"], buckets=LATENCY_BUCKETS
)
PROVIDER_SEND_SECONDS = Histogram(
    "tern_provider_send_seconds",
    "Time the SMS provider took to accept (or refuse) a message.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
GC_FROZEN = Gauge(
    "tern_gc_frozen_objects",
    "Objects a process moved out of the garbage collector's scans once it had started (portal.gc_freeze), "
    "by its role in `serve`; the largest of the role's processes. Missing: no process of that role froze.",
    ["role"],
    multiprocess_mode="max",
)


@lru_cache(maxsize=2048)
def view_name(path: str) -> str:
    """The URL name a path resolves to ("api-chat", "admin:index"), or "unmatched": a label that
    stays few in number whatever ids the paths carry."""
    try:
        match = resolve(path)
    except Resolver404:
        return "unmatched"
    return match.view_name or getattr(match.func, "__name__", "unnamed")


def measured(app):
    """An ASGI wrapper counting each HTTP request by view, method and status, and timing the
    webhooks from the request's arrival to the last byte of the answer."""

    async def wrapper(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        started = time.perf_counter()
        status = 0

        async def send_and_count(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                record(scope["path"], scope["method"], status, time.perf_counter() - started)

        return await app(scope, receive, send_and_count)

    return wrapper


def record(path: str, method: str, status: int, seconds: float) -> None:
    view = view_name(path)
    REQUESTS.labels(view=view, method=method, status=str(status)).inc()
    if view in WEBHOOKS:
        WEBHOOK_SECONDS.labels(webhook=WEBHOOKS[view]).observe(seconds)


def process_collectors(registry: CollectorRegistry) -> None:
    """Adds this machine's per-process figures to a scrape's registry: every process of the
    `serve` in multiprocess mode, else this process's own."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())


class _ThisProcess:
    """The default registry's metrics, for a registry built per scrape."""

    def collect(self):
        yield from REGISTRY.collect()


# --- who may read them -------------------------------------------------------------------------

REFUSED_NO_TOKEN = (
    "Metrics are read on this machine only (loopback, not through the proxy); set METRICS_TOKEN to read them "
    "from elsewhere.\n"
)
REFUSED_BAD_TOKEN = "A valid METRICS_TOKEN is needed: Authorization: Bearer <token>.\n"


def refusal(*, remote_addr: str, authorization: str, proxied: bool) -> tuple[int, str] | None:
    """Why a request may not read the figures, as (status, text); None when it may. With
    METRICS_TOKEN set: the bearer of the token, from anywhere. Without: a client on this machine
    talking to the process directly (a request that came through nginx carries X-Forwarded-For)."""
    token = settings.METRICS_TOKEN
    if token:
        if hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
            return None
        return 401, REFUSED_BAD_TOKEN
    try:
        loopback = ipaddress.ip_address(remote_addr).is_loopback
    except ValueError:
        loopback = False
    return None if loopback and not proxied else (403, REFUSED_NO_TOKEN)


def exposition(*extra_collectors) -> bytes:
    """The figures in Prometheus' text format: this machine's processes, then `extra_collectors`."""
    registry = CollectorRegistry(auto_describe=False)
    process_collectors(registry)
    for collector in extra_collectors:
        registry.register(collector)
    return generate_latest(registry)


# --- a machine without the web: `serve --metrics-port` ----------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 — the base class's name
        pass


def _figures_app(environ, start_response):
    refused = refusal(
        remote_addr=environ.get("REMOTE_ADDR", ""),
        authorization=environ.get("HTTP_AUTHORIZATION", ""),
        proxied="HTTP_X_FORWARDED_FOR" in environ,
    )
    if environ.get("PATH_INFO") != "/metrics":
        refused = (404, "Only /metrics here.\n")
    if refused:
        status, text = refused
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [text.encode()]
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
    return [exposition()]


def serve_figures(host: str, port: int):
    """GET /metrics with this serve's process figures (the task workers' send latency, say) on
    host:port, in a thread; the database's figures are on the web's /metrics. Returns the server
    (shutdown() stops it)."""
    server = make_server(host, port, _figures_app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


# --- the folder of a serve's processes --------------------------------------------------------


def serve_folder(var_dir: Path, pid: int) -> Path:
    """A fresh folder for the processes of the `serve` with this pid; the folders of `serve`s that
    are no longer running are removed (one killed with SIGKILL leaves its folder behind)."""
    root = var_dir / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("serve-*"):
        other = old.name.removeprefix("serve-")
        if other.isdigit() and not _running(int(other)):
            shutil.rmtree(old, ignore_errors=True)
    folder = root / f"serve-{pid}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
