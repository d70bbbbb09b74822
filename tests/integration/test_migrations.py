"""The migrations go down and up again: each downgrade puts back the schema its revision found (functions,
triggers, indexes, columns, constraints; a function's comments aside), and the head is the same after a
round trip."""
from __future__ import annotations

import re
import uuid

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from scfm.adapters.postgres import db

SCHEMA = """
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' '
       || coalesce(column_default, '')
  FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'alembic_version'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'alembic_version'
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE NOT t.tgisinternal
UNION ALL
SELECT 'function ' || pg_get_functiondef(p.oid) FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
 WHERE connamespace = 'public'::regnamespace AND conrelid <> 'alembic_version'::regclass
"""


@pytest.fixture
def engine(server_urls):
    server_url = server_urls[0]
    name = f"scfm_test_migrations_{uuid.uuid4().hex[:10]}"
    engine = create_engine(db.create_database(server_url, name))
    try:
        yield engine
    finally:
        engine.dispose()
        db.drop_database(server_url, name)


def _migrate(engine, direction, revision: str) -> set[str]:
    """Migrate to `revision`; the schema there."""
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        direction(config, revision)
    with engine.connect() as connection:
        return {" ".join(re.sub(r"--[^\n]*", "", each).split()) for each in connection.execute(text(SCHEMA)).scalars()}


@pytest.mark.parametrize("back_to", ["0010", "0009", "0008", "0007", "base"])
def test_down_and_up_again(engine, back_to):
    there = _migrate(engine, command.upgrade, back_to) if back_to != "base" else set()
    head = _migrate(engine, command.upgrade, "head")
    assert _migrate(engine, command.downgrade, back_to) == there
    assert _migrate(engine, command.upgrade, "head") == head


def test_the_dialers_index_at_head_and_at_0008(engine):
    due = "SELECT indexdef FROM pg_indexes WHERE indexname = 'index_phone_calls_due_for_dialing'"
    _migrate(engine, command.upgrade, "head")
    with engine.connect() as connection:
        assert connection.execute(text(due)).scalar_one().endswith(
            "WHERE ((status = 'queued'::text) AND (dial_claimed_at IS NULL))")
    _migrate(engine, command.downgrade, "0008")
    with engine.connect() as connection:
        assert connection.execute(text(due)).scalar_one().endswith("WHERE (status = 'queued'::text)")


def test_a_nan_rate_stored_before_the_rule_is_repaired_and_refused_from_then_on(engine):
    from sqlalchemy.exc import IntegrityError

    _migrate(engine, command.upgrade, "0010")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO accounts (calls_per_second) VALUES ('NaN'), (2.5)"))
    _migrate(engine, command.upgrade, "head")
    with engine.begin() as connection:
        rates = connection.execute(text("SELECT calls_per_second FROM accounts ORDER BY id")).scalars().all()
        assert rates == [None, 2.5]  # NaN: no rate of its own, the default's
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("UPDATE accounts SET calls_per_second = 'NaN'"))

