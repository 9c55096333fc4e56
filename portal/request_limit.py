"""Requests per API credential (SPEC A): a sliding minute that parallel clients cannot overrun.

DRF's SimpleRateThrottle reads a history, appends and writes it back without a lock: 16 threads
of one credential got 844 requests through a limit of 600 a minute. Here each request is counted
with one atomic step — Redis INCR on the current window's key when REDIS_URL is set (every web
process shares it), else under a lock in this process (without Redis, `serve` runs one web
process) — and the count that decides is the sliding estimate of the last period: this window's
count plus the previous window's, weighted by how much of it still lies in the period. A refused
request is taken back off the count. With Redis unreachable the limit is not applied (logged):
the API keeps answering."""
from __future__ import annotations

import logging
import math
import threading
import time

from django.conf import settings

from portal import shared_redis

log = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """"600/minute" → (600, 60)."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[0].lower()]


class Decision:
    __slots__ = ("allowed", "retry_after")

    def __init__(self, allowed: bool, retry_after: float = 0.0):
        self.allowed = allowed
        self.retry_after = retry_after


def take(key: str, *, limit: int, period: int, now: float | None = None) -> Decision:
    now = time.time() if now is None else now
    window = int(now // period)
    try:
        current, previous = (_redis_count if settings.REDIS_URL else _local_count)(key, window, period, +1)
    except Exception:  # noqa: BLE001 — Redis away: answer rather than fail the request
        log.warning("request limit for %s not applied: Redis unreachable", key, exc_info=True)
        return Decision(True)
    elapsed = now - window * period
    estimate = current + previous * (period - elapsed) / period
    if estimate <= limit:
        return Decision(True)
    try:
        (_redis_count if settings.REDIS_URL else _local_count)(key, window, period, -1)
    except Exception:  # noqa: BLE001
        pass
    # The estimate falls below the limit again once enough of the previous window has slid out
    # (or, when this window alone is full, when the next one starts).
    if previous and current <= limit:
        wait = (estimate - limit) * period / previous
    else:
        wait = period - elapsed
    return Decision(False, max(1.0, math.ceil(wait)))


def _redis_count(key: str, window: int, period: int, delta: int) -> tuple[int, int]:
    name = f"tern:requests:{key}:{window}"
    pipe = shared_redis.client().pipeline()
    pipe.incrby(name, delta)
    pipe.expire(name, period * 2)
    pipe.get(f"tern:requests:{key}:{window - 1}")
    current, _, previous = pipe.execute()
    return int(current), int(previous or 0)


_lock = threading.Lock()
_counts: dict[tuple[str, int], int] = {}


def _local_count(key: str, window: int, period: int, delta: int) -> tuple[int, int]:
    with _lock:
        current = _counts.get((key, window), 0) + delta
        _counts[(key, window)] = current
        previous = _counts.get((key, window - 1), 0)
        for stale in [k for k in _counts if k[1] < window - 1]:
            del _counts[stale]
    return current, previous
