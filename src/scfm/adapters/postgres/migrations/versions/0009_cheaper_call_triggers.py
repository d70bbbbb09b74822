"""Cheaper triggers on the dialer's and the webhook's path (issue 15), and the dialer's index as its claim reads it.

- `index_phone_calls_due_for_dialing` holds exactly the calls waiting for a dialer: queued and not claimed
  (the claim's own filter). A claimed call leaves it, so a claim walks no claimed entries; made anew.
- 0008's triggers do what they did, with less work when a statement changes nothing they keep:
  `phone_calls_to_participations` looks first (a few rows: one cheap read of the transition tables) whether
  an updated call changed its status, window or duration or reached the provider, and updates no
  participation otherwise (a dialer's claim, a callback that only brings the provider's words): the
  participations' statement trigger, which fires for an UPDATE of no rows too, then does not fire. An UPDATE
  of one call (the webhook's, the dialer's) reads its old and new values once into variables and updates its
  participation by its key: starting a plan over the transition tables (a join, a sort, a window) cost more
  than running it. Each trigger function returns at once when its statement touched no row.

The statements are 0008's, read from its module (history: it does not change); the downgrade puts 0008's
functions and index back.

Revision ID: 0009
Revises: 0008
"""
import importlib.util
from pathlib import Path

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _load_0008():
    path = Path(__file__).with_name("0008_callout_statistics.py")
    spec = importlib.util.spec_from_file_location("scfm_migration_0008", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


m0008 = _load_0008()
FEW = m0008.FEW

# an updated call that changed what its participation keeps (CALLS_UPDATED's own filter)
CALLS_CHANGED = """
        SELECT FROM new_calls n JOIN old_calls o ON o.id = n.id
         WHERE n.callout_participation_id IS NOT NULL
           AND (n.status IS DISTINCT FROM o.status
                OR n.waiting_for_window IS DISTINCT FROM o.waiting_for_window
                OR n.duration IS DISTINCT FROM o.duration
                OR (o.remote_call_id IS NULL AND n.remote_call_id IS NOT NULL))"""


def _sized(statement: str, table: str, only_if: str | None = None, one: str | None = None) -> str:
    """0008's: `statement` as it is (its plan kept) for a few rows of `table`, EXECUTEd for more; and nothing
    for none, nor (a few rows) unless `only_if` finds a row; `one` instead for a single row (the webhook's and
    the dialer's statements: a plan over the transition tables costs more to start than to run). Needs
    `few integer` declared."""
    small = f"IF EXISTS ({only_if}) THEN {statement}; END IF;" if only_if else f"{statement};"
    single = f"""ELSIF few = 1 THEN
        {one}
    """ if one else ""
    return f"""few := (SELECT count(*) FROM (SELECT FROM {table} LIMIT {FEW + 1}) AS few);
    IF few = 0 THEN
        RETURN NULL;
    {single}ELSIF few <= {FEW} THEN
        {small}
    ELSE
        EXECUTE $q${statement}$q$;
    END IF;"""


# CALLS_UPDATED for a single updated call, with its values read once into variables: the participation's own
# row by its key, and only when the call changed what it keeps or reached the provider.
CALL_UPDATED = """SELECT n.callout_participation_id, n.id, n.status, n.waiting_for_window, n.duration,
               o.remote_call_id IS NULL AND n.remote_call_id IS NOT NULL,
               n.status IS DISTINCT FROM o.status OR n.waiting_for_window IS DISTINCT FROM o.waiting_for_window
                   OR n.duration IS DISTINCT FROM o.duration
          INTO v_pid, v_id, v_status, v_waiting, v_duration, v_dialed, v_changed
          FROM new_calls n, old_calls o WHERE o.id = n.id;
        IF v_pid IS NOT NULL AND (v_dialed OR v_changed) THEN
            UPDATE callout_participations p
               SET last_phone_call_status = CASE WHEN p.last_phone_call_id = v_id THEN v_status
                                                 ELSE p.last_phone_call_status END,
                   last_phone_call_waiting_for_window = CASE WHEN p.last_phone_call_id = v_id THEN v_waiting
                                                             ELSE p.last_phone_call_waiting_for_window END,
                   last_phone_call_duration = CASE WHEN p.last_phone_call_id = v_id THEN v_duration
                                                   ELSE p.last_phone_call_duration END,
                   attempts = p.attempts + v_dialed::integer
             WHERE p.id = v_pid
               AND (v_dialed OR (p.last_phone_call_id = v_id
                                 AND (p.last_phone_call_status IS DISTINCT FROM v_status
                                      OR p.last_phone_call_waiting_for_window IS DISTINCT FROM v_waiting
                                      OR p.last_phone_call_duration IS DISTINCT FROM v_duration)));
        END IF;"""


PHONE_CALLS_TO_PARTICIPATIONS = f"""
CREATE OR REPLACE FUNCTION phone_calls_to_participations() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    few integer;
    v_pid bigint;
    v_id bigint;
    v_status text;
    v_waiting boolean;
    v_duration integer;
    v_dialed boolean;
    v_changed boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_sized(m0008.CALLS_INSERTED, "new_calls")}
    ELSIF TG_OP = 'UPDATE' THEN
        {_sized(m0008.CALLS_UPDATED, "new_calls", CALLS_CHANGED, CALL_UPDATED)}
    ELSE
        {_sized(m0008.CALLS_DELETED, "old_calls")}
    END IF;
    RETURN NULL;
END
$$;
"""


def _counter_function(event: str) -> str:
    """0008's function of the counters' trigger for `event`, returning at once for a statement of no rows."""
    created = m0008._counter_trigger(event)
    function = created[:created.index("CREATE TRIGGER")]
    table = "old_rows" if event == "deleted" else "new_rows"
    test = f"IF (SELECT count(*) FROM (SELECT FROM {table} LIMIT {FEW + 1}) AS few) <= {FEW} THEN"
    assert function.count(test) == 1 and function.count("\nBEGIN\n") == 1, function
    return (function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
            .replace("\nBEGIN\n", "\nDECLARE\n    few integer;\nBEGIN\n")
            .replace(test, f"few := (SELECT count(*) FROM (SELECT FROM {table} LIMIT {FEW + 1}) AS few);\n"
                           f"    IF few = 0 THEN\n        RETURN NULL;\n    ELSIF few <= {FEW} THEN"))


def upgrade():
    op.execute(f"""
DROP INDEX index_phone_calls_due_for_dialing;
CREATE INDEX index_phone_calls_due_for_dialing ON phone_calls (account_id, next_attempt_at, id)
    WHERE status = 'queued' AND dial_claimed_at IS NULL;
{PHONE_CALLS_TO_PARTICIPATIONS}
{"".join(_counter_function(event) for event in m0008.DELTAS)}
""")


PHONE_CALLS_TO_PARTICIPATIONS_0008 = f"""
CREATE OR REPLACE FUNCTION phone_calls_to_participations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {m0008._sized(m0008.CALLS_INSERTED, "new_calls")}
    ELSIF TG_OP = 'UPDATE' THEN
        {m0008._sized(m0008.CALLS_UPDATED, "new_calls")}
    ELSE
        {m0008._sized(m0008.CALLS_DELETED, "old_calls")}
    END IF;
    RETURN NULL;
END
$$;
"""


def downgrade():
    triggers = "".join(f"DROP TRIGGER callout_participations_{event}_to_counters ON callout_participations;\n"
                       f"DROP FUNCTION callout_participations_{event}_to_counters();\n" for event in m0008.DELTAS)
    op.execute(f"""
{triggers}
{m0008.COUNTER_TRIGGERS}
{PHONE_CALLS_TO_PARTICIPATIONS_0008}
DROP INDEX index_phone_calls_due_for_dialing;
CREATE INDEX index_phone_calls_due_for_dialing ON phone_calls (account_id, next_attempt_at, id)
    WHERE status = 'queued';
""")
