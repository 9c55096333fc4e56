"""Run the ASGI server (daphne), the django-q2 cluster and the sweeper loop together; Ctrl-C or
SIGTERM stops them all.

`--web-workers N` runs N daphne processes sharing one listening socket: this command binds it
and each daphne adopts it (`daphne --fd`), and the kernel hands each new connection to one of
them. One Python process uses one core (the GIL), so this is how the webhook and the API use
more than one. Several web processes need a channel layer they share (Redis, `REDIS_URL`): with
the in-memory one a browser would hear only the events of the process it is connected to."""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal import metrics

STOP_GRACE_SECONDS = 10
# A web process drains for up to 10 s (portal.web.DRAIN_SECONDS), then stops.
WEB_STOP_SECONDS = 15
SWEEP_EVERY_SECONDS = 5
MAX_WEB_WORKERS = 32
LISTEN_BACKLOG = 1024
IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


# The processes behind the web: when one exits, it is started again (after 1, 2, 4 … 30 s)
# instead of stopping everything; a web process that exits stops serve.
BACKGROUND_ROLES = ("tasks", "sweeper")
ROLES = ("web", "tasks", "sweeper", "all")


def roles_of(role: str) -> frozenset[str]:
    """What `--role` starts: one part, or all three."""
    return frozenset(("web", *BACKGROUND_ROLES)) if role == "all" else frozenset({role})
RESTART_MAX_SECONDS = 30
RESTART_RESET_SECONDS = 60
# How much lower than the web processes the task cluster and the sweeper run (nice).
BACKGROUND_NICENESS = 19


def child_env(role: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "portal.settings"),
        "TERN_PROCESS_ROLE": role,
    }


def _lower_priority() -> None:
    """Not on SQLite: its one write lock would be held by a process the CPU rarely runs (under
    load a web request then waits for it, up to the lock's 20 s timeout)."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        os.nice(BACKGROUND_NICENESS)


def web_workers_type(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_WEB_WORKERS:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_WEB_WORKERS}, not {value!r}")
    return count


def shared_channel_layer() -> bool:
    """Whether every process sees the same channel layer (Redis), not one in its own memory."""
    return settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND") != IN_MEMORY_LAYER


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening, which child processes can inherit."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CommandError(f"Cannot listen on {host}: {exc.strerror}.") from None
    # daphne adopts an inherited socket as IPv4 only.
    address = next((info[4] for info in infos if info[0] == socket.AF_INET), None)
    if address is None:
        raise CommandError(f"Several web processes need an IPv4 address to listen on, not {host}.")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    sock.set_inheritable(True)
    return sock


def daphne_command(*, host: str, port: int, fd: int | None = None) -> list[str]:
    where = ["--fd", str(fd)] if fd is not None else ["-b", host, "-p", str(port)]
    # portal.web: daphne that drains on SIGTERM (finishes the requests it holds) instead of
    # cancelling them.
    return [sys.executable, "-m", "portal.web", *where, "portal.asgi:application"]


class Command(BaseCommand):
    help = "Start the web/websocket server and the task cluster together."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--role",
            choices=ROLES,
            default="all",
            help="what this machine runs: web (the daphne processes), tasks (the django-q2 cluster), sweeper "
            "(the periodic work; safe on several machines at once: it locks what it takes), or all (default)",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="also answer GET /metrics with this serve's process figures on this port (for a machine without "
            "the web: its task workers' send latency); the web's /metrics has them and the database's figures",
        )
        parser.add_argument(
            "--metrics-host",
            default="127.0.0.1",
            help="where --metrics-port listens (default 127.0.0.1; elsewhere set METRICS_TOKEN)",
        )
        parser.add_argument(
            "--web-workers",
            type=web_workers_type,
            default=1,
            help="web (daphne) processes sharing the port, each on one core; above 1 needs REDIS_URL "
            "(default 1)",
        )

    def handle(self, *args, host, port, web_workers=1, role="all", metrics_port=None, metrics_host="127.0.0.1", **options):
        roles = roles_of(role)
        if role != "all" and not shared_channel_layer():
            raise CommandError(
                f"--role {role} splits the portal across processes or machines: they need REDIS_URL (the Redis "
                "channel layer and broker) and a shared database (DATABASE_URL)."
            )
        if web_workers > 1 and not shared_channel_layer():
            raise CommandError(
                "Several web processes need REDIS_URL (the Redis channel layer): with the in-memory one, "
                "an agent's browser would only hear the events of the process it is connected to."
            )
        metrics_folder = self._metrics_folder()
        figures = None
        try:
            if metrics_port:
                try:
                    figures = metrics.serve_figures(metrics_host, metrics_port)
                except OSError as exc:
                    raise CommandError(f"Cannot listen on {metrics_host}:{metrics_port} for /metrics: {exc.strerror}.") from None
            self._run(host, port, web_workers, roles)
        finally:
            if figures:
                figures.shutdown()
            if metrics_folder:
                os.environ.pop(metrics.MULTIPROC_ENV, None)
                shutil.rmtree(metrics_folder, ignore_errors=True)

    @staticmethod
    def _metrics_folder():
        """The folder where this serve's processes write their figures for /metrics (portal.metrics),
        made fresh; None when the operator chose one (PROMETHEUS_MULTIPROC_DIR: theirs to empty)."""
        if os.environ.get(metrics.MULTIPROC_ENV):
            return None
        folder = metrics.serve_folder(settings.VAR_DIR, os.getpid())
        os.environ[metrics.MULTIPROC_ENV] = str(folder)  # every child's environment (child_env)
        return folder

    def _run(self, host, port, web_workers, roles):
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        # Before any child starts: a signal from now on stops every child that was started.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        children = {}
        try:
            self._start_children(children, host, port, web_workers, roles)
        except BaseException:
            self._stop(children)  # what started before the failure
            raise
        self._print_banner(host, port, web_workers, roles)
        exit_code = 0
        restarts: dict[str, tuple[float, int]] = {}  # name → (when to start it again, tries so far)
        while not stopping:
            now = time.monotonic()
            for name, child in list(children.items()):
                if child is None:
                    when, tries = restarts[name]
                    if now >= when:
                        self.stderr.write(f"Starting the {name} process again (try {tries + 1}).")
                        children[name] = self._background_child(name)
                    continue
                if child.poll() is None:
                    if name in restarts and now - restarts[name][0] > RESTART_RESET_SECONDS:
                        del restarts[name]  # it has been running fine since
                    continue
                if name in BACKGROUND_ROLES:
                    # The work behind the webhooks can wait (a Redis that is down, say); the
                    # webhooks keep answering and storing meanwhile.
                    tries = restarts.get(name, (0, 0))[1] + 1
                    delay = min(RESTART_MAX_SECONDS, 2 ** (tries - 1))
                    self.stderr.write(
                        f"{name} process exited with code {child.returncode}; starting it again in {delay} s "
                        "(the web keeps answering; check the database and REDIS_URL)."
                    )
                    children[name] = None
                    restarts[name] = (now + delay, tries)
                    continue
                self.stderr.write(f"{name} process exited with code {child.returncode}; stopping.")
                exit_code = child.returncode or 1
                stopping = True
                break
            time.sleep(0.2)
        self._stop({name: child for name, child in children.items() if child is not None})
        if exit_code:
            sys.exit(exit_code)

    def _start_children(self, children: dict, host: str, port: int, web_workers: int, roles: frozenset[str]) -> None:
        # TERN_PROCESS_ROLE tells portal.realtime which process shares the web's channel layer.
        if "web" in roles:
            self._start_web(children, host, port, web_workers)
        for name in BACKGROUND_ROLES:
            if name in roles:
                children[name] = self._background_child(name)

    def _start_web(self, children: dict, host: str, port: int, web_workers: int) -> None:
        web_env = child_env("web")
        if web_workers == 1:
            children["web"] = subprocess.Popen(daphne_command(host=host, port=port), cwd=settings.BASE_DIR, env=web_env)
        else:
            sock = listening_socket(host, port)
            try:
                for number in range(1, web_workers + 1):
                    children[f"web-{number}"] = subprocess.Popen(
                        daphne_command(host=host, port=port, fd=sock.fileno()),
                        cwd=settings.BASE_DIR,
                        env=web_env,
                        pass_fds=(sock.fileno(),),
                    )
            finally:
                sock.close()  # the web processes hold it now

    def _background_child(self, name: str) -> subprocess.Popen:
        """The task cluster or the sweeper loop. On PostgreSQL the work behind the requests runs
        at a lower CPU priority: under a burst the web processes answer first and the backlog of
        texts grows instead (DESIGN rule 11)."""
        command = {"tasks": ["qcluster"], "sweeper": ["sweep", "--every", str(SWEEP_EVERY_SECONDS)]}[name]
        return subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), *command],
            cwd=settings.BASE_DIR,
            env=child_env(name),
            preexec_fn=_lower_priority,
        )

    def _stop(self, children):
        """The web processes first: they answer new requests 503 and finish those they hold
        (portal.web); then the task cluster and the sweeper, which finish their running work."""
        self.stdout.write("Stopping…")
        web = {name: child for name, child in children.items() if name not in BACKGROUND_ROLES}
        background = {name: child for name, child in children.items() if name in BACKGROUND_ROLES}
        self._stop_group(web, WEB_STOP_SECONDS)
        self._stop_group(background, STOP_GRACE_SECONDS)
        self.stdout.write("Stopped.")

    @staticmethod
    def _stop_group(children: dict, grace: float) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children.values():
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                child.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _print_banner(self, host, port, web_workers=1, roles=frozenset(("web", "tasks", "sweeper"))):
        if "web" not in roles:
            self.stdout.write(f"Tern is running: {', '.join(sorted(roles))} (no web on this machine). Press Ctrl-C to stop.\n")
            self.stdout.flush()
            return
        shown = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
        base = f"http://{shown}:{port}"
        lines = [
            "",
            "Tern is running.",
            f"  Admin            {base}/admin/            admin / admin",
            f"  Agent adapter    {base}/agent/            alice / demo, bob / demo",
            f"  Monitor          {base}/monitor/          sam / demo (supervisor; admin too)",
            f"  Phone simulator  {base}/simulator/",
            f"  API docs         {base}/apps/api/v1/docs/",
            f"  Health           {base}/healthz",
            f"  SMS provider     {settings.SMS_PROVIDER}",
            f"  Web processes    {web_workers}",
            f"  Runs here        {', '.join(sorted(roles))}",
            "Press Ctrl-C to stop.",
            "",
        ]
        if settings.SECRET_KEY == settings.INSECURE_DEFAULT_SECRET_KEY:
            lines.insert(-2, "  Warning: SECRET_KEY is the development default; set it before real use.")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
