"""GET /healthz: 200 when the database answers, 503 when it does not; in JSON, with Redis's state
when REDIS_URL is set ("degraded" while it is away: the webhooks still store texts, pushes and
the work behind them wait for it)."""
import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal import shared_redis

log = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request):
    body = {"status": "ok", "database": "ok"}
    if settings.REDIS_URL:
        try:
            shared_redis.client().ping()
            body["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 — any failure to answer is "unavailable"
            log.warning("health check: Redis unavailable: %s", exc)
            body.update(status="degraded", redis="unavailable")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        log.error("health check: database unavailable: %s", exc)
        body.update(status="unavailable", database="unavailable")
        return JsonResponse(body, status=503)
    return JsonResponse(body)
