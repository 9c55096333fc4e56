"""GET /metrics: Tern in Prometheus' text format (issue 17, item 5).

Two kinds of figure:
- counted by the processes (portal.metrics): requests by view and status, the webhooks' latency,
  the provider's send latency — this machine's `serve`;
- read from the database at each scrape: pending inbound texts and the oldest one's age, outbound
  messages by status, chats waiting and the longest wait per queue, agents connected and by
  status, the task queue's depth — the same whichever process answers.

Who may read it: portal.metrics.refusal — with METRICS_TOKEN set, the bearer of the token;
without it, only a client on this machine talking to the process directly."""
from __future__ import annotations

import logging

from django.db.models import Count, Min, Q
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

from portal import metrics
from portal.models import AgentProfile, AgentStatus
from portal.monitoring.live import queues_now
from sms.models import InboundMessage, InboundState, MessageStatus, OutboundMessage

log = logging.getLogger(__name__)


class DatabaseFigures:
    """A collector reading the portal's state when scraped: a handful of aggregate queries."""

    def collect(self):
        now = timezone.now()
        inbound = InboundMessage.objects.aggregate(
            pending=Count("pk", filter=Q(state=InboundState.PENDING)),
            failed=Count("pk", filter=Q(state=InboundState.FAILED)),
            oldest=Min("received_at", filter=Q(state=InboundState.PENDING)),
        )
        yield GaugeMetricFamily(
            "tern_inbound_pending_texts", "Texts stored by the webhook and not yet handled.", value=inbound["pending"]
        )
        yield GaugeMetricFamily(
            "tern_inbound_oldest_pending_seconds",
            "Age of the oldest text not yet handled (0 when none waits).",
            value=(now - inbound["oldest"]).total_seconds() if inbound["oldest"] else 0,
        )
        yield GaugeMetricFamily(
            "tern_inbound_failed_texts", "Texts whose handling failed after every try (admin › Inbound texts).",
            value=inbound["failed"],
        )

        by_status = dict(OutboundMessage.objects.values_list("status").annotate(n=Count("pk")).order_by())
        outbound = GaugeMetricFamily("tern_outbound_messages", "Outbound messages by status.", labels=["status"])
        for status in MessageStatus.values:
            outbound.add_metric([status], by_status.get(status, 0))
        yield outbound

        waiting = GaugeMetricFamily("tern_queue_waiting_chats", "Chats waiting for an agent, per queue.", labels=["queue"])
        longest = GaugeMetricFamily(
            "tern_queue_longest_wait_seconds", "The longest wait now, per queue (0 when none waits).", labels=["queue"]
        )
        for queue in queues_now(now):
            waiting.add_metric([queue["name"]], queue["waiting"])
            longest.add_metric([queue["name"]], queue["longest_wait_seconds"])
        yield waiting
        yield longest

        agents = AgentProfile.objects.aggregate(
            connected=Count("pk", filter=Q(connection_count__gt=0)),
            **{status: Count("pk", filter=Q(status=status)) for status in AgentStatus.values},
        )
        yield GaugeMetricFamily(
            "tern_agents_connected", "Agents with at least one adapter open.", value=agents.pop("connected")
        )
        by_agent_status = GaugeMetricFamily("tern_agents", "Agents by status.", labels=["status"])
        for status, count in agents.items():
            by_agent_status.add_metric([status], count)
        yield by_agent_status

        depth = task_queue_depth()
        if depth is not None:
            yield GaugeMetricFamily("tern_task_queue_depth", "Tasks waiting in django-q2's broker.", value=depth)


def task_queue_depth() -> int | None:
    """The broker's queue length; None when the broker cannot be reached (Redis away): the other
    figures are still answered."""
    from django_q.brokers import get_broker

    try:
        return get_broker().queue_size()
    except Exception as exc:  # noqa: BLE001 — a broker that does not answer has no depth to show
        log.warning("metrics: the task broker did not answer: %s", exc)
        return None


@never_cache
@require_GET
def metrics_view(request):
    refused = metrics.refusal(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        authorization=request.headers.get("Authorization", ""),
        proxied="X-Forwarded-For" in request.headers,
    )
    if refused:
        status, text = refused
        response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.exposition(DatabaseFigures()), content_type=CONTENT_TYPE_LATEST)
