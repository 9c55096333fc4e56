"""ASGI entry point: Django for HTTP (Twilio's SMS webhooks without the pages' middleware,
portal.webhook_asgi), counted for /metrics (portal.metrics), Channels for the agent's and the supervisors' websockets."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_asgi_app = get_asgi_application()

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
