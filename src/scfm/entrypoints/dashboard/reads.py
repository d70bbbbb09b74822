"""Reads of the dashboard's own, which no API route makes: what a page of callouts needs, in one statement
instead of a list query per callout."""
from __future__ import annotations

from sqlalchemy import text

from scfm.adapters.postgres.repositories import EXACT_TOTAL_UP_TO

# For each callout of the page, its participations and its phone calls, each counted up to the cap (a count
# past it says only "more"; the API's estimate is asked for then, callout by callout). The ORDER BY follows the
# index on (callout_id, id): with one callout holding most participations, the planner's generic estimate for
# "callout_id = c.id" is most of the table, and without it a small callout was counted by a scan of them all.
CALLOUT_COUNTS = text("""
    SELECT c.id,
           (SELECT count(*) FROM (SELECT 1 FROM callout_participations p
                                  WHERE p.account_id = :account_id AND p.callout_id = c.id
                                  ORDER BY p.callout_id, p.id LIMIT :cap) AS s),
           (SELECT count(*) FROM (SELECT 1 FROM phone_calls pc
                                  JOIN callout_participations p ON p.id = pc.callout_participation_id
                                  WHERE p.account_id = :account_id AND p.callout_id = c.id LIMIT :cap) AS s)
    FROM unnest(CAST(:ids AS bigint[])) AS c(id)
""")


def callout_counts(engine, account_id: int, callout_ids: list[int]) -> dict[int, dict[str, int | None]]:
    """{callout id: {"participations": n, "calls": n}}, each exact, or None past EXACT_TOTAL_UP_TO."""
    if not callout_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(CALLOUT_COUNTS, {"account_id": account_id, "ids": list(callout_ids),
                                             "cap": EXACT_TOTAL_UP_TO + 1}).all()
    return {row[0]: {"participations": row[1] if row[1] <= EXACT_TOTAL_UP_TO else None,
                     "calls": row[2] if row[2] <= EXACT_TOTAL_UP_TO else None} for row in rows}


# A callout's phone calls in each status, in one statement (for a callout of at most EXACT_TOTAL_UP_TO calls).
CALL_STATUS_COUNTS = text("""
    SELECT pc.status, count(*)
    FROM callout_participations p JOIN phone_calls pc ON pc.callout_participation_id = p.id
    WHERE p.account_id = :account_id AND p.callout_id = :callout_id AND pc.status = ANY(:statuses)
    GROUP BY pc.status
""")


def call_status_counts(engine, account_id: int, callout_id: int, statuses: list[str]) -> dict[str, int]:
    """{status: calls of the callout in it}, statuses with none left out: for a callout of at most
    EXACT_TOTAL_UP_TO calls."""
    with engine.connect() as conn:
        rows = conn.execute(CALL_STATUS_COUNTS, {"account_id": account_id, "callout_id": callout_id,
                                                 "statuses": list(statuses)}).all()
    return {status: count for status, count in rows if count}
