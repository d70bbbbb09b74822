"""Contact imports (issue 13): the import, the rows it refused, and a deep merge of JSON documents for the
`deep_merge` metadata merge mode in set-based SQL. Each import's uploaded rows live in a table of its own
(contact_import_rows_<id>, with contact_import_numbers_<id> for the numbers seen), made by the upload and
dropped when the import ends.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("""
CREATE TABLE contact_imports (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts(id),
    callout_id bigint REFERENCES callouts(id) ON DELETE SET NULL,
    status text NOT NULL DEFAULT 'queued',
    filename text,
    options jsonb NOT NULL DEFAULT '{}'::jsonb,
    header jsonb NOT NULL DEFAULT '[]'::jsonb,
    delimiter text NOT NULL DEFAULT ',',
    rows_total integer NOT NULL DEFAULT 0,
    rows_read integer NOT NULL DEFAULT 0,
    rows_created integer NOT NULL DEFAULT 0,
    rows_updated integer NOT NULL DEFAULT 0,
    rows_unchanged integer NOT NULL DEFAULT 0,
    rows_refused integer NOT NULL DEFAULT 0,
    last_line integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    error_message text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at timestamptz,
    finished_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX index_contact_imports_on_account_id ON contact_imports (account_id, id);
CREATE INDEX index_contact_imports_on_callout_id ON contact_imports (callout_id);
CREATE INDEX index_contact_imports_open ON contact_imports (updated_at) WHERE status IN ('queued', 'running');

CREATE TABLE contact_import_errors (
    contact_import_id bigint NOT NULL REFERENCES contact_imports(id) ON DELETE CASCADE,
    line integer NOT NULL,
    cells jsonb NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (contact_import_id, line)
);

CREATE FUNCTION scfm_jsonb_deep_merge(old jsonb, new jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(old) = 'object' AND jsonb_typeof(new) = 'object' THEN (
            SELECT coalesce(jsonb_object_agg(key, CASE
                WHEN old ? key AND jsonb_typeof(old -> key) = 'object' AND jsonb_typeof(new -> key) = 'object'
                THEN scfm_jsonb_deep_merge(old -> key, new -> key)
                WHEN new ? key THEN new -> key
                ELSE old -> key END), '{}'::jsonb)
            FROM (SELECT jsonb_object_keys(old) AS key UNION SELECT jsonb_object_keys(new)) AS keys)
        ELSE new END
$$;
""")


def downgrade():
    op.execute("DROP FUNCTION scfm_jsonb_deep_merge(jsonb, jsonb)")
    op.execute("DROP TABLE contact_import_errors")
    op.execute("DROP TABLE contact_imports")
