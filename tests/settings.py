"""Test settings: the real settings, with tasks run inline and fast password hashing."""
from portal.settings import *  # noqa: F403
from portal.settings import Q_CLUSTER

# django-q2 reads this at import time: async_task() runs the task at once in the caller.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SMS_PROVIDER = "local"
