"""Alembic environment: runs migrations on the connection or URL it is given."""
from alembic import context
from sqlalchemy import create_engine

config = context.config
connection = config.attributes.get("connection")


def run(conn):
    context.configure(connection=conn, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url") or "").connect() as conn:
        run(conn)
