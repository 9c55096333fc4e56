"""A report's chart drawn by the server as SVG (no script, no CDN): bars with their value, each a
link to the chats behind it; and the hour × weekday heatmap. This module computes the geometry;
templates/reports/_bar_chart.html and _heatmap.html draw it."""
from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from portal.reports.filters import ReportFilters

WIDTH = 960
HEIGHT = 220
LABELS_AT_MOST = 16
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def chats_behind(filters: ReportFilters, opens: str, key) -> str:
    """Individual Chat History narrowed to what a bar counts: its agent, queue or day."""
    query = filters.query()
    if opens == "day":
        query["start"] = query["end"] = key.isoformat()
    elif key is not None:
        query[opens] = str(key)
    return "/reports/chat-history/?" + urlencode(query)


def bar_chart(rows: list[dict], chart, filters: ReportFilters) -> dict:
    values = [float(row.get(chart.value) or 0) for row in rows]
    top = max(values, default=0) or 1
    step = WIDTH / max(len(rows), 1)
    every = max(1, -(-len(rows) // LABELS_AT_MOST))
    bars = []
    for index, (row, value) in enumerate(zip(rows, values)):
        height = round(HEIGHT * value / top, 1)
        label = row.get(chart.label)
        bars.append(
            {
                "x": round(index * step + step * 0.1, 1),
                "y": round(HEIGHT - height, 1),
                "width": round(max(step * 0.8, 1), 1),
                "height": height,
                "value": row.get(chart.value) or 0,
                "label": label.strftime("%b %-d") if isinstance(label, dt.date) else str(label),
                "show_label": index % every == 0,
                "label_x": round(index * step + step / 2, 1),
                "href": chats_behind(filters, chart.opens, row.get(chart.key)),
            }
        )
    return {"width": WIDTH, "height": HEIGHT, "bars": bars, "top": max(values, default=0), "empty": not any(values)}


def heatmap_cells(grid: list[list[int]]) -> dict:
    top = max((n for row in grid for n in row), default=0) or 1
    cells = [
        {"x": 40 + hour * 36, "y": 20 + day * 26, "n": n, "opacity": round(0.08 + 0.92 * n / top, 2) if n else 0, "weekday": WEEKDAYS[day], "hour": hour}
        for day, row in enumerate(grid)
        for hour, n in enumerate(row)
    ]
    return {"cells": cells, "weekdays": [(name, 20 + i * 26 + 17) for i, name in enumerate(WEEKDAYS)], "hours": [(h, 40 + h * 36 + 18) for h in range(0, 24, 3)]}
