"""phone_calls.reconcile_after: when the sweeper may next ask the provider about a call whose dial outcome
is unknown (set each time it asks, so one call is asked about once per interval, not once per sweep); and an
index of open claims (a handful of rows), which the sweeper and the reconciliation look up.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE phone_calls ADD COLUMN reconcile_after timestamptz")
    op.execute("CREATE INDEX index_phone_calls_open_claims ON phone_calls (dial_claimed_at) "
               "WHERE status = 'queued' AND dial_claimed_at IS NOT NULL AND remote_call_id IS NULL")


def downgrade():
    op.execute("DROP INDEX index_phone_calls_open_claims")
    op.execute("ALTER TABLE phone_calls DROP COLUMN reconcile_after")
