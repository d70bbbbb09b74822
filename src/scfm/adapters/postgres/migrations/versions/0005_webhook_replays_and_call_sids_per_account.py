"""Replayed webhooks record nothing: remote_phone_call_events.request_digest (a digest of the signed URL and
form), unique per call, so the webhook's insert skips a request it has already recorded (older events have no
digest). The new index leads with phone_call_id and replaces the plain one.

A provider call sid is unique per account, not across accounts: an inbound webhook naming another account's
sid is then answered as for any unknown sid (a new inbound call), and reveals nothing of that account.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE remote_phone_call_events ADD COLUMN request_digest bytea")
    op.execute("CREATE UNIQUE INDEX index_remote_phone_call_events_on_phone_call_id_and_request_digest "
               "ON remote_phone_call_events (phone_call_id, request_digest)")
    op.execute("DROP INDEX index_remote_phone_call_events_on_phone_call_id")
    op.execute("CREATE UNIQUE INDEX index_phone_calls_on_remote_call_id_and_account_id "
               "ON phone_calls (remote_call_id, account_id)")
    op.execute("ALTER TABLE phone_calls DROP CONSTRAINT phone_calls_remote_call_id_key")


def downgrade():
    op.execute("ALTER TABLE phone_calls ADD CONSTRAINT phone_calls_remote_call_id_key UNIQUE (remote_call_id)")
    op.execute("DROP INDEX index_phone_calls_on_remote_call_id_and_account_id")
    op.execute("CREATE INDEX index_remote_phone_call_events_on_phone_call_id ON remote_phone_call_events (phone_call_id)")
    op.execute("DROP INDEX index_remote_phone_call_events_on_phone_call_id_and_request_digest")
    op.execute("ALTER TABLE remote_phone_call_events DROP COLUMN request_digest")
