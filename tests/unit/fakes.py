"""In-memory stand-ins for the ports (as in "Architecture Patterns with Python"): a unit of work over a
dict of records, repositories that keep the same rules as the SQL ones where the services rely on them, a
clock that is set rather than waited for, and a job queue that records what it was asked for."""
from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from scfm.domain import model, ports
from scfm.domain import state_machines as sm
from scfm.domain.errors import NotFound
from scfm.domain.dial_queue import CallsToMake, PlannedCallout
from scfm.domain.ports import ReportTarget, RemoteCall, Within

AWAITING_NEWS = (sm.PhoneCallStatus.REMOTELY_QUEUED.value, sm.PhoneCallStatus.IN_PROGRESS.value,
                 sm.PhoneCallStatus.REMOTE_FETCH_QUEUED.value)
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Database:
    """The committed records, by repository name then id, and a log of every committed write."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.tables: dict[str, dict[int, Any]] = {}
        self.events: dict[tuple[int, bytes], int] = {}  # (call id, request digest): event id
        self.next_id = 1
        self.writes: list[tuple] = []  # ("add" | "save" | "remove", repository, id, fields)

    def insert(self, name: str, entity: Any) -> Any:
        """A record as if it had been there before the test (not logged as a write)."""
        entity = copy.deepcopy(entity)
        if entity.id is None:
            entity.id, self.next_id = self.next_id, self.next_id + 1
        entity.created_at = entity.created_at or self.clock()
        entity.updated_at = entity.updated_at or entity.created_at
        self.tables.setdefault(name, {})[entity.id] = entity
        return entity

    def get(self, name: str, id_: int) -> Any:
        return self.tables[name][id_]


class InMemoryRepository:
    name = ""
    scoped = True

    def __init__(self, uow: FakeUnitOfWork):
        self.uow = uow

    @property
    def rows(self) -> dict[int, Any]:
        return self.uow.tables.setdefault(self.name, {})

    def _visible(self, entity: Any) -> bool:
        account_id = self.uow.account_id
        return not self.scoped or account_id is None or entity.account_id == account_id

    def _loaded(self, entity: Any) -> Any:
        loaded = copy.deepcopy(entity)
        loaded.mark_clean()
        return loaded

    def find(self, id_: Any, for_update: bool = False) -> Any | None:
        try:
            entity = self.rows.get(int(id_))
        except (TypeError, ValueError):
            return None
        return self._loaded(entity) if entity is not None and self._visible(entity) else None

    def get(self, id_: Any, for_update: bool = False) -> Any:
        entity = self.find(id_, for_update)
        if entity is None:
            raise NotFound(self.name)
        return entity

    def all(self) -> list[Any]:
        return [self._loaded(e) for _, e in sorted(self.rows.items()) if self._visible(e)]

    def list(self, conditions=(), within: Any = (), page: int = 1, per_page: int = 25):
        if conditions:
            raise NotImplementedError("filters are the SQL adapter's; test them through the API")
        items = [e for e in self.all() if all(self._within(e, parent) for parent in within)]
        return items[(page - 1) * per_page:page * per_page], len(items), False

    def _within(self, entity: Any, parent: Within) -> bool:
        return getattr(entity, f"{parent.resource}_id") == parent.id

    def add(self, entity: Any) -> Any:
        stored = copy.deepcopy(entity)
        stored.id, self.uow.db.next_id = self.uow.db.next_id, self.uow.db.next_id + 1
        stored.created_at = stored.updated_at = self.uow.db.clock()
        self.rows[stored.id] = stored
        self.uow.writes.append(("add", self.name, stored.id, None))
        return self._loaded(stored)

    def save(self, entity: Any) -> Any:
        changed = entity.changed_fields() - {"id", "created_at", "updated_at"}
        stored = self.rows[entity.id]
        for name in changed:
            setattr(stored, name, copy.deepcopy(getattr(entity, name)))
        stored.updated_at = self.uow.db.clock()
        self.uow.writes.append(("save", self.name, entity.id, frozenset(changed)))
        return self._loaded(stored)

    def remove(self, entity: Any) -> None:
        del self.rows[entity.id]
        self.uow.writes.append(("remove", self.name, entity.id, None))

    def has_dependents(self, id_: int) -> bool:
        return False


class Accounts(InMemoryRepository):
    name, scoped = "accounts", False

    def super_admin_exists(self) -> bool:
        return any(a.is_super_admin for a in self.rows.values())


class AccessTokens(InMemoryRepository):
    name = "access_tokens"

    def account_for_digest(self, digest: str) -> model.Account | None:
        token = next((t for t in self.rows.values() if t.token_digest == digest), None)
        return Accounts(self.uow).find(token.account_id) if token else None

    @property
    def _sessions(self) -> dict[str, tuple[int, datetime]]:
        """Dashboard sessions: their digest's (token id, started at)."""
        return self.uow.tables.setdefault("dashboard_sessions", {})  # type: ignore[return-value]

    def start_session(self, token_digest: str, session_digest: str, max_age_seconds: float) -> bool:
        now, sessions = self.uow.db.clock(), self._sessions
        for digest in [d for d, (_id, at) in sessions.items() if (now - at).total_seconds() > max_age_seconds]:
            del sessions[digest]
        token = next((t for t in self.rows.values() if t.token_digest == token_digest), None)
        if token is None:
            return False
        sessions[session_digest] = (token.id, now)
        mine = [digest for digest, (token_id, _at) in sessions.items() if token_id == token.id]
        for digest in mine[:-model.MAX_SESSIONS_PER_TOKEN]:  # in the order they started
            del sessions[digest]
        return True

    def account_for_session(self, session_digest: str, max_age_seconds: float) -> tuple[model.Account, int] | None:
        token_id, at = self._sessions.get(session_digest, (None, None))
        token = self.rows.get(token_id) if token_id is not None else None
        if token is None or at is None or (self.uow.db.clock() - at).total_seconds() > max_age_seconds:
            return None
        account = Accounts(self.uow).find(token.account_id)
        return (account, token.id) if account is not None else None

    def end_session(self, session_digest: str) -> None:
        self._sessions.pop(session_digest, None)


class Contacts(InMemoryRepository):
    name = "contacts"

    def by_msisdn(self, msisdn: str) -> model.Contact | None:
        return next((c for c in self.all() if c.msisdn == msisdn), None)

    def add_if_missing(self, contact: model.Contact) -> model.Contact:
        return self.by_msisdn(model.stored(contact.msisdn)) or self.add(contact)


class Callouts(InMemoryRepository):
    name = "callouts"


class CalloutParticipations(InMemoryRepository):
    name = "callout_participations"


class PhoneCalls(InMemoryRepository):
    """The queries the sweeper and the reconciliation use, as the SQL adapter answers them, on the clock."""
    name = "phone_calls"

    def _older(self, at: datetime | None, seconds: float) -> bool:
        return at is not None and at < self.uow.db.clock() - timedelta(seconds=seconds)

    def _stored(self) -> list[model.PhoneCall]:
        return [c for _, c in sorted(self.rows.items())]

    def _open_claim(self, call: model.PhoneCall) -> bool:
        return call.status == "queued" and call.dial_claimed_at is not None and call.remote_call_id is None

    def _waiting(self, call: model.PhoneCall) -> bool:
        return (call.status == "queued" and call.dial_claimed_at is None and call.next_attempt_at is not None
                and call.next_attempt_at <= self.uow.db.clock())

    def _due(self, call: model.PhoneCall) -> bool:
        """Waiting, and not held by its callout (paused or stopped)."""
        if call.callout_participation_id is None:
            return self._waiting(call)
        participation = self.uow.tables["callout_participations"][call.callout_participation_id]
        held = self.uow.tables["callouts"][participation.callout_id].status in ("paused", "stopped")
        return self._waiting(call) and not held

    def accounts_with_due_calls(self) -> list[int]:
        """As the SQL adapter answers it: held calls too (the dispatcher finds none to dial, and stops)."""
        return sorted({model.stored(c.account_id) for c in self._stored() if self._waiting(c)})

    def due_for_dialing_exists(self, account_id: int) -> bool:
        return any(c.account_id == account_id and self._due(c) for c in self._stored())

    def in_flight_count(self, account_id: int) -> int:
        return sum(c.account_id == account_id and (c.status in AWAITING_NEWS or self._open_claim(c))
                   for c in self._stored())

    def claim_next_due(self, account_id: int) -> model.PhoneCall | None:
        due = sorted((c for c in self._stored() if c.account_id == account_id and self._due(c)),
                     key=lambda c: (c.next_attempt_at, c.id))
        if not due:
            return None
        call = due[0]
        call.dial_claimed_at, call.dial_attempts = self.uow.db.clock(), call.dial_attempts + 1
        self.uow.writes.append(("claim", self.name, call.id, None))
        return self._loaded(call)

    def record_dial(self, phone_call_id: int, *, remote: RemoteCall | None = None,
                    refusal: str | None = None) -> None:
        call = self.rows[phone_call_id]
        call.remotely_queued_at = call.remotely_queued_at or self.uow.db.clock()
        if remote is not None:
            call.status = "remotely_queued" if call.status == "queued" else call.status
            call.remote_call_id = call.remote_call_id or remote.sid
            call.remote_status = call.remote_status or remote.status
            call.remote_direction = call.remote_direction or remote.direction
            call.remote_queue_response = remote.response
        else:
            call.status = "errored" if call.status == "queued" else call.status
            call.remote_error_message = refusal
        self.uow.writes.append(("record_dial", self.name, phone_call_id, None))

    def claims_to_reconcile(self, older_than_seconds: float, ask_again_in_seconds: float,
                            limit: int = 1000) -> list[int]:
        now = self.uow.db.clock()
        due = [c for c in self._stored() if self._open_claim(c) and self._older(c.dial_claimed_at, older_than_seconds)
               and (c.reconcile_after is None or c.reconcile_after <= now)][:limit]
        for call in due:
            call.reconcile_after = now + timedelta(seconds=ask_again_in_seconds)
        return [model.stored(c.id) for c in due]

    def _last_news(self, call: model.PhoneCall) -> datetime | None:
        return call.remote_status_updated_at or call.remotely_queued_at or call.updated_at

    def silent_calls(self, older_than_seconds: float, limit: int = 10000) -> list[int]:
        """At the provider with no news for a while (the dial queue's)."""
        statuses = sm.status_values(sm.AT_PROVIDER_PHONE_CALL_STATUSES)
        return [model.stored(c.id) for c in self._stored()
                if c.status in statuses and self._older(self._last_news(c), older_than_seconds)][:limit]

    def expire(self, ids: list[int], message: str) -> int:
        expired = [self.rows[i] for i in ids if self.rows[i].status in AWAITING_NEWS]
        for call in expired:
            call.status, call.remote_error_message = "errored", message
            self.uow.writes.append(("expire", self.name, call.id, None))
        return len(expired)

    def queue_remote_fetches(self, older_than_seconds: float, limit: int = 10000) -> list[int]:
        awaiting = (sm.PhoneCallStatus.REMOTELY_QUEUED.value, sm.PhoneCallStatus.IN_PROGRESS.value)
        fetch_queued = sm.PhoneCallStatus.REMOTE_FETCH_QUEUED.value

        def asked_at(call: model.PhoneCall) -> datetime | None:  # a column the entity does not carry
            at: datetime | None = getattr(call, "remote_fetch_queued_at", None)
            return at
        due = [c for c in self._stored()
               if (c.status in awaiting and self._older(self._last_news(c), older_than_seconds)
                   and (asked_at(c) is None or self._older(asked_at(c), older_than_seconds)))
               or (c.status == fetch_queued and self._older(asked_at(c), older_than_seconds))][:limit]
        for call in due:
            call.status = fetch_queued
            setattr(call, "remote_fetch_queued_at", self.uow.db.clock())
            self.uow.writes.append(("queue_remote_fetch", self.name, call.id, None))
        return [model.stored(c.id) for c in due]

    def known_remote_call_ids(self, sids: list[str]) -> set[str]:
        return {c.remote_call_id for c in self._stored() if c.remote_call_id is not None and c.remote_call_id in sids}

    def open_claims_to(self, msisdn: str, excluding: int) -> list[datetime]:
        return [c.dial_claimed_at for c in self._stored() if c.dial_claimed_at is not None
                and self._open_claim(c) and c.msisdn == msisdn and c.id != excluding]

    def put_back(self, phone_call_id: int, retry_in_seconds: float, count_attempt: bool = True) -> None:
        call = self.rows[phone_call_id]
        if call.status == "queued":
            call.dial_claimed_at = None
            call.next_attempt_at = self.uow.db.clock() + timedelta(seconds=retry_in_seconds)
            call.dial_attempts -= 0 if count_attempt else 1
            self.uow.writes.append(("put_back", self.name, phone_call_id, None))


class DialQueueOfFakes:
    """The dial queue's reads and writes of the same in-memory calls: the phone calls' fake's, and the call
    plans' runner's."""

    def __init__(self, calls: PhoneCalls, plans: CallPlanQueue):
        self._parts = (calls, plans)

    def __getattr__(self, name: str) -> Any:
        for part in self._parts:
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(name)


class CallPlanQueue:
    """The call plans' runner's side of the dial queue, as the SQL adapter answers it: a participation's
    latest call, calls made and attempts are read from its calls (the triggers' work in PostgreSQL)."""

    def __init__(self, uow: FakeUnitOfWork):
        self.uow = uow

    def _calls(self) -> list[model.PhoneCall]:
        return [c for _, c in sorted(self.uow.tables.get("phone_calls", {}).items())]

    def _participations(self, callout_id: int) -> list[model.CalloutParticipation]:
        return [p for _, p in sorted(self.uow.tables.get("callout_participations", {}).items())
                if p.callout_id == callout_id]

    def _of(self, participation_id: int | None) -> list[model.PhoneCall]:
        return [c for c in self._calls() if c.callout_participation_id == participation_id]

    def _last(self, participation: model.CalloutParticipation) -> model.PhoneCall | None:
        calls = self._of(participation.id)
        return calls[-1] if calls else None

    def _attempts(self, participation: model.CalloutParticipation) -> int:
        return sum(c.remote_call_id is not None for c in self._of(participation.id))

    def _nothing_in_flight(self, participation: model.CalloutParticipation) -> bool:
        last = self._last(participation)
        return last is None or sm.PhoneCallStatus(last.status) in sm.TERMINAL_PHONE_CALL_STATUSES

    def _plan(self, callout: model.Callout) -> dict[str, Any] | None:
        account = self.uow.tables["accounts"][model.stored(callout.account_id)]
        return {**(account.call_plan or {}), **(callout.call_plan or {})} or None

    def planned_callouts(self, after_id: int = 0, limit: int = 1000) -> list[int]:
        return [model.stored(c.id) for _, c in sorted(self.uow.tables.get("callouts", {}).items())
                if model.stored(c.id) > after_id and c.status == "running" and self._plan(c)
                and any(p.outcome is None for p in self._participations(model.stored(c.id)))][:limit]

    def lock_planned_callout(self, callout_id: int) -> PlannedCallout | None:
        callout = self.uow.tables["callouts"][callout_id]
        plan = self._plan(callout)
        if callout.status != "running" or not plan:
            return None
        account = self.uow.tables["accounts"][callout.account_id]
        return PlannedCallout(callout_id, model.stored(callout.account_id), plan, account.calls_per_second)

    def expire_queued_calls(self, callout_id: int, message: str) -> int:
        ids = {p.id for p in self._participations(callout_id)}
        expired = [c for c in self._calls() if c.callout_participation_id in ids and c.status == "queued"
                   and c.dial_claimed_at is None]
        for call in expired:
            call.status, call.remote_error_message = sm.PhoneCallStatus.EXPIRED.value, message
        return len(expired)

    def _end(self, participation: model.CalloutParticipation, outcome: str, now: datetime) -> None:
        participation.outcome, participation.finished_at = outcome, now
        self.uow.writes.append(("finish", "callout_participations", participation.id, outcome))

    def finish_participations(self, callout_id: int, now: datetime, retried: list[str], max_attempts: int,
                              max_calls: int) -> int:
        finished = 0
        for participation in self._participations(callout_id):
            last = self._last(participation)
            if participation.outcome is not None or last is None or not self._nothing_in_flight(participation):
                continue
            if (last.status not in retried or self._attempts(participation) >= max_attempts
                    or len(self._of(participation.id)) >= max_calls):
                self._end(participation, last.status, now)
                finished += 1
        return finished

    def expire_participations(self, callout_id: int, now: datetime) -> int:
        open_ = [p for p in self._participations(callout_id) if p.outcome is None and self._nothing_in_flight(p)]
        for participation in open_:
            self._end(participation, sm.PhoneCallStatus.EXPIRED.value, now)
        return len(open_)

    def calls_ahead(self, callout_id: int, now: datetime, horizon_seconds: float, limit: int) -> int:
        ids = {p.id for p in self._participations(callout_id)}
        horizon = now + timedelta(seconds=horizon_seconds)
        return min(limit, sum(c.callout_participation_id in ids and c.status == "queued" and c.dial_claimed_at is None
                              and c.next_attempt_at is not None and c.next_attempt_at <= horizon
                              for c in self._calls()))

    def make_calls(self, callout_id: int, account_id: int, now: datetime, calls: CallsToMake) -> int:
        made = 0
        for participation in self._participations(callout_id):
            if made >= calls.limit:
                break
            last = self._last(participation)
            if participation.outcome is not None or not self._nothing_in_flight(participation):
                continue
            due = now
            if last is not None:
                made_so_far = len(self._of(participation.id))
                if (last.status not in calls.retries or self._attempts(participation) >= calls.max_attempts
                        or made_so_far >= calls.max_calls):
                    continue
                ladder = calls.retries[last.status]
                due = model.stored(last.remote_status_updated_at or last.updated_at) + timedelta(
                    seconds=ladder[min(max(made_so_far, 1), len(ladder)) - 1])
                if due > now + timedelta(seconds=calls.horizon_seconds):
                    continue
            PhoneCalls(self.uow).add(model.PhoneCall(
                account_id=account_id, callout_participation_id=participation.id,
                contact_id=participation.contact_id, msisdn=participation.msisdn, status="queued",
                remote_request_params=calls.remote_request_params, queued_at=now, next_attempt_at=due))
            made += 1
        return made

    def reopen_expired(self, callout_id: int) -> int:
        reopened = [p for p in self._participations(callout_id) if p.outcome == sm.PhoneCallStatus.EXPIRED.value]
        for participation in reopened:
            participation.outcome = participation.finished_at = None
        return len(reopened)


class RemotePhoneCallEvents(InMemoryRepository):
    name = "remote_phone_call_events"


class BatchOperations(InMemoryRepository):
    name = "batch_operations"

    def stalled(self, older_than_seconds: float) -> list[int]:
        return []


class ContactImports(InMemoryRepository):
    name = "contact_imports"

    def stalled(self, older_than_seconds: float) -> list[int]:
        cutoff = self.uow.db.clock() - timedelta(seconds=older_than_seconds)
        return [i.id for _, i in sorted(self.rows.items())
                if self._visible(i) and i.is_open and i.updated_at < cutoff]

    def count_attempt(self, import_id: int) -> int:
        stored = self.rows[import_id]
        stored.attempts += 1
        return int(stored.attempts)


class ProviderReports:
    def __init__(self, uow: FakeUnitOfWork):
        self.uow = uow

    def find(self, account_sid: str, call_sid: str | None) -> ReportTarget | None:
        accounts = [a for a in self.uow.tables.get("accounts", {}).values()
                    if account_sid in (a.twilio_account_sid, a.somleng_account_sid)]
        if len(accounts) != 1:
            return None
        account = copy.deepcopy(accounts[0])
        calls = [c for c in self.uow.tables.get("phone_calls", {}).values()
                 if c.account_id == account.id and c.remote_call_id == call_sid]
        if not calls:
            return ReportTarget(account, None, None)
        call = copy.deepcopy(calls[0])
        call.mark_clean()
        return ReportTarget(account, call, dict(call.metadata))

    def record(self, call: model.PhoneCall, event: model.RemotePhoneCallEvent,
               request_digest: bytes) -> model.RemotePhoneCallEvent | None:
        if (model.stored(call.id), request_digest) in self.uow.db.events:
            return None
        PhoneCalls(self.uow).save(call)
        stored = RemotePhoneCallEvents(self.uow).add(event)
        self.uow.db.events[(model.stored(call.id), request_digest)] = model.stored(stored.id)
        return stored


class FakeUnitOfWork:
    """A transaction over `db`: its writes are seen by the database on commit, and dropped otherwise."""

    def __init__(self, db: Database, account_id: int | None, parent: FakeUnitOfWork | None = None):
        self.db = db
        self.account_id = account_id
        self.parent = parent  # for_account: the unit of work whose transaction this one shares
        self.commits = 0

    def __enter__(self) -> FakeUnitOfWork:
        self._open(copy.deepcopy(self.db.tables), [])
        return self

    def _open(self, tables: dict[str, dict[int, Any]], writes: list[tuple]) -> None:
        self.tables, self.writes = tables, writes
        self.accounts = Accounts(self)
        self.access_tokens = AccessTokens(self)
        self.contacts = Contacts(self)
        self.callouts = Callouts(self)
        self.callout_participations = CalloutParticipations(self)
        self.phone_calls = PhoneCalls(self)
        self.dial_queue = DialQueueOfFakes(self.phone_calls, CallPlanQueue(self))
        self.remote_phone_call_events = RemotePhoneCallEvents(self)
        self.batch_operations = BatchOperations(self)
        self.provider_reports = ProviderReports(self)
        self.contact_imports = ContactImports(self)

    def __exit__(self, *exc: Any) -> None:
        self.rollback()

    def for_account(self, account_id: int) -> FakeUnitOfWork:
        scoped = FakeUnitOfWork(self.db, account_id, parent=self)
        scoped._open(self.tables, self.writes)
        return scoped

    def commit(self) -> None:
        if self.parent is not None:
            return self.parent.commit()
        self.db.tables = copy.deepcopy(self.tables)
        self.db.writes.extend(self.writes)
        self.writes.clear()
        self.commits += 1

    def rollback(self) -> None:
        if self.parent is not None:
            return self.parent.rollback()
        self.tables.clear()
        self.tables.update(copy.deepcopy(self.db.tables))
        self.writes.clear()


class UnitsOfWork:
    """What the services call `uow_for`: a unit of work for an account (None: the server's)."""

    def __init__(self, clock: FakeClock | None = None):
        self.clock = clock or FakeClock()
        self.db = Database(self.clock)
        self.made: list[int | None] = []

    def __call__(self, account_id: int | None = None) -> FakeUnitOfWork:
        self.made.append(account_id)
        return FakeUnitOfWork(self.db, account_id)


class FakeJobs:
    """A job queue that records what it was asked for, once per pending unit as the real one does."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []
        self.waiting: set[tuple[str, Any]] = set()  # no worker takes them: a unit asked for twice waits once

    def _ask(self, kind: str, key: Any) -> bool:
        self.asked.append((kind, key))
        if (kind, key) in self.waiting:
            return False
        self.waiting.add((kind, key))
        return True

    def pending(self) -> int:
        return len(self.waiting)

    def dial_due(self, account_id: int) -> bool:
        return self._ask("dial_due", account_id)

    def fetch_remote_call(self, phone_call_id: int) -> bool:
        return self._ask("fetch_remote_call", phone_call_id)

    def fetch_remote_calls(self, phone_call_ids: list[int]) -> int:
        return sum(self._ask("fetch_remote_call", i) for i in phone_call_ids)

    def reconcile_unknown_outcomes(self, phone_call_ids: list[int]) -> int:
        return sum(self._ask("reconcile_unknown_outcome", i) for i in phone_call_ids)

    def run_batch_operation(self, batch_operation_id: int) -> bool:
        return self._ask("run_batch_operation", batch_operation_id)

    def run_call_plan(self, callout_id: int) -> bool:
        return self._ask("run_call_plan", callout_id)

    def run_contact_import(self, contact_import_id: int) -> bool:
        return self._ask("run_contact_import", contact_import_id)


class FakeProvider:
    """Answers `find_calls` with what the test lists, or raises what it is given."""

    def __init__(self, listed: list[RemoteCall] | None = None, error: Exception | None = None):
        self.listed, self.error = listed or [], error
        self.asked: list[str] = []

    def find_calls(self, credentials: Any, to: str) -> list[RemoteCall]:
        self.asked.append(to)
        if self.error:
            raise self.error
        return self.listed


def fields_of(entity: Any) -> dict[str, Any]:
    return {f.name: getattr(entity, f.name) for f in dataclasses.fields(entity)}


if TYPE_CHECKING:  # the fakes keep pace with the ports: mypy (see pyproject.toml) checks that they fit them
    # (each repository: the unit of work as a whole has no in-memory batch queries, which are set-based SQL)
    _fake = FakeUnitOfWork(Database(FakeClock()), None)
    _accounts: ports.AccountRepository = Accounts(_fake)
    _access_tokens: ports.AccessTokenRepository = AccessTokens(_fake)
    _contacts: ports.ContactRepository = Contacts(_fake)
    _callouts: ports.CalloutRepository = Callouts(_fake)
    _participations: ports.CalloutParticipationRepository = CalloutParticipations(_fake)
    _phone_calls: ports.PhoneCallRepository = PhoneCalls(_fake)
    _events: ports.RemotePhoneCallEventRepository = RemotePhoneCallEvents(_fake)
    _reports: ports.ProviderReports = ProviderReports(_fake)
    _contact_imports: ports.ContactImportRepository = ContactImports(_fake)
    _jobs: ports.JobQueue = FakeJobs()
