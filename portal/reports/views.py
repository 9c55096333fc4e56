"""The reports' pages, their CSV and their API (SPEC M4, issue 13 items 4 and 6). Every answer
reads the same `Report.rows()`, so the page's table, the CSV and the API's JSON hold the same
rows for the same filters."""
from __future__ import annotations

import csv
import datetime as dt
import io

from django.conf import settings
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from chats.serializers import masks_numbers_for
from portal.models import AgentProfile, Team
from portal.monitoring.metrics import DEFINITIONS
from portal.monitoring.views import supervisors_only
from portal.public_api import COMMON_ERRORS, ApiError, PublicApiView, error_response
from portal.reports import charts
from portal.reports.definitions import HISTORY_PAGE, REPORTS, Report, heatmap, history_chats
from portal.reports.filters import ReportError, ReportFilters, parse_filters
from queues.models import Queue


def _report(name: str) -> Report:
    report = REPORTS.get(name)
    if report is None:
        raise Http404("No such report.")
    return report


def _page_number(value) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def rows_for(report: Report, filters: ReportFilters, *, masked: bool, page: int | None = None) -> list[dict]:
    """The rows a page or the API shows: every row, or one page of Individual Chat History."""
    if report.name == "chat-history":
        return report.rows(filters, masked=masked, page=page or 1)
    return list(report.rows(filters, masked=masked))


@supervisors_only
def index(request):
    context = {"reports": REPORTS.values(), "section": "reports", "title": "Reports", "time_zone": settings.TIME_ZONE}
    return render(request, "reports/index.html", context)


@supervisors_only
def report_page(request, name: str):
    report = _report(name)
    context = {
        "report": report,
        "reports": REPORTS.values(),
        "section": "reports",
        "title": report.title,
        "params": request.GET,
        "teams": Team.objects.all(),
        "queue_names": sorted(Queue.objects.full_names().items(), key=lambda item: item[1]),
        "agents": AgentProfile.objects.order_by("display_name"),
        "definitions": DEFINITIONS,
    }
    try:
        filters = parse_filters(request.GET)
    except ReportError as error:
        return render(request, "reports/report.html", {**context, "error": str(error)}, status=400)
    page = _page_number(request.GET.get("page"))
    rows = rows_for(report, filters, masked=masks_numbers_for(request.user), page=page)
    chart_rows = report.chart_rows(filters) if report.chart_rows else rows
    context |= {
        "filters": filters,
        "rows": rows,
        "chart": charts.bar_chart(chart_rows, report.chart, filters),
        "csv_query": filters.query(),
    }
    if report.name == "calls-chats":
        context["heatmap"] = charts.heatmap_cells(heatmap(filters))
    if report.name == "chat-history":
        total = history_chats(filters).count()
        context |= {"page": page, "total": total, "has_next": page * HISTORY_PAGE < total, "has_previous": page > 1}
    return render(request, "reports/report.html", context)


CSV_ROWS_PER_CHUNK = 500  # rows written into one chunk of the streamed answer


def csv_value(value):
    """Unformatted: numbers as numbers, times ISO 8601 with their offset, nothing as empty."""
    if value is None:
        return ""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def json_value(value):
    """As csv_value, but nothing stays null."""
    return None if value is None else csv_value(value)


@supervisors_only
def report_csv(request, name: str):
    report = _report(name)
    try:
        filters = parse_filters(request.GET)
    except ReportError as error:
        return render(request, "reports/report.html", {"report": report, "error": str(error), "section": "reports", "title": report.title}, status=400)
    masked = masks_numbers_for(request.user)
    rows = report.rows(filters, masked=masked)  # Individual Chat History: streamed, every chat
    columns = [column.key for column in report.columns]

    def chunks():
        """The header, then the rows CSV_ROWS_PER_CHUNK at a time: memory stays flat however
        many rows, and each chunk is one write to the socket, not one per row."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")  # a byte-order mark, so spreadsheet programs read UTF-8
        writer.writerow([column.label for column in report.columns])
        for n, row in enumerate(rows, 1):
            writer.writerow([csv_value(row.get(key)) for key in columns])
            if n % CSV_ROWS_PER_CHUNK == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = StreamingHttpResponse(chunks(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="tern-{report.name}-{filters.start}-to-{filters.end}.csv"'
    return response


# --- the public API: GET /apps/api/v1/reports/<name> ------------------------------------------------


class ReportFiltersSerializer(serializers.Serializer):
    start = serializers.DateField(required=False, help_text="First day, YYYY-MM-DD, portal time zone. Default: 6 days before end.")
    end = serializers.DateField(required=False, help_text="Last day (inclusive). Default: today. At most 366 days in all.")
    queue = serializers.IntegerField(required=False, help_text="A queue's id.")
    team = serializers.IntegerField(required=False, help_text="A team's id.")
    agent = serializers.IntegerField(required=False, help_text="An agent profile's id.")
    page = serializers.IntegerField(required=False, help_text=f"chat-history only: {HISTORY_PAGE} chats per page, from 1.")


class ReportApiView(PublicApiView):
    @extend_schema(
        operation_id="get_report",
        summary="A report's rows",
        description=(
            "The same rows as the report's page and CSV for the same filters (SPEC M4). Reports: "
            + ", ".join(f"`{name}` ({report.title})" for name, report in REPORTS.items())
            + f". `chat-history` answers {HISTORY_PAGE} chats per page with `count` and `next_page`."
        ),
        parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH, enum=list(REPORTS)), ReportFiltersSerializer],
        responses={
            200: inline_serializer(
                "ReportRows",
                {
                    "report": serializers.CharField(),
                    "title": serializers.CharField(),
                    "filters": serializers.DictField(),
                    "columns": serializers.ListField(child=serializers.DictField()),
                    "rows": serializers.ListField(child=serializers.DictField()),
                    "count": serializers.IntegerField(required=False),
                    "next_page": serializers.IntegerField(required=False, allow_null=True),
                },
            ),
            400: error_response(
                "A filter cannot be used.",
                ("Reversed", "The range is reversed: start 2030-03-05 is after end 2030-03-01."),
                ("Too long", "The range is 400 days; a report covers at most 366."),
                ("Unknown queue", "There is no queue with id 99."),
            ),
            404: error_response("No report of that name.", ("Unknown report", "No such report.")),
            **COMMON_ERRORS,
        },
        tags=["Reports"],
    )
    def get(self, request, name: str):
        report = REPORTS.get(name)
        if report is None:
            raise ApiError("No such report.", status_code=404)
        try:
            filters = parse_filters(request.query_params)
        except ReportError as error:
            raise ApiError(str(error)) from None
        page = _page_number(request.query_params.get("page"))
        rows = rows_for(report, filters, masked=False, page=page)
        body = {
            "report": report.name,
            "title": report.title,
            "filters": filters.query(),
            "columns": [{"key": c.key, "label": c.label, "kind": c.kind} for c in report.columns],
            "rows": [{c.key: json_value(row.get(c.key)) for c in report.columns} for row in rows],
        }
        if report.name == "chat-history":
            count = history_chats(filters).count()
            body |= {"count": count, "next_page": page + 1 if page * HISTORY_PAGE < count else None}
        return Response(body)
