"""The triggers on phone_calls and callout_participations keep each participation's latest call and the
callout's counters true for an UPDATE of any size: none, one row (the webhook's and the dialer's path), a
few, and more than a few (planned afresh); also when an older call changes, or a statement changes nothing
they keep."""
from __future__ import annotations

import pytest
from sqlalchemy import text

TRUE = """
SELECT (SELECT count(*) FROM callout_participations p
          LEFT JOIN LATERAL (SELECT id, status, waiting_for_window, duration FROM phone_calls
                              WHERE callout_participation_id = p.id ORDER BY id DESC LIMIT 1) l ON true
         WHERE (p.last_phone_call_id, p.last_phone_call_status, p.last_phone_call_waiting_for_window,
                p.last_phone_call_duration, p.calls_count, p.attempts)
               IS DISTINCT FROM
               (l.id, l.status, coalesce(l.waiting_for_window, false), l.duration,
                (SELECT count(*)::integer FROM phone_calls WHERE callout_participation_id = p.id),
                (SELECT count(remote_call_id)::integer FROM phone_calls WHERE callout_participation_id = p.id))),
       (SELECT array_agg(x ORDER BY x) FROM (
            SELECT callout_id, state, sum(participations), sum(calls), sum(attempts) FROM callout_participation_counters
             GROUP BY 1, 2 HAVING sum(participations) <> 0 OR sum(calls) <> 0 OR sum(attempts) <> 0) x)::text
       IS NOT DISTINCT FROM
       (SELECT array_agg(x ORDER BY x) FROM (
            SELECT callout_id,
                   callout_participation_state(outcome, last_phone_call_status, last_phone_call_waiting_for_window),
                   count(*), sum(calls_count), sum(attempts)
              FROM callout_participations GROUP BY 1, 2) x)::text,
       (SELECT array_agg(x ORDER BY x) FROM (
            SELECT callout_id, seconds, sum(participations) FROM callout_duration_counters
             GROUP BY 1, 2 HAVING sum(participations) <> 0) x)::text
       IS NOT DISTINCT FROM
       (SELECT array_agg(x ORDER BY x) FROM (
            SELECT callout_id, last_phone_call_duration, count(*) FROM callout_participations
             WHERE last_phone_call_status = 'completed' AND last_phone_call_duration IS NOT NULL GROUP BY 1, 2) x)::text,
       (SELECT coalesce(sum(attempts), 0) FROM callout_minute_counters)
       = (SELECT coalesce(sum(attempts), 0) FROM callout_participations)
"""


def _run(deps, sql: str, **params) -> None:
    with deps.engine.begin() as conn:
        conn.execute(text(sql), params)


def _assert_true(deps, step: str) -> None:
    with deps.engine.connect() as conn:
        off, states, durations, minutes = conn.execute(text(TRUE)).one()
    assert (off, states, durations, minutes) == (0, True, True, True), step


@pytest.fixture
def calls(deps):
    """80 participations of two callouts, each with a queued call; the first ten with an older ended call too
    (five of them never dialed)."""
    _run(deps, "INSERT INTO accounts DEFAULT VALUES")
    _run(deps, "INSERT INTO callouts (account_id, status) SELECT id, 'running' FROM accounts, generate_series(1, 2)")
    _run(deps, """INSERT INTO contacts (account_id, msisdn)
                  SELECT a.id, '+85512' || lpad(n::text, 6, '0') FROM accounts a, generate_series(1, 80) n""")
    _run(deps, """INSERT INTO callout_participations (account_id, callout_id, contact_id, msisdn)
                  SELECT c.account_id, (SELECT min(id) FROM callouts) + c.id % 2, c.id, c.msisdn FROM contacts c""")
    _run(deps, """INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, msisdn, status,
                                           remote_call_id, duration)
                  SELECT account_id, id, contact_id, msisdn, CASE WHEN n <= 5 THEN 'completed' ELSE 'errored' END,
                         CASE WHEN n <= 5 THEN 'CAold' || id END, CASE WHEN n <= 5 THEN 7 END
                    FROM (SELECT *, row_number() OVER (ORDER BY id) AS n FROM callout_participations) p
                   WHERE n <= 10""")
    _run(deps, """INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, msisdn, status,
                                           next_attempt_at)
                  SELECT account_id, id, contact_id, msisdn, 'queued', now() FROM callout_participations""")
    _assert_true(deps, "inserted")
    with deps.engine.connect() as conn:
        return list(conn.execute(text("SELECT id FROM phone_calls WHERE status = 'queued' ORDER BY id")).scalars())


DIAL = "UPDATE phone_calls SET status = 'remotely_queued', remote_call_id = 'CA' || id WHERE id = ANY(:ids)"
STEPS = [
    ("a claim: nothing kept changes", "UPDATE phone_calls SET dial_claimed_at = now() WHERE id = ANY(:ids)"),
    ("put back until the window opens", "UPDATE phone_calls SET waiting_for_window = true WHERE id = ANY(:ids)"),
    ("claimed again", "UPDATE phone_calls SET waiting_for_window = false WHERE id = ANY(:ids)"),
    ("dialed", DIAL),
    ("queued at the provider: only its words", "UPDATE phone_calls SET remote_status = 'queued' WHERE id = ANY(:ids)"),
    ("ringing", "UPDATE phone_calls SET status = 'in_progress' WHERE id = ANY(:ids)"),
    ("answered: only its words", "UPDATE phone_calls SET remote_status = 'in-progress' WHERE id = ANY(:ids)"),
    ("completed", "UPDATE phone_calls SET status = 'completed', duration = 3 + id % 5 WHERE id = ANY(:ids)"),
    ("a late duration", "UPDATE phone_calls SET duration = duration + 1 WHERE id = ANY(:ids)"),
]


@pytest.mark.parametrize("size", [0, 1, 2, 32, 33, 80])
def test_updates_of_any_size_keep_participations_and_counters_true(deps, calls, size):
    for step, sql in STEPS:
        for start in range(0, len(calls), max(size, 1)):
            _run(deps, sql, ids=calls[start:start + size])
        _assert_true(deps, f"{step}, {size} at a time")


def test_an_older_call_changes_its_participation_only_by_its_attempt(deps, calls):
    older = "SELECT id FROM phone_calls WHERE status IN ('completed', 'errored') ORDER BY id"
    with deps.engine.connect() as conn:
        ended = list(conn.execute(text(older)).scalars())
    for ids in ([ended[5]], ended[6:8], ended[:5] + ended[8:]):  # one never dialed, two, the rest
        _run(deps, "UPDATE phone_calls SET status = 'busy', duration = NULL WHERE id = ANY(:ids)", ids=ids)
        _assert_true(deps, f"an older call changed: {ids}")
        _run(deps, "UPDATE phone_calls SET remote_call_id = 'CAlate' || id WHERE id = ANY(:ids) "
                   "AND remote_call_id IS NULL", ids=ids)
        _assert_true(deps, f"an older call dialed: {ids}")


def test_participations_changed_by_the_runner_and_deleted(deps, calls):
    _run(deps, "UPDATE phone_calls SET status = 'busy' WHERE id = ANY(:ids)", ids=calls[:40])
    _run(deps, "UPDATE callout_participations SET outcome = last_phone_call_status WHERE id = "
               "(SELECT callout_participation_id FROM phone_calls WHERE id = :id)", id=calls[0])
    _assert_true(deps, "one outcome")
    _run(deps, "UPDATE callout_participations SET outcome = last_phone_call_status "
               "WHERE last_phone_call_status = 'busy' AND outcome IS NULL")
    _assert_true(deps, "outcomes")
    _run(deps, "UPDATE callout_participations SET metadata = '{\"a\": 1}'")
    _assert_true(deps, "nothing counted changed")
    _run(deps, "DELETE FROM phone_calls WHERE id = ANY(:ids)", ids=calls[40:41])
    _run(deps, "DELETE FROM phone_calls WHERE id = ANY(:ids)", ids=calls[41:])
    _assert_true(deps, "calls deleted")
