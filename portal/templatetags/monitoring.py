"""Figures as supervisors read them: durations as 0:42, 12:05, 1:02:07; rates as 93.5 %."""
from urllib.parse import urlencode

from django import template

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """Seconds as m:ss or h:mm:ss; an empty figure as an en dash."""
    if seconds is None or seconds == "":
        return "–"
    seconds = max(0, int(round(float(seconds))))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def percent(value) -> str:
    return "–" if value is None else f"{value:.1f} %"


@register.filter
def cell(value, kind: str) -> str:
    """A report's cell as the page shows it (the CSV writes the raw value)."""
    if value is None or value == "":
        return "–"
    if kind == "seconds":
        return duration(value)
    if kind == "percent":
        return percent(value)
    if kind == "datetime":
        return value.strftime("%Y-%m-%d %H:%M")
    if kind == "date":
        return value.isoformat()
    return str(value)


@register.filter
def get(row: dict, key: str):
    return row.get(key)


@register.filter
def urlencode_dict(values: dict) -> str:
    return urlencode(values or {})
