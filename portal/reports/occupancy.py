"""Occupancy (SPEC M): an agent's time with at least one chat ÷ their time available or with
chats, over a range — computed by the database. A chat's span is its agent participation
(connected until ended, or now); availability comes from the status history
(portal.models.AgentStatusChange: each change lasts until the next). Overlapping spans are
merged ("gaps and islands" with window functions) so two chats at once count once."""
from __future__ import annotations

import datetime as dt

from django.db import connection
from django.utils import timezone

from chats.models import Participant, ParticipantType
from portal.models import AgentStatus, AgentStatusChange

_DIALECT = {
    "postgresql": {"greatest": "GREATEST", "least": "LEAST", "seconds": "EXTRACT(EPOCH FROM (e - s))"},
    "sqlite": {"greatest": "MAX", "least": "MIN", "seconds": "(julianday(e) - julianday(s)) * 86400.0"},
}


def _islands(name: str, seconds: str) -> str:
    """CTEs that merge the overlapping spans (agent_id, s, e) of `name` and total them per agent."""
    return f"""
    {name}_marked AS (
        SELECT agent_id, s, e,
               CASE WHEN s > MAX(e) OVER (PARTITION BY agent_id ORDER BY s, e
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                    THEN 1 ELSE 0 END AS fresh
        FROM {name} WHERE e > s
    ),
    {name}_islands AS (
        SELECT agent_id, s, e, SUM(fresh) OVER (PARTITION BY agent_id ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS island
        FROM {name}_marked
    ),
    {name}_total AS (
        SELECT agent_id, SUM({seconds}) AS seconds
        FROM (SELECT agent_id, island, MIN(s) AS s, MAX(e) AS e FROM {name}_islands GROUP BY agent_id, island) spans
        GROUP BY agent_id
    )"""


def _sql() -> str:
    d = _DIALECT["postgresql" if connection.vendor == "postgresql" else "sqlite"]
    greatest, least = d["greatest"], d["least"]
    return f"""
    WITH busy AS (
        SELECT agent_id, {greatest}(connected_at, %(since)s) AS s, {least}(COALESCE(ended_at, %(now)s), %(until)s) AS e
        FROM {Participant._meta.db_table}
        WHERE type = %(agent_type)s AND agent_id IS NOT NULL
          AND connected_at < %(until)s AND COALESCE(ended_at, %(now)s) > %(since)s
    ),
    changes AS (
        SELECT agent_id, status, at, LEAD(at) OVER (PARTITION BY agent_id ORDER BY at) AS next_at
        FROM {AgentStatusChange._meta.db_table} WHERE at < %(until)s
    ),
    available AS (
        SELECT agent_id, {greatest}(at, %(since)s) AS s, {least}(COALESCE(next_at, %(now)s), %(until)s) AS e
        FROM changes WHERE status = %(available)s AND COALESCE(next_at, %(now)s) > %(since)s
    ),
    staffed AS (SELECT agent_id, s, e FROM busy UNION ALL SELECT agent_id, s, e FROM available),
    {_islands("busy", d["seconds"])},
    {_islands("staffed", d["seconds"])}
    SELECT staffed_total.agent_id, COALESCE(busy_total.seconds, 0), staffed_total.seconds
    FROM staffed_total LEFT JOIN busy_total ON busy_total.agent_id = staffed_total.agent_id
    """


def occupancy(since: dt.datetime, until: dt.datetime, *, now: dt.datetime | None = None) -> dict[int, dict]:
    """Per agent with any time available or with chats in [since, until): the seconds with
    chats, the seconds available or with chats, and occupancy in percent (one decimal)."""
    now = now or timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    params = {
        "since": adapt(since),
        "until": adapt(until),
        "now": adapt(min(now, until)),
        "agent_type": ParticipantType.AGENT,
        "available": AgentStatus.AVAILABLE,
    }
    with connection.cursor() as cursor:
        cursor.execute(_sql(), params)
        rows = cursor.fetchall()
    return {
        agent_id: {
            "busy_seconds": round(float(busy)),
            "staffed_seconds": round(float(staffed)),
            "occupancy": round(100.0 * float(busy) / float(staffed), 1) if staffed else None,
        }
        for agent_id, busy, staffed in rows
    }
