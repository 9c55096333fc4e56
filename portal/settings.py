"""Tern settings, read from the environment (see README, "Environment").

Nothing set means the embedded default: a SQLite file in var/, the in-memory channel layer,
django-q2's ORM broker and the local SMS provider.
"""
import os
import sys
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


INSECURE_DEFAULT_SECRET_KEY = "tern-insecure-development-key-set-SECRET_KEY-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY") or INSECURE_DEFAULT_SECRET_KEY
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# The URL Twilio calls, used to check X-Twilio-Signature when the portal sits behind a proxy.
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "").rstrip("/")
CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL] if PUBLIC_BASE_URL.startswith("http") else []

# Behind a TLS proxy (nginx, a load balancer) in production: one switch (issue 17). The proxy sets
# X-Forwarded-Proto; cookies are secure; plain HTTP is redirected except the health check (the
# proxy's own probe) and Twilio's webhooks (a redirect would break their signature); HSTS for a
# year with subdomains. Preloading is a separate, lasting decision (HSTS_PRELOAD).
HTTPS = env_bool("HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$", r"^sms/twilio/"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS") or 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]  # "not preloaded": the operator's choice, documented

# GET /metrics (Prometheus): with a token, readable by whoever sends it as a bearer token; without
# one, only by a client on the same machine talking to the process directly.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

SMS_PROVIDER = os.environ.get("SMS_PROVIDER", "local").strip().lower() or "local"
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
# Empty means the SDK's own default (https://api.twilio.com); tests point it at a loopback fake.
TWILIO_API_BASE = os.environ.get("TWILIO_API_BASE", "").rstrip("/")

REDIS_URL = os.environ.get("REDIS_URL", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # ReDoc and Swagger UI served from static files, nothing fetched
    "channels",
    "django_q",
    "auditlog",  # the audit trail of configuration changes (SPEC R4): settings.AUDITLOG_INCLUDE_TRACKING_MODELS
    # Layers, lowest first: portal <- queues <- sms <- chats (admin autodiscovery follows this order).
    "portal",
    "queues",
    "sms",
    "chats",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "auditlog.middleware.AuditlogMiddleware",  # who made a change (the audit trail's actor)
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.singletons.singletons_per_request",
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR = Path(os.environ.get("TERN_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# The task cluster forks its workers: a connection pool (its connections and its thread) does
# not survive a fork, so it and the sweeper keep one persistent connection per process instead.
FORKING_PROCESS = os.environ.get("TERN_PROCESS_ROLE", "") in {"tasks", "sweeper"} or sys.argv[1:2] == ["qcluster"]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'tern.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60" if FORKING_PROCESS else "0")),
        conn_health_checks=True,
    )
}
if (
    DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    and env_bool("DB_POOL", True)
    and not FORKING_PROCESS
):
    # The web process reuses server connections through psycopg's pool (a new PostgreSQL
    # connection per request costs more than the request). Persistent connections (CONN_MAX_AGE)
    # would leak under ASGI, where every request runs in a thread of its own and each thread keeps
    # its connection; the pool hands a connection back when the request ends. It needs
    # CONN_MAX_AGE = 0.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # No health check at each checkout: it is a round trip to the server per request (a quarter
    # of a webhook's time under a burst). A connection that died in the pool fails its request
    # once and is dropped; the inbound webhook then stores its text on a fresh one
    # (chats.intake.store_text).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "10")),
        "timeout": 10,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process keeps its connections too: a request's thread serves later requests
    # (portal.http_threads), and opening the file, setting WAL and, as the last connection to
    # close, checkpointing at the end was two thirds of a webhook's CPU (in-process: 4.5 → 1.5–2.3
    # ms). An idle connection holds no lock that blocks another process.
    if "DB_CONN_MAX_AGE" not in os.environ:
        DATABASES["default"]["CONN_MAX_AGE"] = 60
    # The web server and the q cluster write to the same file: WAL lets readers and one writer
    # overlap, IMMEDIATE takes the write lock up front instead of failing half-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # No read timeout: redis-py 8 gives every connection a 5 s one by default, which
            # closed each agent's websocket after 5 s without an event (channels_redis #422).
            # Capacity: how many events may wait for one socket before channels_redis drops the
            # next ones silently. Its default of 100 lost assignments under a burst (every agent
            # of a queue hears each chat that starts or stops waiting): sized for bursts.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": "tern",
                "capacity": int(os.environ.get("CHANNEL_CAPACITY", "2000")),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": int(os.environ.get("CHANNEL_CAPACITY", "2000"))},
        }
    }

Q_CLUSTER = {
    "name": "tern",
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": 60,
    "retry": 90,
    "max_attempts": 1,
    "catch_up": False,
    "scheduler_interval": 5,
    # Successful results are not stored: each stored one costs an insert plus a locked clean-up
    # of old rows; failures still are (admin › Failed tasks), with the rows they concern.
    "save_limit": -1,
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = 0.2  # the ORM broker: how soon an idle worker sees a new task (the demo feels it)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"  # portal.roles.home: each person to the place for their role
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
# The portal's time zone: "today" on the monitor, the reports' days, the heatmap's hours.
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from the app and project static folders: no collectstatic step for the demo.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

# The per-credential throttle of the public API counts in the cache: Redis when set, so every
# web process shares the count; else this process's memory (the embedded default has one).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "tern",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tern"}}

# Requests per API credential, "N/second|minute|hour|day" (429 with Retry-After above it).
API_RATE_LIMIT = os.environ.get("API_RATE_LIMIT", "600/minute")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.authentication.ApiCredentialAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Tern API",
    "DESCRIPTION": (
        "Outbound SMS, session-less SMS and the Chats resource of the Tern SMS portal.\n\n"
        "**Authentication**: HTTP Basic with an API credential — its key as the user name, its secret as "
        "the password (admin › API credentials, or `manage.py create_api_credential NAME`). A missing, wrong "
        "or revoked credential gets 401.\n\n"
        "**Errors**: 4xx with `{\"error\": \"<message>\"}`; each endpoint lists its messages.\n\n"
        "**Rate limit**: requests per credential (`API_RATE_LIMIT`, default 600 a minute); above it, 429 "
        "with a `Retry-After` header in seconds.\n\n"
        "**Paths** answer with and without a trailing slash.\n\n"
        "**Event webhooks**: chat and message events are POSTed to the URLs set in the admin, signed "
        "with HMAC-SHA256 (see docs/webhooks.md)."
    ),
    "VERSION": "v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": r"/apps/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"AnswerTypeEnum": ["manual", "auto"]},
    # The agent adapter's own endpoints (session login, /apps/api/v1/agent/) are not the public API.
    "PREPROCESSING_HOOKS": ["portal.public_api.public_endpoints_only"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "portal.logs.JsonFormatter"},  # LOG_FORMAT=json: one object per line
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if os.environ.get("LOG_FORMAT", "").strip().lower() == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# The audit trail (SPEC R4, django-auditlog): every change to the configuration — settings,
# queues and their texts, numbers, command words, rules, credentials, webhooks, agents, teams,
# users — with who, when and the fields (old → new). Secrets are masked; what changes by itself
# all day (an agent's presence, a credential's last use, a number's last check) is left out.
_PRESENCE = ["status", "status_changed_at", "last_seen_at", "connection_count", "last_assignment_at"]
AUDITLOG_INCLUDE_TRACKING_MODELS = (
    "portal.ChatSettings",
    "portal.InCallSmsSettings",
    "portal.OperationSettings",
    "portal.BlendingMessages",
    "portal.PresetMessage",
    "portal.ChatShortcut",
    {"model": "portal.ApiCredential", "exclude_fields": ["last_used_at"], "mask_fields": ["secret_hash"]},
    {"model": "portal.EventWebhook", "mask_fields": ["signing_secret"]},
    {"model": "portal.AgentProfile", "exclude_fields": _PRESENCE},
    {"model": "portal.Team", "m2m_fields": {"agents"}},
    {"model": "queues.Queue", "m2m_fields": {"agents", "teams"}},
    "queues.QueueMessages",
    "queues.QueueBlendingMessages",
    "queues.MenuCommand",
    "queues.OpeningHours",
    "queues.ClosedDate",
    {"model": "sms.PhoneNumber", "exclude_fields": ["verified_at"]},
    "sms.QueueNumber",
    "sms.QuietHoursRule",
    {"model": "auth.User", "exclude_fields": ["last_login"], "mask_fields": ["password"]},
)
AUDITLOG_USE_FK_STRING_REPRESENTATION = True
AUDITLOG_MASK_CALLABLE = "portal.audit.hide_secret"
AUDITLOG_STORE_JSON_CHANGES = True
