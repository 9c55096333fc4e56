"""Who may take a chat of a queue (SPEC S5): agents assigned directly or through a team, available,
with the adapter open, below capacity; longest-idle first."""
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from portal.models import AgentProfile, AgentStatus
from queues.models import Queue


# Who can be given a chat at all (the rule, written once): available, with the adapter open.
ELIGIBLE = Q(status=AgentStatus.AVAILABLE, connection_count__gt=0)


def is_eligible(agent: AgentProfile) -> bool:
    """ELIGIBLE for one agent already read (a row just locked, to check again under the lock)."""
    return agent.status == AgentStatus.AVAILABLE and agent.connection_count > 0


def eligible_agents():
    return AgentProfile.objects.filter(ELIGIBLE)


def queue_agents(queue: Queue):
    return AgentProfile.objects.filter(Q(queues=queue) | Q(teams__queues=queue)).distinct()


def candidate_agents(queue: Queue, *, exclude_ids=()):
    """Agents of the queue who are available with the adapter open, longest-idle first. The
    chats layer adds the capacity check, since only it knows what holds an agent."""
    never = timezone.now() - timezone.timedelta(days=3650)
    return (
        AgentProfile.objects.filter(pk__in=queue_agents(queue).values("pk"))
        .exclude(pk__in=list(exclude_ids))
        .filter(ELIGIBLE)
        .order_by(Coalesce("last_assignment_at", never).asc(), "pk")
    )
