"""Test settings: the real settings, with tasks run inline and fast password hashing."""
import os
import urllib.parse

# Under pytest-xdist (CI runs the PostgreSQL + Redis phase in three workers) each worker gets a
# Redis database of its own, as pytest-django gives each its own test database: the workers'
# tests use the same phone numbers, API keys and channel groups, and would otherwise share
# sending-limit counters, throttles, the batch worker's wake flag and pushes. Set before the
# real settings read it, so the channel layer, django-q2 and the cache all follow.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", …; unset without xdist
if _WORKER and os.environ.get("REDIS_URL"):
    _parts = urllib.parse.urlsplit(os.environ["REDIS_URL"])
    _database = int(_parts.path.strip("/") or 0) + 1 + int(_WORKER.removeprefix("gw"))
    if _database >= 13:  # Redis has 16 databases; 13 is the topology test's (tests/portal/test_topology.py)
        raise RuntimeError(f"{_WORKER}: too many xdist workers for a Redis database each (would use {_database})")
    os.environ["REDIS_URL"] = urllib.parse.urlunsplit(_parts._replace(path=f"/{_database}"))

from portal.settings import *  # noqa: E402, F403
from portal.settings import Q_CLUSTER  # noqa: E402

# django-q2 reads this at import time: async_task() runs the task at once in the caller.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SMS_PROVIDER = "local"
