"""Settings for running `manage.py serve` in tests/portal/test_serve.py: the real settings with a
shared (Redis) channel layer declared, as several web processes need. Nothing in that test sends
an event, so no Redis is needed: channels_redis connects only when used."""
from portal.settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:6379/15"], "prefix": "tern-serve-test"},
    }
}
