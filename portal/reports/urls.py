"""The reports' pages, CSV and API (SPEC M4)."""
from django.urls import path, re_path

from portal.reports import views

urlpatterns = [
    path("reports/", views.index, name="reports"),
    path("reports/<slug:name>/", views.report_page, name="report"),
    path("reports/<slug:name>.csv", views.report_csv, name="report-csv"),
    re_path(r"^apps/api/v1/reports/(?P<name>[^/]+)/?$", views.ReportApiView.as_view(), name="api-report"),
]
