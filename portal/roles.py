"""Who is who (SPEC M): agents have an agent profile; supervisors hold `portal.view_monitoring`
(the "Supervisors" group holds it; superusers have every permission); admins are staff."""
from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.shortcuts import redirect

SUPERVISORS_GROUP = "Supervisors"
MONITORING_PERMISSION = "portal.view_monitoring"


def can_monitor(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(MONITORING_PERMISSION))


def is_agent(user) -> bool:
    return bool(user and user.is_authenticated and hasattr(user, "agent"))


def home_for(user) -> str:
    """Where `/` sends a signed-in person: admins to the admin, supervisors to the monitor,
    agents to the adapter."""
    if user.is_staff:
        return "/admin/"
    if can_monitor(user):
        return "/monitor/"
    return "/agent/"  # the adapter explains itself to a signed-in person who is not an agent


def home(request):
    """`/`: each person to the place for their role; anyone else to the sign-in page."""
    if not request.user.is_authenticated:
        return redirect("/accounts/login/?next=/")
    return redirect(home_for(request.user))


def ensure_supervisors_group(**kwargs) -> Group:
    """The "Supervisors" group with the monitoring permission (after every migrate; idempotent)."""
    group, _ = Group.objects.get_or_create(name=SUPERVISORS_GROUP)
    permission = Permission.objects.filter(content_type__app_label="portal", codename="view_monitoring").first()
    if permission is not None:
        group.permissions.add(permission)
    return group
