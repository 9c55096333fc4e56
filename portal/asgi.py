"""ASGI entry point: Django for HTTP (each request on a thread of its own, kept for later
requests: portal.http_threads; Twilio's SMS webhooks without the pages' middleware:
portal.webhook_asgi), counted for /metrics (portal.metrics), Channels for the agent's and the
supervisors' websockets."""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

from portal.http_threads import ThreadReusingHandler  # noqa: E402  (needs Django set up first)

django_asgi_app = ThreadReusingHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chats.ws_urls import websocket_urlpatterns  # noqa: E402
from portal.monitoring.urls import websocket_urlpatterns as monitor_sockets  # noqa: E402
from portal.metrics import measured  # noqa: E402
from portal.webhook_asgi import route_webhooks  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": measured(route_webhooks(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns + monitor_sockets))),
    }
)
