"""phone_calls.remote_fetch_queued_at: when the sweeper last queued a fetch of the call's status, so that a
fetch is found lost (and a silent call asked about again) only a while after it was queued, not on every
sweep; and an index of the calls that wait for news from the provider, which the sweeper looks through.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE phone_calls ADD COLUMN remote_fetch_queued_at timestamptz")
    op.execute("CREATE INDEX index_phone_calls_awaiting_news ON phone_calls (id) "
               "WHERE status IN ('remotely_queued', 'in_progress', 'remote_fetch_queued')")


def downgrade():
    op.execute("DROP INDEX index_phone_calls_awaiting_news")
    op.execute("ALTER TABLE phone_calls DROP COLUMN remote_fetch_queued_at")
