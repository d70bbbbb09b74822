"""Reads of the dashboard's own, which no API route makes."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

# A callout's calls that ended in each minute since `since`, by final status: for a callout of at most
# EXACT_TOTAL_UP_TO participations (the statistics say how many), as it walks them all.
ENDED_CALLS = text("""
    SELECT date_trunc('minute', coalesce(pc.remote_status_updated_at, pc.updated_at)) AS minute, pc.status,
           count(*)
    FROM callout_participations p JOIN phone_calls pc ON pc.callout_participation_id = p.id
    WHERE p.account_id = :account_id AND p.callout_id = :callout_id AND pc.status = ANY(:statuses)
          AND coalesce(pc.remote_status_updated_at, pc.updated_at) >= :since
    GROUP BY 1, 2
""")


def ended_calls_per_minute(engine, account_id: int, callout_id: int, statuses: list[str],
                           since: datetime) -> dict[datetime, dict[str, int]]:
    """{minute: {final status: calls of the callout that ended so in that minute}}."""
    found: dict[datetime, dict[str, int]] = {}
    with engine.connect() as conn:
        for minute, status, count in conn.execute(ENDED_CALLS, {"account_id": account_id, "callout_id": callout_id,
                                                                "statuses": statuses, "since": since}):
            found.setdefault(minute, {})[status] = count
    return found
