"""The project's URL map: the top of the layers, so it may import every app."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from chats import agent_api
from chats import public_api
from chats import erasure_api, simulator
from chats.calls import urls as urls_calls
from chats import views as agent_views
from chats.inbound import twilio_inbound
from portal import roles
from portal.health import healthz
from portal.monitoring import urls as urls_monitoring
from portal.monitoring.exporter import metrics_view
from portal.reports import urls as urls_reports
from sms import api as sms_api
from sms import consent_api
from sms.views import twilio_status

API = r"^apps/api/v1/"
# Any path segment: the views answer a malformed id with the API's JSON 404, not an HTML page.
ID = r"(?P<chat_id>[^/]+)"

urlpatterns = [
    path("", roles.home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("sms/twilio/inbound/", twilio_inbound, name="twilio-inbound"),
    path("sms/twilio/status/", twilio_status, name="twilio-status"),
    path("simulator/", simulator.simulator_page, name="simulator"),
    path("simulator/send/", simulator.simulator_send, name="simulator-send"),
    path("simulator/messages/", simulator.simulator_messages, name="simulator-messages"),
    path("simulator/media/<str:name>", simulator.simulator_media, name="simulator-media"),
    path("agent/", agent_views.adapter, name="agent"),
    path("agent/media/<int:media_id>/", agent_api.media_file, name="agent-media"),
    path("apps/api/v1/agent/state", agent_api.StateView.as_view()),
    path("apps/api/v1/agent/status", agent_api.StatusView.as_view()),
    path("apps/api/v1/agent/stats", agent_api.StatsView.as_view()),
    path("apps/api/v1/agent/outbound", agent_api.OutboundView.as_view()),
    path("apps/api/v1/agent/transfer-targets", agent_api.TransferTargetsView.as_view()),
    path("apps/api/v1/agent/offers/<int:chat_id>/accept", agent_api.AcceptView.as_view()),
    path("apps/api/v1/agent/chats/<int:chat_id>/messages", agent_api.MessagesView.as_view()),
    path("apps/api/v1/agent/chats/<int:chat_id>/transfer", agent_api.TransferView.as_view()),
    path("apps/api/v1/agent/chats/<int:chat_id>/end", agent_api.EndView.as_view()),
    path("apps/api/v1/agent/chats/<int:chat_id>/do-not-contact", agent_api.DoNotContactView.as_view()),
    path("apps/api/v1/agent/chats/<int:chat_id>/read", agent_api.ReadView.as_view()),
    path("apps/api/v1/agent/chats/<int:chat_id>/contact", agent_api.ContactView.as_view()),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The public API (SPEC A): each path answers with and without its trailing slash.
    re_path(API + r"sms/?$", public_api.ApiSmsView.as_view(), name="api-sms"),
    re_path(API + r"sessionless_sms/?$", sms_api.SessionlessSmsView.as_view(), name="api-sessionless"),
    re_path(API + r"consent/?$", consent_api.ConsentView.as_view(), name="api-consent"),
    re_path(API + r"consumers/erase/?$", erasure_api.EraseView.as_view(), name="api-consumer-erase"),
    re_path(
        API + r"sessionless_sms/(?P<request_id>[^/]+)/?$",
        sms_api.SessionlessStatusView.as_view(),
        name="api-sessionless-status",
    ),
    re_path(API + r"chats/?$", public_api.ChatListView.as_view(), name="api-chats"),
    re_path(API + "chats/" + ID + r"/?$", public_api.ChatDetailView.as_view(), name="api-chat"),
    re_path(API + "chats/" + ID + r"/messages/?$", public_api.ChatMessagesView.as_view(), name="api-chat-messages"),
    re_path(
        API + "chats/" + ID + r"/media/(?P<media_id>[^/]+)/?$",
        public_api.ChatMediaView.as_view(),
        name="api-chat-media",
    ),
    re_path(API + r"schema/?$", SpectacularAPIView.as_view(), name="api-schema"),
    re_path(API + r"docs/?$", SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html"), name="api-docs"),
    re_path(API + r"docs/swagger/?$", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-swagger"),
]

# Blended SMS (SPEC B1–B3): Twilio Voice webhooks, the JSON IVR API, the agent's call actions.
urlpatterns += urls_calls.urlpatterns
# The supervisors' live monitor (SPEC M1–M3).
urlpatterns += urls_monitoring.urlpatterns
# The supervisors' reports, their CSV and their API (SPEC M4).
urlpatterns += urls_reports.urlpatterns
