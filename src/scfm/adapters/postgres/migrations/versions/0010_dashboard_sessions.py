"""dashboard_sessions: the dashboard's signed-in sessions, kept on the server, so that signing out ends a session
for every copy of its cookie (the cookie holds a random key; only the key's digest is stored). A session belongs
to the access token it was signed in with: deleting the token deletes its sessions.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("""
        CREATE TABLE dashboard_sessions (
            id bigserial PRIMARY KEY,
            access_token_id bigint NOT NULL REFERENCES access_tokens (id) ON DELETE CASCADE,
            session_digest text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("CREATE INDEX index_dashboard_sessions_on_access_token_id ON dashboard_sessions (access_token_id)")
    op.execute("CREATE INDEX index_dashboard_sessions_on_created_at ON dashboard_sessions (created_at)")


def downgrade():
    op.execute("DROP TABLE dashboard_sessions")
