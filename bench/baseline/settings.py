"""Settings of the baseline webhook: the same Django, the same database kind as Tern's run.

BASELINE_DATABASE_URL (postgres://…, with psycopg's pool as Tern's web process has it) or
BASELINE_SQLITE (a file path, WAL and IMMEDIATE transactions as Tern's SQLite, the connections
kept as Tern's web process keeps them)."""
import os

import dj_database_url

SECRET_KEY = "baseline-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["baseline"]
MIDDLEWARE = []
ROOT_URLCONF = "baseline.urls"
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "bench-token")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}

if os.environ.get("BASELINE_DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["BASELINE_DATABASE_URL"])}
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 1, "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "10")), "timeout": 10}
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BASELINE_SQLITE", "/tmp/tern-baseline.sqlite3"),
            "CONN_MAX_AGE": 60,
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
