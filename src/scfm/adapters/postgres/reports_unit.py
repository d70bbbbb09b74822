"""The webhook's unit of work: a DBAPI connection of the pool in one transaction, on which the webhook's two
statements run, and nothing else built. SQLAlchemy's Connection and a full unit of work (a dozen repositories)
cost the webhook as much CPU as its statements; they are made here only when needed: for a call the
statements do not find (its repositories), for an error (SQLAlchemy raises it as it raises any other), and
while someone listens to the engine's statements (the events fire as for any other statement)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine

from scfm.adapters.postgres.provider_reports import Prepared, ProviderReports
from scfm.adapters.postgres.uow import SqlUnitOfWork
from scfm.domain import ports


class SqlReportsUnitOfWork:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.provider_reports: ports.ProviderReports = ProviderReports(self)
        self.dbapi: Any = None  # the pool's connection, while the unit of work is entered
        self.conn: Connection | None = None  # SQLAlchemy's, over the same transaction, once needed

    def __enter__(self) -> "SqlReportsUnitOfWork":
        self.dbapi = self.engine.raw_connection()
        return self

    def __exit__(self, *exc) -> None:
        conn, dbapi = self.conn, self.dbapi
        self.conn = self.dbapi = None
        if conn is None:
            dbapi.close()  # back to the pool, which rolls back what was not committed
            return
        try:
            if conn.in_transaction():
                conn.rollback()
        finally:
            conn.close()  # and the pool's connection with it

    def commit(self) -> None:
        if self.conn is not None and self.conn.in_transaction():  # begun by the repositories' unit of work
            self.conn.commit()
        else:
            self.dbapi.commit()

    def for_account(self, account_id: int) -> SqlUnitOfWork:
        """The unit of work of this transaction, scoped to `account_id`; this one ends the transaction."""
        conn = self.connection()
        if not conn.in_transaction():
            conn.begin()  # SQLAlchemy's record of the transaction the DBAPI connection is in
        return SqlUnitOfWork.within(self.engine, conn, account_id)

    def connection(self) -> Connection:
        """SQLAlchemy's Connection over the pool's connection (and its transaction), made once needed."""
        if self.conn is None:
            self.conn = Connection(self.engine, connection=self.dbapi)
        return self.conn

    def first(self, statement: Prepared, params: dict[str, Any]) -> tuple | None:
        """The statement's first row, PREPAREd on this connection first unless DATABASE_URL says
        prepared_statements=false (the set of those prepared is forgotten with the connection)."""
        if not self.engine.get_execution_options().get("prepared_statements", True):
            return self._execute(statement.sql, params)
        prepared = self.dbapi.info.setdefault("prepared_statements", set())
        if statement.name not in prepared:
            self._execute(statement.prepare, None)
            prepared.add(statement.name)
        return self._execute(statement.execute, params)

    def _execute(self, sql: str, params: dict[str, Any] | None) -> tuple | None:
        cursor = self.dbapi.cursor()
        try:
            if self.engine.dispatch.before_cursor_execute:
                conn = self.connection()
                conn.dispatch.before_cursor_execute(conn, cursor, sql, params, None, False)
            cursor.execute(sql, params)
            if self.engine.dispatch.after_cursor_execute:
                conn = self.connection()
                conn.dispatch.after_cursor_execute(conn, cursor, sql, params, None, False)
            return cursor.fetchone() if cursor.description else None
        except self.engine.dialect.loaded_dbapi.Error as error:
            # raised as SQLAlchemy raises it: wrapped, its parameters hidden, the pool emptied if the
            # connection was lost
            self.connection()._handle_dbapi_exception(error, sql, params, cursor, None)
            raise  # not reached: the handler raises
        finally:
            cursor.close()
