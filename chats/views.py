"""The agent adapter page (/agent/). The page itself is static; it loads its state over REST and
listens on /ws/agent/."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from portal.models import AgentProfile


def adapter_policy(request) -> str:
    """The adapter's Content-Security-Policy: its own scripts, styles and pictures only, no
    inline script, and connections to this host alone — its REST API and its websocket (named
    with its scheme, as older browsers do not read 'self' as ws:/wss:)."""
    host = request.get_host()
    socket = f"{'wss' if request.is_secure() else 'ws'}://{host}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob:; connect-src 'self' {socket}; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


@login_required
@ensure_csrf_cookie
def adapter(request):
    agent = AgentProfile.objects.filter(user=request.user).first()
    if agent is None:
        return render(request, "agent/not_an_agent.html", status=403)
    response = render(request, "agent/index.html", {"agent": agent})
    response["Content-Security-Policy"] = adapter_policy(request)
    return response
