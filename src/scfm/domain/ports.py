"""Ports: what the services need from the outside world, as protocols."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

from scfm.domain import model
from scfm.domain.filters import Condition

if TYPE_CHECKING:  # batch_operation needs the provider's rules, which need this module's errors
    from scfm.domain.dial_queue import DialQueue  # it names RemoteCall, defined here
    from scfm.domain.batch_operation import Plan
    from scfm.domain.contact_import import ChunkCounts, ContactImport, Refusal, Row


@dataclass(frozen=True)
class ProviderCredentials:
    platform: str  # twilio or somleng
    account_sid: str
    auth_token: str
    base_url: str | None = None  # None: the platform's public API


@dataclass(frozen=True)
class RemoteCall:
    sid: str
    status: str | None
    direction: str | None
    duration: int | None
    response: dict[str, Any] = field(default_factory=dict)  # the provider's JSON, as it answered
    created_at: datetime | None = None


class ProviderError(Exception):
    """Base of what a provider call can end in, besides a RemoteCall."""


class ProviderRefused(ProviderError):
    """The provider answered and refused (a 4xx): the call will not happen."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class ProviderRateLimited(ProviderError):
    """429 or Twilio's 20429: nothing happened, try the same request later."""


class ProviderUnreachable(ProviderError):
    """The request never reached the provider (no connection): safe to try again."""


class OutcomeUnknown(ProviderError):
    """The request may have reached the provider (timeout, reset, 5xx): never blindly repeat it."""


class SlotMissed(ProviderError):
    """Nothing was sent: asked just before the request would have left, `on_time` said it was too late."""


class CallProvider(Protocol):
    def create_call(self, credentials: ProviderCredentials, to: str, params: dict[str, Any],
                    on_time: Callable[[], bool] | None = None) -> RemoteCall:
        """The call created. `on_time` is asked at the last moment before the request leaves: False, and
        SlotMissed is raised with nothing sent."""

    def fetch_call(self, credentials: ProviderCredentials, sid: str) -> RemoteCall: ...

    def find_calls(self, credentials: ProviderCredentials, to: str) -> list[RemoteCall]:
        """The account's latest calls to `to`, newest first (created_at None where it cannot be read)."""


class JobQueue(Protocol):
    """Delivers work to the workers, at most one pending job per unit of work: asking again for work whose
    job is still pending does nothing. Each answers whether (or for how many units) a job was enqueued."""

    def dial_due(self, account_id: int) -> bool:
        """Wake the dialers up for the account's newly queued calls."""

    def fetch_remote_call(self, phone_call_id: int) -> bool: ...

    def fetch_remote_calls(self, phone_call_ids: list[int]) -> int: ...

    def reconcile_unknown_outcomes(self, phone_call_ids: list[int]) -> int: ...

    def run_batch_operation(self, batch_operation_id: int) -> bool: ...

    def run_contact_import(self, contact_import_id: int) -> bool: ...

    def run_call_plan(self, callout_id: int) -> bool:
        """Run the callout's call plan once now (after start or resume; the sweeper runs it too)."""

    def pending(self) -> int:
        """How many jobs wait for a worker."""


class ContactImportJobs(Protocol):
    """What an upload asks of the job queue (the command line runs the import itself and asks nothing)."""

    def run_contact_import(self, contact_import_id: int) -> object: ...


class SignatureValidator(Protocol):
    def __call__(self, auth_token: str, url: str, params: Any, signature: str) -> bool: ...


# ---------------------------------------------------------------- the unit of work and its repositories

@dataclass(frozen=True)
class Within:
    """A nested route's parent: `/api/callouts/1/phone_calls` lists the phone calls within callout 1.
    `resource` is contact, callout, callout_participation or phone_call; each repository knows the ones
    that can hold its records."""
    resource: str
    id: int

    @classmethod
    def of(cls, parent: model.Entity) -> Within:
        return cls(_PARENTS[type(parent)], model.stored(parent.id))


_PARENTS: dict[type[model.Entity], str] = {
    model.Contact: "contact", model.Callout: "callout", model.CalloutParticipation: "callout_participation",
    model.PhoneCall: "phone_call",
}


E = TypeVar("E", bound=model.Entity)


class Repository(Protocol[E]):
    """The records of one kind that the unit of work's account may see (all of them, unscoped)."""

    def find(self, id_: Any, for_update: bool = False) -> E | None: ...

    def get(self, id_: Any, for_update: bool = False) -> E:
        """The record, or NotFound."""

    def list(self, conditions: Sequence[Condition] = (), within: Sequence[Within] = (), page: int = 1,
             per_page: int = 25) -> tuple[list[E], int, bool]:
        """A page of matching records by id, the total, and whether the total is an estimate."""

    def add(self, entity: E) -> E: ...

    def save(self, entity: E) -> E:
        """Write the fields changed since the entity was loaded; the record as stored."""

    def remove(self, entity: E) -> None: ...


class HasDependents(Protocol):
    def has_dependents(self, id_: int) -> bool: ...


class AccountRepository(Repository[model.Account], HasDependents, Protocol):
    def super_admin_exists(self) -> bool: ...


class AccessTokenRepository(Repository[model.AccessToken], Protocol):
    def account_for_digest(self, digest: str) -> model.Account | None: ...

    def start_session(self, token_digest: str, session_digest: str, max_age_seconds: float) -> bool:
        """A dashboard session of the token (False: no such token). Sessions older than max_age are removed, and
        the token's oldest beyond model.MAX_SESSIONS_PER_TOKEN."""

    def account_for_session(self, session_digest: str, max_age_seconds: float) -> tuple[model.Account, int] | None:
        """The account of a session younger than max_age that was not ended, and its token's id; or None."""

    def end_session(self, session_digest: str) -> None: ...


class ContactRepository(Repository[model.Contact], HasDependents, Protocol):
    def by_msisdn(self, msisdn: str) -> model.Contact | None: ...

    def add_if_missing(self, contact: model.Contact) -> model.Contact:
        """Insert unless the account already has the number (a concurrent request may have added it)."""


class CalloutRepository(Repository[model.Callout], HasDependents, Protocol):
    pass


class CalloutParticipationRepository(Repository[model.CalloutParticipation], HasDependents, Protocol):
    pass


class PhoneCallRepository(Repository[model.PhoneCall], HasDependents, Protocol):
    """Phone calls as records; the dialer's view of them is the dial queue (`scfm.domain.dial_queue`)."""


class RemotePhoneCallEventRepository(Repository[model.RemotePhoneCallEvent], Protocol):
    pass


class BatchOperationRepository(Repository[model.BatchOperation], HasDependents, Protocol):
    def stalled(self, older_than_seconds: float) -> list[int]: ...

    def mark_started(self, operation_id: int) -> None: ...

    def mark_finished(self, operation_id: int) -> None: ...

    def record_error(self, operation_id: int, message: str) -> None: ...


class BatchQueries(Protocol):
    """What a batch operation selects and does, set-based."""

    def preview(self, operation: model.BatchOperation, plan: Plan, kind: str, page: int,
                per_page: int) -> tuple[list[Any], int, bool]:
        """A page of the candidates, their total, and whether the total is an estimate (past 10,000)."""

    def preview_is_empty(self, operation: model.BatchOperation, plan: Plan) -> bool: ...

    def results(self, operation: model.BatchOperation, kind: str, page: int,
                per_page: int) -> tuple[list[Any], int, bool]: ...

    def run(self, operation: model.BatchOperation, plan: Plan) -> list[int]: ...

    def analyze(self, operation: model.BatchOperation) -> None: ...


class ContactImportRepository(Repository["ContactImport"], Protocol):
    def stalled(self, older_than_seconds: float) -> list[int]:
        """Queued or running imports that have not moved for a while: their job was lost."""

    def count_attempt(self, import_id: int) -> int:
        """Count one more delivery of the import's job; how many there have been."""


class ContactImportStore(Protocol):
    """The bulk work of imports: the uploaded rows, the chunks written from them, the rows refused."""

    def create_tables(self, import_id: int) -> None: ...

    def copy_rows(self, import_id: int, rows: Iterable[tuple[list[str], Row | Refusal]]) -> int:
        """Store rows (their cells, normalised or refused) as they come, then refuse each number's later
        lines; how many."""

    def drop_tables(self, import_id: int) -> None: ...

    def lock(self, import_id: int) -> ContactImport | None:
        """The import, locked for this transaction."""

    def write_chunk(self, contact_import: ContactImport, limit: int) -> tuple[int, ChunkCounts] | None:
        """Write the next `limit` rows after the import's last line; (the chunk's last line, its counts), or
        None when none is left."""

    def record_chunk(self, import_id: int, last_line: int, counts: ChunkCounts) -> None: ...

    def save_status(self, contact_import: ContactImport) -> None: ...

    def analyze(self) -> None: ...

    def errors(self, import_id: int) -> Iterator[tuple[int, list[str], str]]:
        """The refused rows by line: (line, cells, reason)."""


class Exports(Protocol):
    """Every record of a repository that filters match, read in one snapshot."""

    def snapshot(self) -> None:
        """One snapshot for every statement that follows."""

    def metadata_paths(self, repo: Repository[Any], conditions: Sequence[Condition],
                       within: Sequence[Within]) -> list[tuple[str, ...]]: ...

    def count(self, repo: Repository[Any], conditions: Sequence[Condition], within: Sequence[Within]) -> int: ...

    def rows(self, repo: Repository[Any], conditions: Sequence[Condition], within: Sequence[Within],
             columns: tuple[str, ...], shown: dict[str, tuple[str, str]] | None = None) -> Iterator[tuple[Any, ...]]:
        """The matching records by id, as `columns` (times as the API shows them) then metadata."""


class StatisticsStore(Protocol):
    """Callout statistics (issue 12): the counters the database keeps per callout, and its participations as
    result rows."""

    def now(self) -> datetime:
        """The database's time, which the minute counters are stamped with."""

    def state_counts(self, callout_ids: Sequence[int]) -> list[tuple[int, str, int, int, int]]:
        """(callout id, raw state, participations, calls, attempts)."""

    def duration_counts(self, callout_ids: Sequence[int]) -> list[tuple[int, int, int]]:
        """(callout id, seconds, answered participations whose latest call lasted that long)."""

    def minute_counts(self, callout_ids: Sequence[int], since: datetime) -> list[tuple[int, datetime, int]]:
        """(callout id, minute, attempts made in it) from `since` on."""

    def callouts(self, account_id: int) -> list[model.Callout]:
        """The account's callouts that have counters (their id, status and call plan)."""

    def answer_paths(self, callout_id: int) -> list[tuple[str, ...]]:
        """The metadata paths of the callout's latest answered calls."""

    def contact_paths(self, callout_id: int) -> list[tuple[str, ...]]:
        """The metadata paths of the callout's contacts."""

    def results(self, callout_id: int) -> Iterator[tuple[Any, ...]]:
        """Its participations by id: (id, contact id, msisdn, calls, attempts, last status, outcome,
        finished_at, duration of the latest answered call, the contact's metadata, that call's metadata)."""


@dataclass
class ReportTarget:
    account: model.Account  # its id, provider account SIDs and auth tokens: what the webhook reads of it
    call: model.PhoneCall | None  # locked until the unit of work ends
    context: dict[str, Any] | None  # the metadata the call's flow sees: callout's, then participation's, then its own


class ProviderReports(Protocol):
    """The webhook's reads and writes, the busiest path there is."""

    def find(self, account_sid: str, call_sid: str | None) -> ReportTarget | None:
        """The account a webhook names and, locked, the call of that account it reports on."""

    def record(self, call: model.PhoneCall, event: model.RemotePhoneCallEvent,
               request_digest: bytes) -> model.RemotePhoneCallEvent | None:
        """Save the call's changes and add the event together; None (nothing saved) for a replayed request."""


class UnitOfWork(Protocol):
    """One transaction, and the repositories that act within it, scoped to the account it was made for (or
    to none, for the server's own work: the sweeper, the super admin's accounts)."""

    account_id: int | None
    accounts: AccountRepository
    access_tokens: AccessTokenRepository
    contacts: ContactRepository
    callouts: CalloutRepository
    callout_participations: CalloutParticipationRepository
    phone_calls: PhoneCallRepository
    dial_queue: DialQueue
    remote_phone_call_events: RemotePhoneCallEventRepository
    batch_operations: BatchOperationRepository
    batches: BatchQueries
    contact_imports: ContactImportRepository
    imports: ContactImportStore
    exports: Exports
    statistics: StatisticsStore

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


# What the services that work across accounts are given: a unit of work for an account, or None for the server.
UnitsOfWork = Callable[[int | None], UnitOfWork]


class ReportsUnitOfWork(Protocol):
    """The webhook's transaction, as lean as the busiest path needs: its two statements (provider_reports),
    and the unit of work of the same transaction only for a call they do not find (an inbound call's first
    request, a call adopted by the id in its callback URL)."""

    provider_reports: ProviderReports

    def __enter__(self) -> ReportsUnitOfWork: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None: ...

    def for_account(self, account_id: int) -> UnitOfWork:
        """The unit of work of this transaction, scoped to an account found within it."""

    def commit(self) -> None: ...

