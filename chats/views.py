"""The agent adapter page (/agent/). The page itself is static; it loads its state over REST and
listens on /ws/agent/."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from portal.models import AgentProfile


@login_required
@ensure_csrf_cookie
def adapter(request):
    agent = AgentProfile.objects.filter(user=request.user).first()
    if agent is None:
        return render(request, "agent/not_an_agent.html", status=403)
    return render(request, "agent/index.html", {"agent": agent})
