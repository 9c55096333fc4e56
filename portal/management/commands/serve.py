"""Run the ASGI server (daphne), the django-q2 cluster and the sweeper loop together; Ctrl-C or
SIGTERM stops them all."""
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

STOP_GRACE_SECONDS = 10
SWEEP_EVERY_SECONDS = 5


class Command(BaseCommand):
    help = "Start the web/websocket server and the task cluster together."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "portal.settings")}
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        # TERN_PROCESS_ROLE tells portal.realtime which process shares the web's channel layer.
        children = {
            "web": subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "portal.asgi:application"],
                cwd=settings.BASE_DIR,
                env={**env, "TERN_PROCESS_ROLE": "web"},
            ),
            "tasks": subprocess.Popen(
                [*manage, "qcluster"], cwd=settings.BASE_DIR, env={**env, "TERN_PROCESS_ROLE": "tasks"}
            ),
            "sweeper": subprocess.Popen(
                [*manage, "sweep", "--every", str(SWEEP_EVERY_SECONDS)],
                cwd=settings.BASE_DIR,
                env={**env, "TERN_PROCESS_ROLE": "sweeper"},
            ),
        }
        self._print_banner(host, port)

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} process exited with code {child.returncode}; stopping.")
                    exit_code = child.returncode or 1
                    stopping = True
                    break
            time.sleep(0.2)
        self._stop(children)
        if exit_code:
            sys.exit(exit_code)

    def _stop(self, children):
        self.stdout.write("Stopping…")
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children.values():
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                child.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.stdout.write("Stopped.")

    def _print_banner(self, host, port):
        shown = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
        base = f"http://{shown}:{port}"
        lines = [
            "",
            "Tern is running.",
            f"  Admin            {base}/admin/            admin / admin",
            f"  Agent adapter    {base}/agent/            alice / demo, bob / demo",
            f"  Phone simulator  {base}/simulator/",
            f"  API docs         {base}/apps/api/v1/docs/",
            f"  Health           {base}/healthz",
            f"  SMS provider     {settings.SMS_PROVIDER}",
            "Press Ctrl-C to stop.",
            "",
        ]
        if settings.SECRET_KEY == settings.INSECURE_DEFAULT_SECRET_KEY:
            lines.insert(-2, "  Warning: SECRET_KEY is the development default; set it before real use.")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
