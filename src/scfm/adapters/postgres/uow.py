"""The unit of work: one transaction, and the repositories that act within it."""
from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine

from scfm.adapters.postgres import repositories as repos
from scfm.adapters.postgres.batch_operations import BatchOperationQueries
from scfm.adapters.postgres.contact_imports import ContactImportRepository, ContactImportStore
from scfm.adapters.postgres.exports import Exports
from scfm.adapters.postgres.dial_queue import PostgresDialQueue
from scfm.adapters.postgres.statistics import PostgresStatistics
from scfm.domain import ports
from scfm.domain.dial_queue import DialQueue


class SqlUnitOfWork:
    """Scoped to `account_id` for good (None: the whole server's work)."""

    accounts: ports.AccountRepository
    access_tokens: ports.AccessTokenRepository
    contacts: ports.ContactRepository
    callouts: ports.CalloutRepository
    callout_participations: ports.CalloutParticipationRepository
    phone_calls: ports.PhoneCallRepository
    dial_queue: DialQueue
    remote_phone_call_events: ports.RemotePhoneCallEventRepository
    batch_operations: ports.BatchOperationRepository
    batches: ports.BatchQueries
    contact_imports: ports.ContactImportRepository
    imports: ports.ContactImportStore
    exports: ports.Exports
    statistics: ports.StatisticsStore

    def __init__(self, engine: Engine, account_id: int | None):
        self.engine = engine
        self.account_id = account_id
        self.conn: Any = None  # the Connection, while the unit of work is entered

    def __enter__(self) -> "SqlUnitOfWork":
        conn = self.engine.connect()
        conn.begin()
        self._open(conn)
        return self

    def _open(self, conn: Connection) -> None:
        self.conn = conn
        a = self.account_id
        self.accounts = repos.AccountRepository(self.conn, a)
        self.access_tokens = repos.AccessTokenRepository(self.conn, a)
        self.contacts = repos.ContactRepository(self.conn, a)
        self.callouts = repos.CalloutRepository(self.conn, a)
        self.callout_participations = repos.CalloutParticipationRepository(self.conn, a)
        self.phone_calls = repos.PhoneCallRepository(self.conn, a)
        self.remote_phone_call_events = repos.RemotePhoneCallEventRepository(self.conn, a)
        self.batch_operations = repos.BatchOperationRepository(self.conn, a)
        self.batches = BatchOperationQueries(self)
        self.dial_queue = PostgresDialQueue(self.conn)
        self.contact_imports = ContactImportRepository(self.conn, a)
        self.imports = ContactImportStore(self.conn)
        self.exports = Exports(self.conn)
        self.statistics = PostgresStatistics(self.conn)

    def __exit__(self, *exc) -> None:
        try:
            if self.conn.in_transaction():
                self.conn.rollback()
        finally:
            self.conn.close()
            self.conn = None

    @classmethod
    def within(cls, engine: Engine, conn: Connection, account_id: int | None) -> "SqlUnitOfWork":
        """A unit of work in the transaction begun on `conn`, which its owner ends: this one is not entered."""
        uow = cls(engine, account_id)
        uow._open(conn)
        return uow

    def commit(self) -> None:
        self.conn.commit()
        self.conn.begin()

    def rollback(self) -> None:
        self.conn.rollback()
        self.conn.begin()
