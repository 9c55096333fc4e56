"""The audit trail (SPEC R4), kept by django-auditlog (its middleware names the person, its
registry — `settings.AUDITLOG_INCLUDE_TRACKING_MODELS` — says which models): this module holds
what Tern adds: secrets hidden entirely, and the filtered list supervisors and admins read
(/monitor/audit/)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Paginator
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

PAGE_SIZE = 50
HIDDEN = "(secret, not shown)"
ACTIONS = {LogEntry.Action.CREATE: "added", LogEntry.Action.UPDATE: "changed", LogEntry.Action.DELETE: "deleted"}


def hide_secret(value) -> str:
    """AUDITLOG_MASK_CALLABLE: auditlog's own mask keeps half a secret; nothing of one is shown."""
    return HIDDEN


@dataclass
class AuditFilters:
    model: int | None = None  # a content type id
    actor: str = ""
    start: dt.date | None = None
    end: dt.date | None = None
    q: str = ""

    @classmethod
    def from_params(cls, params) -> "AuditFilters":
        def day(name):
            try:
                return dt.date.fromisoformat(params.get(name, ""))
            except ValueError:
                return None

        model = params.get("model", "")
        return cls(
            model=int(model) if model.isdigit() else None,
            actor=params.get("actor", "").strip(),
            start=day("start"),
            end=day("end"),
            q=params.get("q", "").strip(),
        )

    def entries(self):
        rows = LogEntry.objects.select_related("actor", "content_type").order_by("-timestamp", "-pk")
        rows = rows.exclude(action=LogEntry.Action.ACCESS)
        if self.model:
            rows = rows.filter(content_type_id=self.model)
        if self.actor:
            rows = rows.filter(actor__username=self.actor)
        zone = timezone.get_current_timezone()
        if self.start:
            rows = rows.filter(timestamp__gte=dt.datetime.combine(self.start, dt.time.min, tzinfo=zone))
        if self.end:
            rows = rows.filter(timestamp__lt=dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time.min, tzinfo=zone))
        if self.q:
            rows = rows.annotate(_changes=Cast("changes", TextField())).filter(
                Q(object_repr__icontains=self.q) | Q(_changes__icontains=self.q)
            )
        return rows


def audit_page(params) -> dict:
    """One page of the trail, newest first, with what the filters offer."""
    filters = AuditFilters.from_params(params)
    page = Paginator(filters.entries(), PAGE_SIZE).get_page(params.get("page"))
    tracked = LogEntry.objects.values_list("content_type_id", flat=True).distinct()
    return {
        "filters": filters,
        "page": page,
        "entries": [_entry(e) for e in page.object_list],
        "models": sorted(
            ((ct.pk, str(ct.model_class()._meta.verbose_name).capitalize()) for ct in ContentType.objects.filter(pk__in=tracked) if ct.model_class()),
            key=lambda item: item[1],
        ),
        "actors": sorted(set(LogEntry.objects.exclude(actor=None).values_list("actor__username", flat=True))),
    }


def _entry(entry: LogEntry) -> dict:
    model = entry.content_type.model_class()
    return {
        "at": entry.timestamp,
        "who": entry.actor.get_username() if entry.actor else "system",
        "what": ACTIONS.get(entry.action, "changed"),
        "kind": str(model._meta.verbose_name) if model else entry.content_type.model,
        "object": entry.object_repr,
        "changes": [
            {"field": field, "old": _shown(values[0]), "new": _shown(values[1])}
            for field, values in sorted((entry.changes_dict or {}).items())
            if field not in ("id",) and not (entry.action == LogEntry.Action.CREATE and values[1] in (None, "", "[]"))
        ],
    }


def _shown(value) -> str:
    if value is None or value == "None":
        return "—"
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"
