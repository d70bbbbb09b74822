"""The unit of work: one transaction, and the repositories that act within it."""
from __future__ import annotations

from sqlalchemy.engine import Engine

from scfm.adapters.postgres import repositories as repos
from scfm.adapters.postgres.batch_operations import BatchOperationQueries
from scfm.adapters.postgres.dial_queue import PostgresDialQueue
from scfm.adapters.postgres.provider_reports import ProviderReports


class SqlUnitOfWork:
    def __init__(self, engine: Engine, account_id: int | None = None):
        self.engine = engine
        self.account_id = account_id
        self.conn = None

    def __enter__(self) -> "SqlUnitOfWork":
        self.conn = self.engine.connect()
        self.conn.begin()
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
        self.provider_reports = ProviderReports(self.conn)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.conn.in_transaction():
                self.conn.rollback()
        finally:
            self.conn.close()
            self.conn = None

    def scope(self, account_id: int) -> None:
        """Scope this unit of work to an account found within it (the webhook finds it by its AccountSid)."""
        self.account_id = account_id
        for repo in vars(self).values():
            if isinstance(repo, repos.Repository):
                repo.account_id = account_id

    def commit(self) -> None:
        self.conn.commit()
        self.conn.begin()

    def rollback(self) -> None:
        self.conn.rollback()
        self.conn.begin()
