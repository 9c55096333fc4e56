"""One Redis client per process for the portal's own keys (the rate limiter's windows, the inbound
wake flag): redis-py's client is thread-safe and keeps a connection pool. Django's cache is not
used for these: under ASGI each request gets its own cache object, and with it a new connection."""
import functools

from django.conf import settings


def client():
    """The client for REDIS_URL (the URL is read each time, so a changed setting gets its own)."""
    return _client(settings.REDIS_URL)


@functools.lru_cache(maxsize=4)
def _client(url: str):
    import redis

    return redis.Redis.from_url(url)
