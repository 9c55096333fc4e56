"""Browser pushes written by the task cluster and the sweeper on the embedded default, relayed by
the web process (portal.realtime)."""
from django.db import models


class RealtimeOutbox(models.Model):
    """Events published by a process that does not share the web process's in-memory channel
    layer (the task cluster and the sweeper on the embedded default); the web process relays
    them. Unused when REDIS_URL is set."""

    group = models.CharField(max_length=100)
    event = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
