"""Django's ASGI handler, with the threads of finished requests kept for the next ones.

Under ASGI, Django runs a request's sync code (middleware, view, database) on a thread that is
the request's alone: its ASGIHandler enters asgiref's `ThreadSensitiveContext()`, which starts a
new thread for each request and joins it at the end. Starting and joining that thread was a
third of an inbound webhook's CPU in a web process (py-spy under a burst; in-process, the same
request 1.78 → 1.24 ms of CPU with the threads kept). Here each request still has a thread to
itself for as long as it runs, the way Django wants it; the thread is one an earlier request
finished with (asgiref's contexts with an executor: the caller owns it and may use it again),
as a WSGI server reuses its threads. What Django keeps per thread is then what a WSGI thread
keeps between requests: the database connection is closed at each request's end when
CONN_MAX_AGE is 0 (the web process's default), else kept as CONN_MAX_AGE says."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

# Threads kept idle at most; more run while more requests are in flight, and end after them.
MAX_IDLE_THREADS = 64


class ThreadReusingHandler(ASGIHandler):
    """ASGIHandler whose requests each run their sync code on a thread of their own, taken from
    those earlier requests left idle."""

    max_idle_threads = MAX_IDLE_THREADS

    def __init__(self):
        super().__init__()
        self._idle: list[ThreadPoolExecutor] = []  # single-thread executors, no block using them

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # which refuses it
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(max_workers=1, thread_name_prefix="http")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            if len(self._idle) < self.max_idle_threads:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)  # its thread ends once its last call has
