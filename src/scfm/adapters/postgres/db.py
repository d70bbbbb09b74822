"""Engines, migrations and throwaway databases."""
from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import Engine, make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlalchemy_url(url: str) -> str:
    """Accept postgres:// and postgresql:// as users write them; SQLAlchemy wants a driver name."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """`?prepared_statements=false` on the URL (as in Rails) turns off the webhook's prepared statements."""
    parsed = make_url(sqlalchemy_url(url))
    prepared = str(parsed.query.get("prepared_statements", "true")).lower() not in ("false", "0", "no", "off")
    engine = create_engine(
        parsed.difference_update_query(["prepared_statements"]), pool_size=pool_size, max_overflow=10,
        connect_args={"connect_timeout": 5}, execution_options={"prepared_statements": prepared},
        hide_parameters=True,  # a failed statement's error (logged) must not carry tokens or tenants' data
    )
    _ping_connections_that_were_idle(engine)
    return engine


def _ping_connections_that_were_idle(engine: Engine) -> None:
    """Like the pool's pre-ping, but only for a connection that sat in the pool for a while: one in steady
    use was alive a moment ago, and a ping per checkout is a round trip per request (an eighth of the
    webhook's time). A connection that dies in use ends its request with a 503 and empties the pool."""

    @event.listens_for(engine, "checkin")
    def checked_in(_dbapi_connection, record):
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection, record, _proxy):
        idle_since = record.info.get("checked_in_at")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError(str(error)) from error  # the pool connects afresh and tries again


def described(error: BaseException) -> str:
    """A database error as a log may show it: its class, SQLSTATE and PostgreSQL's first message line, never
    its statement's parameters nor PostgreSQL's DETAIL, which quotes the failing row (auth tokens included)."""
    orig = getattr(error, "orig", None)
    if orig is None:
        return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    message = getattr(getattr(orig, "diag", None), "message_primary", None) or (str(orig).splitlines() or [""])[0]
    return f"{type(orig).__name__} {getattr(orig, 'pgcode', None) or ''}: {message}"


def upgrade(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(727001)"))  # one migrator at a time
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def create_database(server_url: str, name: str) -> str:
    """Create database `name` on the server of `server_url`; return its URL."""
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(sqlalchemy_url(server_url)).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
