"""provider_account_sids: each provider account SID belongs to one account, whichever column names it
(twilio_account_sid or somleng_account_sid), or a webhook naming it could not be attributed. A trigger on
accounts keeps the table, whose primary key is the constraint; a clash is raised as a unique violation of
the column's own index, so that it reads `<column> has already been taken`. An account may name one SID in
both columns. Accounts that already clash keep their values (the oldest owns the SID); the webhook refuses
a SID that more than one account names until they are changed.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CLAIM = """
    IF NEW.{column} IS NOT NULL THEN
        INSERT INTO provider_account_sids (sid, account_id) VALUES (NEW.{column}, NEW.id)
            ON CONFLICT (sid) DO NOTHING;
        IF (SELECT account_id FROM provider_account_sids WHERE sid = NEW.{column}) <> NEW.id THEN
            RAISE EXCEPTION 'duplicate provider account sid'
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'index_accounts_on_{column}',
                      TABLE = 'accounts', COLUMN = '{column}';
        END IF;
    END IF;
"""


def upgrade():
    op.execute("""
        CREATE TABLE provider_account_sids (
            sid text PRIMARY KEY,
            account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE
        )""")
    op.execute("CREATE INDEX index_provider_account_sids_on_account_id ON provider_account_sids (account_id)")
    op.execute("""
        INSERT INTO provider_account_sids (sid, account_id)
        SELECT sid, min(id) FROM (
            SELECT twilio_account_sid AS sid, id FROM accounts WHERE twilio_account_sid IS NOT NULL
            UNION ALL
            SELECT somleng_account_sid, id FROM accounts WHERE somleng_account_sid IS NOT NULL
        ) named GROUP BY sid""")
    op.execute(f"""
        CREATE FUNCTION accounts_claim_provider_sids() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM provider_account_sids
            WHERE account_id = NEW.id AND sid IS DISTINCT FROM NEW.twilio_account_sid
              AND sid IS DISTINCT FROM NEW.somleng_account_sid;
            {CLAIM.format(column="twilio_account_sid")}
            {CLAIM.format(column="somleng_account_sid")}
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE TRIGGER accounts_claim_provider_sids
        AFTER INSERT OR UPDATE OF twilio_account_sid, somleng_account_sid ON accounts
        FOR EACH ROW EXECUTE FUNCTION accounts_claim_provider_sids()""")


def downgrade():
    op.execute("DROP TRIGGER accounts_claim_provider_sids ON accounts")
    op.execute("DROP FUNCTION accounts_claim_provider_sids()")
    op.execute("DROP TABLE provider_account_sids")
