"""accounts.calls_per_second: NaN is no rate. PostgreSQL orders NaN above every number, so the column's check
(`> 0`) let it in; the API refuses it (422) but rows written before that rule hold it, and every page or
statistic that estimates from the rate failed on them, as did the dialer. Those rows get no rate of their own
(the default's), and the check now refuses NaN too.

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("UPDATE accounts SET calls_per_second = NULL WHERE calls_per_second = 'NaN'")
    op.execute("ALTER TABLE accounts DROP CONSTRAINT accounts_calls_per_second_check, "
               "ADD CONSTRAINT accounts_calls_per_second_check CHECK (calls_per_second > 0 AND calls_per_second <> 'NaN')")


def downgrade():
    op.execute("ALTER TABLE accounts DROP CONSTRAINT accounts_calls_per_second_check, "
               "ADD CONSTRAINT accounts_calls_per_second_check CHECK (calls_per_second > 0)")
