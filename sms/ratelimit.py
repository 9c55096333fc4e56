"""A rate limiter shared by every process: Redis when REDIS_URL is set, else the database.
Fixed windows: `take(key, limit, period)` counts one use and returns 0, or returns the seconds to
wait for the next window when this one is full (the numbers' sending limits); `take_up_to` counts
several at once (a send task's messages through one number). A sliding period:
`take_sliding(key, limit, period)`, which holds in every span of `period` seconds (the
session-less pace)."""
import sqlite3
import time

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from portal import shared_redis


def take(key: str, *, limit: int, period: int, now: float | None = None) -> float:
    now = time.time() if now is None else now
    counted, window_end = take_up_to(key, 1, limit=limit, period=period, now=now)
    return 0.0 if counted else window_end - now


def take_up_to(key: str, wanted: int, *, limit: int, period: int, now: float | None = None) -> tuple[int, float]:
    """Count up to `wanted` uses at once in the current window, as many as it has room for:
    returns how many were counted (0 when it is full) and when the window ends, on `time.time()`'s
    clock. One statement, or one trip to Redis, for a send task's messages through a number
    instead of one for each."""
    now = time.time() if now is None else now
    window = int(now // period) * period
    if settings.REDIS_URL:
        after = _take_redis(key, window, wanted, period)
    else:
        after = _take_database(key, window, wanted, limit)
    # `after` is the window's count with these uses (None: it was full and nothing was counted).
    # Counts may pass the limit (Redis adds whatever the answer); what was below it was room.
    counted = 0 if after is None else max(0, min(wanted, limit - (after - wanted)))
    return counted, float(window + period)


def _take_redis(key: str, window: int, wanted: int, period: int) -> int:
    name = f"tern:rate:{key}:{window}"
    pipe = shared_redis.client().pipeline()
    pipe.incrby(name, wanted)
    pipe.expire(name, period * 2)
    count, _ = pipe.execute()
    return int(count)


def _take_database(key: str, window: int, wanted: int, limit: int) -> int | None:
    """One statement: create the window with a count of `wanted`, or add `wanted` to it while it
    is below the limit; the new count comes back only when the window had room. Both databases
    run it atomically (PostgreSQL's and SQLite's upsert)."""
    from sms.models import RateWindow

    if connection.vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 35):  # no RETURNING
        return _take_database_portable(key, window, wanted, limit)
    table, key_column, start, count = (
        connection.ops.quote_name(name) for name in (RateWindow._meta.db_table, "key", "window_start", "count")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({key_column}, {start}, {count}) VALUES (%s, %s, %s) "
            f"ON CONFLICT ({key_column}, {start}) DO UPDATE SET {count} = {table}.{count} + %s "
            f"WHERE {table}.{count} < %s RETURNING {count}",
            [key, window, wanted, wanted, limit],
        )
        row = cursor.fetchone()
        return None if row is None else row[0]


def _take_database_portable(key: str, window: int, wanted: int, limit: int) -> int | None:
    from sms.models import RateWindow

    try:
        with transaction.atomic():
            RateWindow.objects.get_or_create(key=key, window_start=window)
    except IntegrityError:
        pass  # another process created the window first
    with transaction.atomic():  # the count read back is this update's
        windows = RateWindow.objects.filter(key=key, window_start=window)
        if not windows.filter(count__lt=limit).update(count=F("count") + wanted):
            return None
        return windows.get().count


# --- a sliding period, for paces that must hold in every minute, not per calendar minute -------


def take_sliding(key: str, *, limit: int, period: int, now: float | None = None) -> float:
    """Count one use if no more than `limit` were counted in the last `period` seconds; returns
    0, or the seconds until one fits. Counted in one-second buckets, the use first and the sum
    after (a use that does not fit is taken back), so parallel workers can only under-admit. The
    sum covers the current second and the `period` before it: a little more than the period, so
    no span of `period` seconds ever holds more than `limit` (SPEC A2's 300 a minute)."""
    now = time.time() if now is None else now
    second = int(now)
    buckets = range(second - period, second + 1)  # oldest first; the last is the current one
    if settings.REDIS_URL:
        counts = _sliding_redis(key, second, buckets, period, +1)
    else:
        counts = _sliding_database(key, second, buckets, +1)
    total = sum(counts)
    if total <= limit:
        return 0.0
    if settings.REDIS_URL:
        _sliding_redis(key, second, (), period, -1)
    else:
        _sliding_database(key, second, (), -1)
    counts[-1] -= 1  # without this use
    need, dropped = total - limit, 0
    for offset, count in enumerate(counts):
        dropped += count
        if dropped >= need:
            return float(second - period + offset + period + 1) - now  # that bucket has left
    return 1.0


def _sliding_redis(key: str, second: int, buckets, period: int, delta: int) -> list[int]:
    name = f"tern:rate:{key}:s"
    pipe = shared_redis.client().pipeline()
    pipe.incrby(f"{name}:{second}", delta)
    pipe.expire(f"{name}:{second}", period * 2 + 2)
    if buckets:
        pipe.mget([f"{name}:{b}" for b in buckets])
    results = pipe.execute()
    return [int(value or 0) for value in results[2]] if buckets else []


def _sliding_database(key: str, second: int, buckets, delta: int) -> list[int]:
    from sms.models import RateWindow

    bucket_key = f"{key}:s"
    if delta > 0:
        try:
            with transaction.atomic():
                RateWindow.objects.get_or_create(key=bucket_key, window_start=second)
        except IntegrityError:
            pass  # another process created the bucket first
    RateWindow.objects.filter(key=bucket_key, window_start=second).update(count=F("count") + delta)
    if not buckets:
        return []
    found = dict(
        RateWindow.objects.filter(key=bucket_key, window_start__gte=buckets[0], window_start__lte=buckets[-1])
        .values_list("window_start", "count")
    )
    return [found.get(b, 0) for b in buckets]


def purge_old_windows(*, older_than: float, now: float | None = None) -> int:
    """Drop database windows older than `older_than` seconds (run from the outbound sweeper)."""
    from sms.models import RateWindow

    now = time.time() if now is None else now
    deleted, _ = RateWindow.objects.filter(window_start__lt=now - older_than).delete()
    return deleted
