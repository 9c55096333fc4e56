"""Agent presence kept in the database, so every process agrees (SPEC S5)."""
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from portal.models import AgentProfile, AgentStatus, AgentStatusChange
from portal.realtime import SUPERVISORS, publish_on_commit


def _status_changed(agent_ids: list[int], status: str, at) -> None:
    """The history row of each change (SPEC M1's "for how long", M4's occupancy) and, after
    commit, one event telling the supervisors' monitor which agents changed."""
    AgentStatusChange.objects.bulk_create(AgentStatusChange(agent_id=pk, status=status, at=at) for pk in agent_ids)
    publish_on_commit(SUPERVISORS, {"type": "agent.updated", "agent_ids": sorted(agent_ids), "status": status})


def set_agent_status(*, agent: AgentProfile, status: str) -> bool:
    """Returns True when the agent became available (routing should run for their queues)."""
    if status not in AgentStatus.values:
        raise ValueError(f"Unknown status {status!r}.")
    with transaction.atomic():
        agent = AgentProfile.objects.select_for_update().get(pk=agent.pk)
        became_available = status == AgentStatus.AVAILABLE and agent.status != AgentStatus.AVAILABLE
        if agent.status != status:
            agent.status = status
            agent.status_changed_at = timezone.now()
            agent.save(update_fields=["status", "status_changed_at"])
            _status_changed([agent.pk], status, agent.status_changed_at)
    return became_available


def agent_connected(*, agent: AgentProfile) -> bool:
    """An adapter connection opened. An offline agent becomes available. Returns True when the
    agent can now be given chats and could not before (routing should run for their queues): they
    became available, or were available with no adapter open — closed within the offline grace,
    while chats that came meanwhile waited for an open one."""
    now = timezone.now()
    AgentProfile.objects.filter(pk=agent.pk).update(connection_count=F("connection_count") + 1, last_seen_at=now)
    agent.refresh_from_db(fields=["status", "connection_count", "last_seen_at"])
    if agent.status == AgentStatus.OFFLINE:
        return set_agent_status(agent=agent, status=AgentStatus.AVAILABLE)
    return agent.status == AgentStatus.AVAILABLE and agent.connection_count == 1


def agent_disconnected(*, agent: AgentProfile) -> None:
    AgentProfile.objects.filter(pk=agent.pk).update(
        connection_count=Greatest(F("connection_count") - 1, 0), last_seen_at=timezone.now()
    )


OFFLINE_GRACE_SECONDS = 30
HEARTBEAT_STALE_SECONDS = 90


def touch_agent(*, agent_id: int) -> None:
    """A heartbeat from an open adapter (every 20 s)."""
    AgentProfile.objects.filter(pk=agent_id).update(last_seen_at=timezone.now())


def sweep_presence(now=None) -> int:
    """Agents whose last adapter closed more than a grace period ago go offline; connections
    whose server died (no heartbeat for 90 s) are forgotten. An agent marked available or away
    without ever opening the adapter (last_seen_at empty, e.g. set in the admin) goes offline
    once the grace period has passed since that change. Returns how many agents changed."""
    now = now or timezone.now()
    stale = AgentProfile.objects.filter(
        connection_count__gt=0, last_seen_at__lt=now - timezone.timedelta(seconds=HEARTBEAT_STALE_SECONDS)
    )
    stale_ids = set(stale.values_list("pk", flat=True))
    if stale_ids:
        stale.filter(pk__in=stale_ids).update(connection_count=0)
    grace = now - timezone.timedelta(seconds=OFFLINE_GRACE_SECONDS)
    gone = AgentProfile.objects.filter(
        Q(last_seen_at__lt=grace) | Q(last_seen_at__isnull=True, status_changed_at__lt=grace),
        connection_count=0,
    ).exclude(status=AgentStatus.OFFLINE)
    gone_ids = set(gone.values_list("pk", flat=True))
    if gone_ids:
        gone.filter(pk__in=gone_ids).update(status=AgentStatus.OFFLINE, status_changed_at=now)
        _status_changed(sorted(gone_ids), AgentStatus.OFFLINE, now)
    return len(stale_ids | gone_ids)
