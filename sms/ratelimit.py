"""A rate limiter shared by every process: Redis when REDIS_URL is set, else the database.
Fixed windows: `take(key, limit, period)` counts one use and returns 0, or returns the seconds to
wait for the next window when this one is full."""
import sqlite3
import time

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from portal import shared_redis


def take(key: str, *, limit: int, period: int, now: float | None = None) -> float:
    now = time.time() if now is None else now
    window = int(now // period) * period
    if settings.REDIS_URL:
        allowed = _take_redis(key, window, limit, period)
    else:
        allowed = _take_database(key, window, limit)
    return 0.0 if allowed else (window + period) - now


def _take_redis(key: str, window: int, limit: int, period: int) -> bool:
    name = f"tern:rate:{key}:{window}"
    pipe = shared_redis.client().pipeline()
    pipe.incr(name)
    pipe.expire(name, period * 2)
    count, _ = pipe.execute()
    return int(count) <= limit


def _take_database(key: str, window: int, limit: int) -> bool:
    """One statement: create the window with a count of 1, or add 1 to it while it is below the
    limit; a row comes back only when this use was counted. Both databases run it atomically
    (PostgreSQL's and SQLite's upsert)."""
    from sms.models import RateWindow

    if connection.vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 35):  # no RETURNING
        return _take_database_portable(key, window, limit)
    table, key_column, start, count = (
        connection.ops.quote_name(name) for name in (RateWindow._meta.db_table, "key", "window_start", "count")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({key_column}, {start}, {count}) VALUES (%s, %s, 1) "
            f"ON CONFLICT ({key_column}, {start}) DO UPDATE SET {count} = {table}.{count} + 1 "
            f"WHERE {table}.{count} < %s RETURNING {count}",
            [key, window, limit],
        )
        return cursor.fetchone() is not None


def _take_database_portable(key: str, window: int, limit: int) -> bool:
    from sms.models import RateWindow

    try:
        with transaction.atomic():
            RateWindow.objects.get_or_create(key=key, window_start=window)
    except IntegrityError:
        pass  # another process created the window first
    updated = RateWindow.objects.filter(key=key, window_start=window, count__lt=limit).update(count=F("count") + 1)
    return updated == 1


def purge_old_windows(*, older_than: float, now: float | None = None) -> int:
    """Drop database windows older than `older_than` seconds (run from the outbound sweeper)."""
    from sms.models import RateWindow

    now = time.time() if now is None else now
    deleted, _ = RateWindow.objects.filter(window_start__lt=now - older_than).delete()
    return deleted
