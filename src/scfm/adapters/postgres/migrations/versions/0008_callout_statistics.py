"""Callout statistics (issue 12): counters kept by statement-level triggers, so that a callout's statistics
are read from a few hundred rows however many participations it has.

- On callout_participations, kept with the rest of its latest call (0007's trigger on phone_calls, replaced
  here doing what it did and these two more): `last_phone_call_waiting_for_window` and
  `last_phone_call_duration`.
- `callout_participation_counters`: participations, calls made and attempts, per callout and raw state (the
  outcome, else the latest call's status and whether it waits for its window: which of those is "to call",
  "in flight" or "done" is the application's reading, with the statuses of domain/state_machines.py).
- `callout_duration_counters`: a histogram (in whole seconds) of the durations of the participations whose
  latest call was answered: an exact median and total without reading the calls.
- `callout_minute_counters`: the attempts (calls that reached the provider) per minute.

PL/pgSQL keeps the plan of a static statement, made for the transition table of its first call: a plan made for
one row (a webhook's) runs a later million-row statement as nested loops over the transition tables (measured
with 0007's function: 45 s for 18,000 calls queued after ten single updates). Every statement of these trigger
functions (0007's, replaced here, too) is therefore static for a few rows (planned once: a webhook's update
pays no planning) and an EXECUTE, planned for its size, for more.

Each counter has a few shards (by the writing backend) so that concurrent writers seldom wait on one row; a
statement writes its rows in key order. Every trigger works on the statement's transition tables: a
million-row batch operation makes a handful of counter writes, not a million.

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SHARDS = 8
COMPLETED = "completed"  # PhoneCallStatus.COMPLETED, as this migration stores it for good


def _state(row: str) -> str:
    return (f"callout_participation_state({row}outcome, {row}last_phone_call_status, "
            f"{row}last_phone_call_waiting_for_window)")


def _answered(row: str) -> str:
    return f"CASE WHEN {row}last_phone_call_status = '{COMPLETED}' THEN {row}last_phone_call_duration END"


# What a statement changed, as signed rows (callout_id, state, answered_seconds, participations, calls, attempts,
# dialed): -1 for the rows before, +1 for the rows after; per trigger, from its transition tables.
DELTAS = {
    "inserted": ("REFERENCING NEW TABLE AS new_rows", f"""
        SELECT callout_id, {_state("")}, {_answered("")}, 1::bigint, calls_count::bigint, attempts::bigint, 0::bigint
          FROM new_rows"""),
    "deleted": ("REFERENCING OLD TABLE AS old_rows", f"""
        SELECT callout_id, {_state("")}, {_answered("")}, -1::bigint, -calls_count::bigint, -attempts::bigint,
               0::bigint
          FROM old_rows"""),
    "updated": ("REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows", f"""
        SELECT s.*
          FROM old_rows o JOIN new_rows n ON n.id = o.id
         CROSS JOIN LATERAL (VALUES
               (o.callout_id, {_state("o.")}, {_answered("o.")}, -1::bigint, -o.calls_count::bigint,
                -o.attempts::bigint, 0::bigint),
               (n.callout_id, {_state("n.")}, {_answered("n.")}, 1, n.calls_count, n.attempts,
                greatest(n.attempts - o.attempts, 0))) AS s
         WHERE o.outcome IS DISTINCT FROM n.outcome
            OR o.last_phone_call_status IS DISTINCT FROM n.last_phone_call_status
            OR o.last_phone_call_waiting_for_window IS DISTINCT FROM n.last_phone_call_waiting_for_window
            OR o.last_phone_call_duration IS DISTINCT FROM n.last_phone_call_duration
            OR o.calls_count IS DISTINCT FROM n.calls_count
            OR o.attempts IS DISTINCT FROM n.attempts
            OR o.callout_id IS DISTINCT FROM n.callout_id"""),
}


# 0007's function on phone_calls, as 0008 makes it: its latest call's window and duration too
CALLS_INSERTED = """
        UPDATE callout_participations p
           SET last_phone_call_id = c.last_id, last_phone_call_status = c.last_status,
               last_phone_call_waiting_for_window = c.last_waiting, last_phone_call_duration = c.last_duration,
               calls_count = p.calls_count + c.calls, attempts = p.attempts + c.dialed
          FROM (SELECT DISTINCT ON (callout_participation_id) callout_participation_id AS pid, id AS last_id,
                       status AS last_status, waiting_for_window AS last_waiting, duration AS last_duration,
                       count(*) OVER (PARTITION BY callout_participation_id) AS calls,
                       count(remote_call_id) OVER (PARTITION BY callout_participation_id) AS dialed
                  FROM new_calls WHERE callout_participation_id IS NOT NULL
                 ORDER BY callout_participation_id, id DESC) c
         WHERE p.id = c.pid"""
# only participations whose latest call changed status, window or duration, or that a call just reached the
# provider for
CALLS_UPDATED = """
        -- only participations whose latest call changed status, window or duration, or that a call just
        -- reached the provider for
        UPDATE callout_participations p
           SET last_phone_call_status = CASE WHEN p.last_phone_call_id = c.last_id THEN c.last_status
                                             ELSE p.last_phone_call_status END,
               last_phone_call_waiting_for_window = CASE WHEN p.last_phone_call_id = c.last_id THEN c.last_waiting
                                                         ELSE p.last_phone_call_waiting_for_window END,
               last_phone_call_duration = CASE WHEN p.last_phone_call_id = c.last_id THEN c.last_duration
                                               ELSE p.last_phone_call_duration END,
               attempts = p.attempts + c.dialed
          FROM (SELECT DISTINCT ON (n.callout_participation_id) n.callout_participation_id AS pid,
                       n.id AS last_id, n.status AS last_status, n.waiting_for_window AS last_waiting,
                       n.duration AS last_duration,
                       count(*) FILTER (WHERE o.remote_call_id IS NULL AND n.remote_call_id IS NOT NULL)
                           OVER (PARTITION BY n.callout_participation_id) AS dialed
                  FROM new_calls n JOIN old_calls o ON o.id = n.id
                 WHERE n.callout_participation_id IS NOT NULL
                   AND (n.status IS DISTINCT FROM o.status
                        OR n.waiting_for_window IS DISTINCT FROM o.waiting_for_window
                        OR n.duration IS DISTINCT FROM o.duration
                        OR (o.remote_call_id IS NULL AND n.remote_call_id IS NOT NULL))
                 ORDER BY n.callout_participation_id, n.id DESC) c
         WHERE p.id = c.pid
           AND (c.dialed > 0 OR (p.last_phone_call_id = c.last_id
                                 AND (p.last_phone_call_status IS DISTINCT FROM c.last_status
                                      OR p.last_phone_call_waiting_for_window IS DISTINCT FROM c.last_waiting
                                      OR p.last_phone_call_duration IS DISTINCT FROM c.last_duration)))"""
CALLS_DELETED = """
        UPDATE callout_participations p
           SET last_phone_call_id = l.id, last_phone_call_status = l.status,
               last_phone_call_waiting_for_window = coalesce(l.waiting_for_window, false),
               last_phone_call_duration = l.duration,
               calls_count = p.calls_count - d.calls, attempts = p.attempts - d.dialed
          FROM (SELECT callout_participation_id AS pid, count(*) AS calls, count(remote_call_id) AS dialed
                  FROM old_calls WHERE callout_participation_id IS NOT NULL GROUP BY 1) d
          LEFT JOIN LATERAL (SELECT id, status, waiting_for_window, duration FROM phone_calls
                              WHERE callout_participation_id = d.pid ORDER BY id DESC LIMIT 1) l ON true
         WHERE p.id = d.pid"""


FEW = 32


def _sized(statement: str, table: str) -> str:
    """`statement` for a transition table of a few rows as it is (PL/pgSQL keeps its plan), and planned anew
    for a bigger one (EXECUTE): a plan kept from a small table runs a big one as nested loops."""
    return f"""IF (SELECT count(*) FROM (SELECT FROM {table} LIMIT {FEW + 1}) AS few) <= {FEW} THEN
        {statement};
    ELSE
        EXECUTE $q${statement}$q$;
    END IF;"""


OPERATIONS = {"inserted": "INSERT", "deleted": "DELETE", "updated": "UPDATE"}


def _counter_trigger(event: str) -> str:
    """A trigger function per event, adding the deltas to the counters in key order, in one statement."""
    referencing, deltas = DELTAS[event]
    statement = f"""
    WITH deltas (callout_id, state, answered_seconds, participations, calls, attempts, dialed) AS MATERIALIZED
         ({deltas}),
    states AS (
        INSERT INTO callout_participation_counters AS k (callout_id, state, shard, participations, calls, attempts)
        SELECT callout_id, state, pg_backend_pid() % {SHARDS}, sum(participations), sum(calls), sum(attempts)
          FROM deltas GROUP BY callout_id, state
        HAVING sum(participations) <> 0 OR sum(calls) <> 0 OR sum(attempts) <> 0
         ORDER BY callout_id, state
            ON CONFLICT (callout_id, state, shard) DO UPDATE
           SET participations = k.participations + excluded.participations, calls = k.calls + excluded.calls,
               attempts = k.attempts + excluded.attempts),
    durations AS (
        INSERT INTO callout_duration_counters AS k (callout_id, seconds, shard, participations)
        SELECT callout_id, answered_seconds, pg_backend_pid() % {SHARDS}, sum(participations)
          FROM deltas WHERE answered_seconds IS NOT NULL GROUP BY callout_id, answered_seconds
        HAVING sum(participations) <> 0
         ORDER BY callout_id, answered_seconds
            ON CONFLICT (callout_id, seconds, shard) DO UPDATE
           SET participations = k.participations + excluded.participations)
    INSERT INTO callout_minute_counters AS k (callout_id, minute, shard, attempts)
    SELECT callout_id, date_trunc('minute', now()), pg_backend_pid() % {SHARDS}, sum(dialed)
      FROM deltas GROUP BY callout_id HAVING sum(dialed) > 0
     ORDER BY callout_id
        ON CONFLICT (callout_id, minute, shard) DO UPDATE SET attempts = k.attempts + excluded.attempts"""
    return f"""
CREATE FUNCTION callout_participations_{event}_to_counters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_sized(statement, "old_rows" if event == "deleted" else "new_rows")}
    RETURN NULL;
END
$$;
CREATE TRIGGER callout_participations_{event}_to_counters AFTER {OPERATIONS[event]} ON callout_participations
    {referencing} FOR EACH STATEMENT EXECUTE FUNCTION callout_participations_{event}_to_counters();
"""


COUNTER_TRIGGERS = "".join(_counter_trigger(event) for event in DELTAS)


def upgrade():
    op.execute(f"""
ALTER TABLE callout_participations
    ADD COLUMN last_phone_call_waiting_for_window boolean NOT NULL DEFAULT false,
    ADD COLUMN last_phone_call_duration integer;

UPDATE callout_participations p
   SET last_phone_call_waiting_for_window = c.waiting_for_window, last_phone_call_duration = c.duration
  FROM phone_calls c
 WHERE c.id = p.last_phone_call_id AND (c.waiting_for_window OR c.duration IS NOT NULL);

CREATE OR REPLACE FUNCTION phone_calls_to_participations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_sized(CALLS_INSERTED, "new_calls")}
    ELSIF TG_OP = 'UPDATE' THEN
        {_sized(CALLS_UPDATED, "new_calls")}
    ELSE
        {_sized(CALLS_DELETED, "old_calls")}
    END IF;
    RETURN NULL;
END
$$;

CREATE TABLE callout_participation_counters (
    callout_id bigint NOT NULL REFERENCES callouts (id) ON DELETE CASCADE,
    state text NOT NULL,
    shard smallint NOT NULL,
    participations bigint NOT NULL DEFAULT 0,
    calls bigint NOT NULL DEFAULT 0,
    attempts bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (callout_id, state, shard)
);
CREATE TABLE callout_duration_counters (
    callout_id bigint NOT NULL REFERENCES callouts (id) ON DELETE CASCADE,
    seconds integer NOT NULL,
    shard smallint NOT NULL,
    participations bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (callout_id, seconds, shard)
);
CREATE TABLE callout_minute_counters (
    callout_id bigint NOT NULL REFERENCES callouts (id) ON DELETE CASCADE,
    minute timestamptz NOT NULL,
    shard smallint NOT NULL,
    attempts bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (callout_id, minute, shard)
);

-- A participation's raw state: its outcome once it has one, else its latest call's status (and whether that
-- call waits for its window), else none.
CREATE FUNCTION callout_participation_state(outcome text, last_status text, waiting boolean) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN outcome IS NOT NULL THEN 'outcome:' || outcome
                WHEN last_status IS NULL THEN 'none'
                WHEN waiting THEN 'window:' || last_status
                ELSE 'call:' || last_status END
$$;

{COUNTER_TRIGGERS}
-- what the participations already are
INSERT INTO callout_participation_counters (callout_id, state, shard, participations, calls, attempts)
SELECT callout_id,
       callout_participation_state(outcome, last_phone_call_status, last_phone_call_waiting_for_window),
       0, count(*), sum(calls_count), sum(attempts)
  FROM callout_participations GROUP BY 1, 2;
INSERT INTO callout_duration_counters (callout_id, seconds, shard, participations)
SELECT callout_id, last_phone_call_duration, 0, count(*)
  FROM callout_participations
 WHERE last_phone_call_status = '{COMPLETED}' AND last_phone_call_duration IS NOT NULL GROUP BY 1, 2;
""")


def downgrade():
    op.execute("""
DROP TRIGGER callout_participations_inserted_to_counters ON callout_participations;
DROP TRIGGER callout_participations_updated_to_counters ON callout_participations;
DROP TRIGGER callout_participations_deleted_to_counters ON callout_participations;
DROP FUNCTION callout_participations_inserted_to_counters();
DROP FUNCTION callout_participations_updated_to_counters();
DROP FUNCTION callout_participations_deleted_to_counters();
DROP FUNCTION callout_participation_state(text, text, boolean);
DROP TABLE callout_minute_counters;
DROP TABLE callout_duration_counters;
DROP TABLE callout_participation_counters;

CREATE OR REPLACE FUNCTION phone_calls_to_participations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE callout_participations p
           SET last_phone_call_id = c.last_id, last_phone_call_status = c.last_status,
               calls_count = p.calls_count + c.calls, attempts = p.attempts + c.dialed
          FROM (SELECT DISTINCT ON (callout_participation_id) callout_participation_id AS pid, id AS last_id,
                       status AS last_status,
                       count(*) OVER (PARTITION BY callout_participation_id) AS calls,
                       count(remote_call_id) OVER (PARTITION BY callout_participation_id) AS dialed
                  FROM new_calls WHERE callout_participation_id IS NOT NULL
                 ORDER BY callout_participation_id, id DESC) c
         WHERE p.id = c.pid;
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE callout_participations p
           SET last_phone_call_status = CASE WHEN p.last_phone_call_id = c.last_id THEN c.last_status
                                             ELSE p.last_phone_call_status END,
               attempts = p.attempts + c.dialed
          FROM (SELECT DISTINCT ON (n.callout_participation_id) n.callout_participation_id AS pid,
                       n.id AS last_id, n.status AS last_status,
                       count(*) FILTER (WHERE o.remote_call_id IS NULL AND n.remote_call_id IS NOT NULL)
                           OVER (PARTITION BY n.callout_participation_id) AS dialed
                  FROM new_calls n JOIN old_calls o ON o.id = n.id
                 WHERE n.callout_participation_id IS NOT NULL
                   AND (n.status IS DISTINCT FROM o.status
                        OR (o.remote_call_id IS NULL AND n.remote_call_id IS NOT NULL))
                 ORDER BY n.callout_participation_id, n.id DESC) c
         WHERE p.id = c.pid
           AND (c.dialed > 0 OR (p.last_phone_call_id = c.last_id
                                 AND p.last_phone_call_status IS DISTINCT FROM c.last_status));
    ELSE
        UPDATE callout_participations p
           SET last_phone_call_id = l.id, last_phone_call_status = l.status,
               calls_count = p.calls_count - d.calls, attempts = p.attempts - d.dialed
          FROM (SELECT callout_participation_id AS pid, count(*) AS calls, count(remote_call_id) AS dialed
                  FROM old_calls WHERE callout_participation_id IS NOT NULL GROUP BY 1) d
          LEFT JOIN LATERAL (SELECT id, status FROM phone_calls
                              WHERE callout_participation_id = d.pid ORDER BY id DESC LIMIT 1) l ON true
         WHERE p.id = d.pid;
    END IF;
    RETURN NULL;
END
$$;
ALTER TABLE callout_participations DROP COLUMN last_phone_call_waiting_for_window,
    DROP COLUMN last_phone_call_duration;
""")
