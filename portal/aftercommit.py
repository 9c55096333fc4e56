"""Work done after commit, collected over a block and done together (DESIGN rule 3).

`AfterCommitBatch(flush)`: outside its block, `add(items)` runs `flush(items)` after the current
transaction commits, as `transaction.on_commit` does. Inside `with batch.collecting():`, what is
added joins the block's list when its transaction commits (work of a rolled-back savepoint
never does), and one `flush(all_items)` runs after the block, once everything committed inside
it has been collected. Used for browser pushes (one event-loop hop for many events) and SMS
send tasks (one broker trip, few tasks) of work that commits many rows at once: a batch of
inbound texts, a sweep."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable

from django.db import transaction


class _Collected:
    def __init__(self):
        self.items: list = []
        self.flushed = False


class AfterCommitBatch:
    def __init__(self, name: str, flush: Callable[[list], None]):
        self._collected: contextvars.ContextVar[_Collected | None] = contextvars.ContextVar(name, default=None)
        self._flush = flush

    def add(self, items: list) -> None:
        if not items:
            return
        collected = self._collected.get()
        if collected is None:
            transaction.on_commit(lambda: self._flush(items))
            return

        def collect():
            if collected.flushed:  # committed after the block's flush (work its flush caused)
                self._flush(items)
            else:
                collected.items.extend(items)

        transaction.on_commit(collect)

    @contextlib.contextmanager
    def collecting(self):
        if self._collected.get() is not None:  # already collecting: the outer block flushes
            yield
            return
        collected = _Collected()
        token = self._collected.set(collected)
        try:
            yield
        finally:
            self._collected.reset(token)
            # After what was committed inside the block has been collected: at once when the
            # block ran in autocommit; after the callbacks registered before it otherwise.
            transaction.on_commit(lambda: self._finish(collected))

    def _finish(self, collected: _Collected) -> None:
        collected.flushed = True
        if collected.items:
            self._flush(collected.items)
