"""Threads racing on PostgreSQL, for the concurrency tests (DESIGN rule 4).

SQLite takes one write lock for the whole database and ignores SELECT … FOR UPDATE, so a race
there proves nothing: `POSTGRES_ONLY` marks a module's tests to run on PostgreSQL only (CI runs
the suite a second time with DATABASE_URL=postgres://…). Every thread opens its own connection
and closes it."""
from __future__ import annotations

import threading
import traceback

import pytest
from django.db import connection, connections

THREAD_TIMEOUT = 60

POSTGRES_ONLY = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks need PostgreSQL (SQLite ignores SELECT FOR UPDATE); run with DATABASE_URL=postgres://…",
    ),
]


def run_together(*calls):
    """Run each callable in its own thread, all released at once by a barrier. Returns one
    ("ok", value) or ("error", exception) per call, in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(index, call):
        try:
            barrier.wait(timeout=THREAD_TIMEOUT)
            results[index] = ("ok", call())
        except BaseException as exc:  # noqa: BLE001 — reported to the test
            results[index] = ("error", exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, call), daemon=True) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    return results


def errors_of(results, allowed=()):
    """The exceptions raised, but for those of the `allowed` types."""
    return [value for kind, value in results if kind == "error" and not isinstance(value, allowed)]


def assert_no_errors(results, allowed=()):
    """No thread raised, but for exceptions of the `allowed` types (a refusal the race expects)."""
    errors = errors_of(results, allowed)
    assert not errors, "\n".join("".join(traceback.format_exception(error)) for error in errors)
