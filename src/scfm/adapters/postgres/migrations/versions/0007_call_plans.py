"""Call plans (issue 12): a callout's plan (and its account's default), and what a participation's calls
have come to, kept by the database itself so that every writer (batch operations, the dialer, webhooks,
fetches, the call plan's runner) keeps it true in set-based statements.

- `call_plan` on accounts and callouts: a JSON document (remote_request_params, max_attempts, retries,
  window, not_after); a callout's keys win over its account's.
- On callout_participations, kept by statement-level triggers on phone_calls:
  `last_phone_call_id`/`last_phone_call_status` (its latest call), `calls_count` (calls made for it) and
  `attempts` (calls that reached the provider: a call that dialed nothing does not count).
- On callout_participations, written by the call plan's runner: `outcome` (the final one, once no call is
  left to make) and `finished_at`.
- `phone_calls.waiting_for_window`: a queued call put back by the dialer until its calling window opens.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("""
ALTER TABLE accounts ADD COLUMN call_plan jsonb;
ALTER TABLE callouts ADD COLUMN call_plan jsonb;
ALTER TABLE callout_participations
    ADD COLUMN last_phone_call_id bigint,
    ADD COLUMN last_phone_call_status text,
    ADD COLUMN calls_count integer NOT NULL DEFAULT 0,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN outcome text,
    ADD COLUMN finished_at timestamptz;
ALTER TABLE phone_calls ADD COLUMN waiting_for_window boolean NOT NULL DEFAULT false;

UPDATE callout_participations p
   SET last_phone_call_id = c.last_id, last_phone_call_status = c.last_status,
       calls_count = c.calls, attempts = c.dialed
  FROM (SELECT DISTINCT ON (callout_participation_id) callout_participation_id AS pid, id AS last_id,
               status AS last_status,
               count(*) OVER (PARTITION BY callout_participation_id) AS calls,
               count(remote_call_id) OVER (PARTITION BY callout_participation_id) AS dialed
          FROM phone_calls WHERE callout_participation_id IS NOT NULL
         ORDER BY callout_participation_id, id DESC) c
 WHERE p.id = c.pid;

CREATE FUNCTION phone_calls_to_participations() RETURNS trigger LANGUAGE plpgsql AS $$
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
        -- only participations whose latest call changed status, or that a call just reached the provider for
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
CREATE TRIGGER phone_calls_inserted_to_participations AFTER INSERT ON phone_calls
    REFERENCING NEW TABLE AS new_calls FOR EACH STATEMENT EXECUTE FUNCTION phone_calls_to_participations();
CREATE TRIGGER phone_calls_updated_to_participations AFTER UPDATE ON phone_calls
    REFERENCING OLD TABLE AS old_calls NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION phone_calls_to_participations();
CREATE TRIGGER phone_calls_deleted_to_participations AFTER DELETE ON phone_calls
    REFERENCING OLD TABLE AS old_calls FOR EACH STATEMENT EXECUTE FUNCTION phone_calls_to_participations();

-- the participations a call plan still has to work on
CREATE INDEX index_callout_participations_unfinished ON callout_participations (callout_id, id)
    WHERE outcome IS NULL;
""")


def downgrade():
    op.execute("""
DROP INDEX index_callout_participations_unfinished;
DROP TRIGGER phone_calls_inserted_to_participations ON phone_calls;
DROP TRIGGER phone_calls_updated_to_participations ON phone_calls;
DROP TRIGGER phone_calls_deleted_to_participations ON phone_calls;
DROP FUNCTION phone_calls_to_participations();
ALTER TABLE phone_calls DROP COLUMN waiting_for_window;
ALTER TABLE callout_participations DROP COLUMN last_phone_call_id, DROP COLUMN last_phone_call_status,
    DROP COLUMN calls_count, DROP COLUMN attempts, DROP COLUMN outcome, DROP COLUMN finished_at;
ALTER TABLE callouts DROP COLUMN call_plan;
ALTER TABLE accounts DROP COLUMN call_plan;
""")
