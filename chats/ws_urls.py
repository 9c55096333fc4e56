"""The websocket URLs (agent picking is queues.routing)."""
from django.urls import path

from chats.consumers import AgentConsumer

websocket_urlpatterns = [path("ws/agent/", AgentConsumer.as_asgi())]
