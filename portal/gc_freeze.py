"""A long-running process's objects from its start kept out of Python's garbage collector.

Python's cyclic collector now and then scans every object of its oldest generation while holding
the GIL: a web process that has imported Django, DRF, Channels and the portal holds ~150,000,
and every request it serves waits for the scan. Under the inbound benchmark (PostgreSQL, 370
texts/s) such full collections took 116 and 143 ms in the middle of the run: the webhook's p99.
`gc.freeze()` moves what exists now (modules, classes, URL patterns, settings) to a permanent
generation the collector never scans; what requests and tasks create later is collected as
before. Called by the web process once its application is loaded (`portal.web`), by each task
worker when django-q2 has started it (`post_spawn`), and by the sweeper loop. See
docs/performance.md."""
from __future__ import annotations

import gc
import os


def freeze_startup() -> None:
    """Call once the process has loaded what it serves, before its first request or task. How
    many objects it froze is on /metrics (`tern_gc_frozen_objects`, by the process's role)."""
    from django.urls import get_resolver

    from portal.metrics import GC_FROZEN

    get_resolver().url_patterns  # noqa: B018 — imports every view now, not at the first request
    gc.collect()  # what startup left as garbage is freed, not frozen
    gc.freeze()
    GC_FROZEN.labels(role=os.environ.get("TERN_PROCESS_ROLE") or "other").set(gc.get_freeze_count())


def on_worker_spawn(sender, **kwargs) -> None:
    """django-q2's `post_spawn`: a task worker is ready for its first task."""
    freeze_startup()
