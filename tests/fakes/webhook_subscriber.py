"""A loopback subscriber to Tern's event webhooks (127.0.0.1, a free port)."""
from __future__ import annotations

import http.server
import json
import threading


class Subscriber:
    """A loopback HTTP server that records each POST and answers the next status in `answers`
    (the last one repeats)."""

    def __init__(self, answers=(200,)):
        self.answers = list(answers)
        self.requests: list[dict] = []
        subscriber = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 — http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                subscriber.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                status = subscriber.answers.pop(0) if len(subscriber.answers) > 1 else subscriber.answers[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/tern"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [json.loads(request["body"]) for request in self.requests]
