"""The web process `serve` runs: daphne, stopped gracefully (issue 11, item 7).

Plain daphne stops on SIGTERM at once and cancels the requests it is in the middle of ("Killed
17 pending application instances"): a text could be stored and never answered, or half-handled.
Here SIGTERM (or SIGINT) starts a drain instead: from then on a new HTTP request is answered 503
with Retry-After before anything reads it, the requests already inside the application finish
(for at most DRAIN_SECONDS), then the server stops. Websockets are closed by the stop; the
adapter reconnects to another process.

    python -m portal.web <daphne arguments>      (what `serve` starts)
"""
from __future__ import annotations

import logging
import signal
import sys

from daphne.cli import CommandLineInterface
from daphne.http_protocol import WebRequest
from daphne.server import Server

from portal.gc_freeze import freeze_startup

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10
CHECK_EVERY = 0.05

# Twisted parses a POST's form body into `request.args` before daphne sees the request, and
# answers a multipart body it cannot parse (an empty one: just the closing boundary) with a bare
# 400 of its own, no Content-Type, no body — the API's JSON error never had a chance (issue 11,
# item 8). Daphne passes the raw body to Django and never reads `args`: switch the parse off
# (Twisted sets the switch per request, from an argument daphne never passes).
WebRequest._parsePOSTFormSubmission = property(lambda self: False, lambda self, value: None)


class Draining:
    """An ASGI wrapper that counts the HTTP requests inside the application and, once draining,
    answers new ones 503 without passing them on."""

    def __init__(self, app):
        self.app = app
        self.in_flight = 0
        self.draining = False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.draining:
            await send({
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"text/plain"), (b"retry-after", b"5"), (b"connection", b"close")],
            })
            await send({"type": "http.response.body", "body": b"Restarting; try again."})
            return
        self.in_flight += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class DrainingServer(Server):
    def __init__(self, application, *args, **kwargs):
        self.draining_app = Draining(application)
        kwargs["signal_handlers"] = False  # ours below, not Twisted's immediate stop
        super().__init__(self.draining_app, *args, **kwargs)

    def run(self):
        from twisted.internet import reactor

        def install():
            freeze_startup()  # the application is loaded: its objects need no collecting
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: reactor.callFromThread(self.drain))

        reactor.callWhenRunning(install)
        super().run()

    def drain(self):
        from twisted.internet import reactor

        if self.draining_app.draining:
            return
        self.draining_app.draining = True
        log.info("draining: %d requests in flight", self.draining_app.in_flight)
        waited = [0.0]

        def check():
            if self.draining_app.in_flight == 0 or waited[0] >= DRAIN_SECONDS:
                if self.draining_app.in_flight:
                    log.warning("stopping with %d requests still in flight", self.draining_app.in_flight)
                self.stop()
                return
            waited[0] += CHECK_EVERY
            reactor.callLater(CHECK_EVERY, check)

        check()


class DrainingCommandLine(CommandLineInterface):
    server_class = DrainingServer


def main(argv=None) -> None:
    DrainingCommandLine().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
