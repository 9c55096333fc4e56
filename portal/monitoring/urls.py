"""The supervisors' pages and socket (SPEC M)."""
from django.urls import path

from portal.monitoring import views
from portal.monitoring.consumers import SupervisorConsumer

urlpatterns = [
    path("monitor/", views.overview, name="monitor"),
    path("monitor/queues/", views.queues_page, name="monitor-queues"),
    path("monitor/agents/", views.agents_page, name="monitor-agents"),
    path("monitor/chats/", views.chats_page, name="monitor-chats"),
    path("monitor/chats/<int:chat_id>/", views.chat_page, name="monitor-chat"),
    path("monitor/messages/", views.messages_page, name="monitor-messages"),
    path("monitor/audit/", views.audit_page, name="monitor-audit"),
    path("monitor/state", views.state, name="monitor-state"),
]

websocket_urlpatterns = [path("ws/monitor/", SupervisorConsumer.as_asgi())]
