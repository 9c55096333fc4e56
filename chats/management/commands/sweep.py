import logging
import signal
import time

from django.core.management.base import BaseCommand

from chats.sweepers import run_sweepers
from portal.gc_freeze import freeze_startup

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the sweepers (chat deadlines, held and retried SMS) once, or every N seconds."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0, help="Seconds between runs; 0 runs once.")

    def handle(self, *args, every, **options):
        if not every:
            self.stdout.write(str(run_sweepers()))
            return
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        freeze_startup()
        while not stopping:
            try:
                run_sweepers()
            except Exception:  # noqa: BLE001 — keep sweeping; the error is logged with its traceback
                log.exception("sweep failed; retrying next round")
            deadline = time.monotonic() + every
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.2)
