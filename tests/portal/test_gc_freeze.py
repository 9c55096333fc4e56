"""A long-running process's startup objects are kept out of the garbage collector's scans
(portal.gc_freeze): a full collection then scans only what requests and tasks created since,
instead of stalling every request of the process for the ~150,000 objects Django and the portal
loaded (the webhook's p99, docs/performance.md)."""
import gc
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django_q.signals import post_spawn

# A fresh process, as `portal.web` is when its application is loaded.
STARTUP = """
import gc, json, sys, weakref
import django
django.setup()
from portal.gc_freeze import freeze_startup
views_before = "chats.inbound" in sys.modules
scanned_before = len(gc.get_objects(generation=2))
freeze_startup()
scanned_after = len(gc.get_objects(generation=2))


class Node:
    pass


cycle = Node()
cycle.me = cycle  # garbage only the cyclic collector frees, made after the freeze
later = weakref.ref(cycle)
del cycle
kept = [[n] for n in range(10_000)]  # new objects, as requests make: the collector runs by itself
print(json.dumps({
    "views_before": views_before,
    "views_after": "chats.inbound" in sys.modules,
    "scanned_before": scanned_before,
    "frozen": gc.get_freeze_count(),
    "scanned_after": scanned_after,
    "later_collected": later() is None,
}))
"""


def test_after_startup_a_full_collection_scans_only_what_came_later():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run([sys.executable, "-c", STARTUP], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # the views (the inbound webhook's among them) are loaded before the freeze, not at the first request
    assert not seen["views_before"] and seen["views_after"]
    assert seen["frozen"] > seen["scanned_before"]  # everything loaded so far is frozen …
    assert seen["scanned_after"] < seen["frozen"] // 20  # … and a full collection no longer scans it
    assert seen["later_collected"]  # what the process makes later is collected as before, unasked


@pytest.fixture
def unfrozen():
    """The test process's objects back under the collector afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_task_worker_freezes_when_django_q2_has_started_it(unfrozen):
    assert gc.get_freeze_count() == 0
    post_spawn.send(sender="django_q", proc_name="Process-1:1")
    assert gc.get_freeze_count() > 0
