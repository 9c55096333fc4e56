"""SPEC S11 step 4: the shared rate limiter behind the numbers' sending limits. Fixed windows:
`take` counts one use and answers 0, or the seconds until the next window when this one is full.
It runs on the database, and on Redis when REDIS_URL is set (CI runs the suite both ways)."""
import os
import uuid

import pytest

from portal import shared_redis
from sms import ratelimit
from sms.models import RateWindow

REDIS_URL = os.environ.get("REDIS_URL", "")
T = 1_750_000_000.0  # a whole second, mid-window for longer periods


@pytest.fixture(params=["database", "redis"])
def backend(request, settings, db):
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("REDIS_URL is not set")
        settings.REDIS_URL = REDIS_URL
    else:
        settings.REDIS_URL = ""
    return request.param


@pytest.fixture
def key(backend):
    """A key of this test run alone: Redis keeps counters between runs and between suites."""
    name = f"test:{uuid.uuid4().hex}"
    yield name
    if backend == "redis":
        client = shared_redis.client()
        for stale in client.scan_iter(f"tern:rate:{name}:*"):
            client.delete(stale)


def test_uses_up_to_the_limit_then_waits_for_the_next_window(key):
    now = T + 0.25

    assert [ratelimit.take(key, limit=3, period=1, now=now) for _ in range(3)] == [0, 0, 0]
    assert ratelimit.take(key, limit=3, period=1, now=now) == pytest.approx(0.75)
    assert ratelimit.take(key, limit=3, period=1, now=now + 0.5) == pytest.approx(0.25)


def test_several_uses_at_once_are_counted_as_far_as_the_window_has_room(key):
    """A send task counts its messages' shares together: what fits is counted, the rest not."""
    now = T + 0.25

    assert ratelimit.take_up_to(key, 3, limit=5, period=1, now=now) == (3, T + 1)
    assert ratelimit.take_up_to(key, 3, limit=5, period=1, now=now) == (2, T + 1)
    assert ratelimit.take_up_to(key, 3, limit=5, period=1, now=now) == (0, T + 1)
    assert ratelimit.take(key, limit=5, period=1, now=now) == pytest.approx(0.75)  # one at a time agrees
    assert ratelimit.take_up_to(key, 8, limit=5, period=1, now=T + 1) == (5, T + 2)


def test_the_next_window_starts_afresh(key):
    for _ in range(2):
        ratelimit.take(key, limit=2, period=1, now=T + 0.1)
    assert ratelimit.take(key, limit=2, period=1, now=T + 0.9) > 0

    assert ratelimit.take(key, limit=2, period=1, now=T + 1.0) == 0
    assert ratelimit.take(key, limit=2, period=1, now=T + 1.5) == 0
    assert ratelimit.take(key, limit=2, period=1, now=T + 1.99) == pytest.approx(0.01)


def test_keys_are_independent(key):
    assert ratelimit.take(f"{key}:a", limit=1, period=1, now=T) == 0
    assert ratelimit.take(f"{key}:b", limit=1, period=1, now=T) == 0
    assert ratelimit.take(f"{key}:a", limit=1, period=1, now=T) == pytest.approx(1.0)


def test_a_daily_window_is_a_utc_day(key):
    day = 86_400
    midnight = (T // day) * day
    noon = midnight + day / 2

    assert ratelimit.take(key, limit=1, period=day, now=noon) == 0
    assert ratelimit.take(key, limit=1, period=day, now=noon + 3600) == pytest.approx(day / 2 - 3600)
    assert ratelimit.take(key, limit=1, period=day, now=midnight + day) == 0


def test_a_full_window_stays_full(key):
    ratelimit.take(key, limit=1, period=60, now=T)

    waits = [ratelimit.take(key, limit=1, period=60, now=T + s) for s in (1, 2, 3)]

    assert all(wait > 0 for wait in waits)
    assert ratelimit.take(key, limit=1, period=60, now=T + 60 - (T % 60)) == 0


def test_without_a_clock_it_uses_the_current_time(key):
    assert ratelimit.take(key, limit=1, period=3600) == 0
    wait = ratelimit.take(key, limit=1, period=3600)
    assert 0 < wait <= 3600


def test_the_database_backend_keeps_one_row_per_window(settings, db):
    settings.REDIS_URL = ""
    name = f"test:{uuid.uuid4().hex}"

    for _ in range(5):
        ratelimit.take(name, limit=3, period=1, now=T)
    ratelimit.take(name, limit=3, period=1, now=T + 1)

    rows = list(RateWindow.objects.filter(key=name).order_by("window_start").values_list("window_start", "count"))
    assert rows == [(int(T), 3), (int(T) + 1, 1)]


def test_old_database_windows_are_purged(settings, db):
    settings.REDIS_URL = ""
    ratelimit.take("old", limit=1, period=1, now=T)
    ratelimit.take("recent", limit=1, period=1, now=T + 100)

    deleted = ratelimit.purge_old_windows(older_than=50, now=T + 100)

    assert deleted == 1
    assert list(RateWindow.objects.values_list("key", flat=True)) == ["recent"]


def test_a_sliding_period_never_holds_more_than_the_limit_in_any_span(key):
    """Session-less pace (issue 11, item 9): uses every half second for 200 s, limit 30 a minute.
    Fixed windows let 30 through at the end of one window and 30 more at the start of the next."""
    times = [T + 0.5 * n for n in range(400)]
    admitted = [t for t in times if ratelimit.take_sliding(key, limit=30, period=60, now=t) == 0]

    assert max(sum(1 for t in admitted if start <= t < start + 60) for start in admitted) <= 30
    assert len(admitted) >= 90  # the limit is used, not merely kept: about 30 every 61 s


def test_a_sliding_period_says_when_the_next_use_fits(key):
    for _ in range(5):
        assert ratelimit.take_sliding(key, limit=5, period=60, now=T + 0.25) == 0

    assert ratelimit.take_sliding(key, limit=5, period=60, now=T + 10.25) == pytest.approx(50.75)
    assert ratelimit.take_sliding(key, limit=5, period=60, now=T + 61) == 0
