"""Who may take a chat of a queue (SPEC S5): agents assigned directly or through a team, available,
with the adapter open, below capacity; longest-idle first."""
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from portal.models import AgentProfile, AgentStatus
from queues.models import Queue


def queue_agents(queue: Queue):
    return AgentProfile.objects.filter(Q(queues=queue) | Q(teams__queues=queue)).distinct()


def candidate_agents(queue: Queue, *, exclude_ids=()):
    """Agents of the queue who are available with the adapter open, longest-idle first. The
    chats layer adds the capacity check, since only it knows what holds an agent."""
    never = timezone.now() - timezone.timedelta(days=3650)
    return (
        AgentProfile.objects.filter(pk__in=queue_agents(queue).values("pk"))
        .exclude(pk__in=list(exclude_ids))
        .filter(status=AgentStatus.AVAILABLE, connection_count__gt=0)
        .order_by(Coalesce("last_assignment_at", never).asc(), "pk")
    )
