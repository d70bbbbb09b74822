"""Repositories: rows in and out of the tables, scoped to one account."""
from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any, Iterable

from sqlalchemy import Select, and_, delete, exists, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from scfm.adapters.postgres import tables as t
from scfm.adapters.postgres.filters import all_of, compile_conditions
from scfm.domain import model
from scfm.domain.errors import DeleteRefused, NotFound, ValidationFailed
from scfm.domain.ports import Within
from scfm.domain.state_machines import BatchOperationStatus

EXACT_TOTAL_UP_TO = 10_000

# Unique constraints, as the field errors a user sees.
UNIQUE_ERRORS = {
    "index_contacts_on_account_id_and_msisdn": ("msisdn", "has already been taken"),
    "index_callout_participations_on_callout_id_and_contact_id": ("contact_id", "has already been taken"),
    "index_callout_participations_on_callout_id_and_msisdn": ("msisdn", "has already been taken"),
    "index_accounts_on_twilio_account_sid": ("twilio_account_sid", "has already been taken"),
    "index_accounts_on_somleng_account_sid": ("somleng_account_sid", "has already been taken"),
    "index_phone_calls_one_in_flight_per_participation": (
        "base", "Another phone call for this callout participation is already in progress",
    ),
    "index_phone_calls_on_remote_call_id_and_account_id": ("remote_call_id", "has already been taken"),
}


# A parent deleted while its child was written (the delete committed first): the answer the same request
# gets a moment later, 404 for the parent in the URL, 422 for one named in the body. Any other reference is
# "<name> must exist".
PARENT_GONE_ERRORS = {
    "callout_participations_callout_id_fkey": "callout",
    "phone_calls_callout_participation_id_fkey": "callout participation",
}
FOREIGN_KEY_VIOLATION = "23503"


def integrity_error_to_validation(error: IntegrityError, deleting: bool = False) -> ValidationFailed | NotFound | None:
    diag: Any = getattr(error.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name in UNIQUE_ERRORS:
        field, message = UNIQUE_ERRORS[name]
        return ValidationFailed.on(field, message)
    if getattr(error.orig, "pgcode", None) == FOREIGN_KEY_VIOLATION and name:
        if deleting:  # a child written meanwhile still refers to the row
            return DeleteRefused("dependent records exist")
        if name in PARENT_GONE_ERRORS:
            return NotFound(PARENT_GONE_ERRORS[name])
        column = name.removeprefix(f"{diag.table_name}_").removesuffix("_fkey")
        return ValidationFailed.on(column.removesuffix("_id"), "must exist")
    return None


@cache
def _fields(entity: type, table: Any) -> frozenset[str]:
    """The entity's fields that are the table's columns: a unit of work makes every repository per request."""
    return frozenset({f.name for f in dataclasses.fields(entity)} & set(table.c.keys()))


def count_matches(conn: Connection, matches: Select[Any]) -> tuple[int, bool]:
    """How many rows `matches` selects, and whether that is the planner's estimate: exact up to
    EXACT_TOTAL_UP_TO; beyond, estimated. Counting a million matches reads every page of the table (100 ms and
    more), which a list must not wait for."""
    capped = select(func.count()).select_from(matches.limit(EXACT_TOTAL_UP_TO + 1).subquery())
    total = conn.execute(capped).scalar_one()
    if total <= EXACT_TOTAL_UP_TO:
        return total, False
    compiled = matches.compile(dialect=conn.dialect)
    processors: Any = compiled._bind_processors
    params = {key: processors[key](value) if key in processors else value
              for key, value in compiled.construct_params().items()}
    plan: Any = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), params).scalar()
    return max(EXACT_TOTAL_UP_TO + 1, int(plan[0]["Plan"]["Plan Rows"])), True


class Repository:
    """CRUD and filtered, paginated listing of one table, scoped by account where it has one."""

    table: Any = None  # each repository's Table
    entity: Any = None  # and its entity class
    scoped = True
    resource = "record"
    reads_joined_columns = False  # whether base_select adds columns of other tables

    def __init__(self, conn: Connection, account_id: int | None):
        self.conn = conn
        self.account_id = account_id
        self.fields = _fields(self.entity, self.table)

    # -- reading
    def base_select(self):
        return select(self.table)

    def scope(self):
        if self.scoped and self.account_id is not None:
            return self.table.c.account_id == self.account_id
        return None

    def where(self, conditions=(), within: Iterable[Within] = (), extra: Iterable = ()):
        clauses = list(compile_conditions(self.table, conditions, self.custom_compilers(), self.eq_compilers()))
        clauses.extend(self._within(parent) for parent in within)
        clauses.extend(extra)
        if (scope := self.scope()) is not None:
            clauses.append(scope)
        return all_of(clauses)

    def custom_compilers(self) -> dict:
        return {}

    def eq_compilers(self) -> dict:
        return {}

    def parents(self) -> dict:
        """For each resource that holds records of this one (a nested route), its id as a clause."""
        return {}

    def _within(self, parent: Within):
        clause = self.parents().get(parent.resource)
        if clause is None:
            raise ValueError(f"a {self.resource} is never within a {parent.resource}")
        return clause(parent.id)

    def _column_is(self, column: str):
        return lambda id_: self.table.c[column] == id_

    def to_entity(self, row) -> Any:
        data = dict(row._mapping)
        known = {f.name for f in dataclasses.fields(self.entity)}
        entity = self.entity(**{k: v for k, v in data.items() if k in known})
        entity.mark_clean()
        return entity

    def find(self, id_: Any, for_update: bool = False) -> Any | None:
        try:
            id_ = int(id_)
        except (TypeError, ValueError):
            return None
        if not -(2**63) <= id_ < 2**63:
            return None
        query = self.base_select().where(self.where(extra=[self.table.c.id == id_]))
        if for_update:  # lock this table's row only: joined rows may be absent (an outer join) or shared
            query = query.with_for_update(of=self.table)
        row = self.conn.execute(query).first()
        return self.to_entity(row) if row else None

    def get(self, id_: Any, for_update: bool = False) -> Any:
        entity = self.find(id_, for_update=for_update)
        if entity is None:
            raise NotFound(self.resource)
        return entity

    def list(self, conditions=(), within: Iterable[Within] = (), page: int = 1, per_page: int = 25):
        """A page of matching rows by id, the total, and whether the total is the planner's estimate."""
        where = self.where(conditions, within)
        total, estimated = self._total(where)
        query = self.base_select().where(where).order_by(self.table.c.id).limit(per_page).offset((page - 1) * per_page)
        return [self.to_entity(row) for row in self.conn.execute(query)], total, estimated

    def _total(self, where) -> tuple[int, bool]:
        return count_matches(self.conn, select(literal(1)).select_from(self.table).where(where))

    def exists(self, *clauses) -> bool:
        return bool(self.conn.execute(select(exists().where(and_(*clauses)))).scalar())

    # -- writing
    def _values(self, entity, names: Iterable[str] | None = None) -> dict:
        names = self.fields - {"id", "created_at", "updated_at"} if names is None else names
        return {name: getattr(entity, name) for name in names}

    def _run(self, statement, deleting: bool = False):
        # no savepoint: a violated constraint ends the unit of work anyway, as the error it becomes
        try:
            return self.conn.execute(statement)
        except IntegrityError as error:
            translated = integrity_error_to_validation(error, deleting)
            if translated:
                raise translated from None
            raise

    def add(self, entity) -> Any:
        values = {k: v for k, v in self._values(entity).items() if v is not None}
        row = self._run(insert(self.table).values(**values).returning(self.table)).first()
        # rows read with joined columns (the effective call flow logic) are read again; others are complete
        return self._fetch(row.id) if self.reads_joined_columns else self.to_entity(row)

    def save(self, entity, refetch: bool = True) -> Any:
        """Write the fields changed since the entity was loaded (and updated_at)."""
        values = self._values(entity, entity.changed_fields() & self.fields - {"id", "created_at", "updated_at"})
        values["updated_at"] = func.now()
        self._run(update(self.table).where(self.table.c.id == entity.id).values(**values))
        if refetch:
            return self._fetch(entity.id)
        entity.mark_clean()
        return entity

    def _fetch(self, id_: int):
        """A row this unit of work just wrote (it may belong to another account, e.g. a token)."""
        return self.to_entity(self.conn.execute(self.base_select().where(self.table.c.id == id_)).one())

    def remove(self, entity) -> None:
        self._run(delete(self.table).where(self.table.c.id == entity.id), deleting=True)


class AccountRepository(Repository):
    table = t.accounts
    entity = model.Account
    scoped = False
    resource = "account"

    def has_dependents(self, account_id: int) -> bool:
        return any(
            self.exists(table.c.account_id == account_id)
            for table in (t.contacts, t.callouts, t.access_tokens)
        )

    def super_admin_exists(self) -> bool:
        return self.exists(t.accounts.c.permissions.op("@>")(func.jsonb_build_array("super_admin")))


class AccessTokenRepository(Repository):
    table = t.access_tokens
    entity = model.AccessToken
    resource = "access token"

    def account_for_digest(self, digest: str) -> model.Account | None:
        row = self.conn.execute(
            select(t.accounts).join(t.access_tokens, t.access_tokens.c.account_id == t.accounts.c.id)
            .where(t.access_tokens.c.token_digest == digest)
        ).first()
        if row is None:
            return None
        account = model.Account(**{k: v for k, v in row._mapping.items()})
        account.mark_clean()
        return account

    def start_session(self, token_digest: str, session_digest: str, max_age_seconds: float) -> bool:
        sessions = t.dashboard_sessions
        token = select(t.access_tokens.c.id).where(t.access_tokens.c.token_digest == token_digest)
        started = self.conn.execute(insert(sessions).from_select(
            ["access_token_id", "session_digest"], token.add_columns(literal(session_digest)))
            .returning(sessions.c.access_token_id)).first()
        if started is None:
            return False
        kept = (select(sessions.c.id).where(sessions.c.access_token_id == started.access_token_id)
                .order_by(sessions.c.id.desc()).limit(model.MAX_SESSIONS_PER_TOKEN))
        self.conn.execute(delete(sessions).where(
            (sessions.c.created_at < _ago(max_age_seconds))
            | ((sessions.c.access_token_id == started.access_token_id) & sessions.c.id.not_in(kept))))
        return True

    def account_for_session(self, session_digest: str, max_age_seconds: float) -> tuple[model.Account, int] | None:
        sessions = t.dashboard_sessions
        row = self.conn.execute(
            select(t.accounts).join(t.access_tokens, t.access_tokens.c.account_id == t.accounts.c.id)
            .join(sessions, sessions.c.access_token_id == t.access_tokens.c.id)
            .where(sessions.c.session_digest == session_digest, sessions.c.created_at >= _ago(max_age_seconds))
            .add_columns(sessions.c.access_token_id.label("session_access_token_id"))
        ).first()
        if row is None:
            return None
        fields = dict(row._mapping)
        token_id = fields.pop("session_access_token_id")
        account = model.Account(**fields)
        account.mark_clean()
        return account, token_id

    def end_session(self, session_digest: str) -> None:
        sessions = t.dashboard_sessions
        self.conn.execute(delete(sessions).where(sessions.c.session_digest == session_digest))


def _ago(seconds: float):
    return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, literal(float(seconds)))


class ContactRepository(Repository):
    table = t.contacts
    entity = model.Contact
    resource = "contact"

    def has_dependents(self, contact_id: int) -> bool:
        return self.exists(t.callout_participations.c.contact_id == contact_id) or self.exists(
            t.phone_calls.c.contact_id == contact_id
        )

    def parents(self) -> dict:
        p = t.callout_participations
        return {"callout": lambda callout_id: self.table.c.id.in_(
            select(p.c.contact_id).where(p.c.callout_id == callout_id))}

    def add_if_missing(self, contact: model.Contact) -> model.Contact:
        """Insert unless the account already has the number (a concurrent request may have added it)."""
        self.conn.execute(
            pg_insert(t.contacts).values(account_id=contact.account_id, msisdn=contact.msisdn, metadata=contact.metadata)
            .on_conflict_do_nothing(constraint="index_contacts_on_account_id_and_msisdn")
        )
        found = self.by_msisdn(contact.msisdn or "")
        assert found is not None  # inserted, or there already
        return found

    def by_msisdn(self, msisdn: str) -> model.Contact | None:
        row = self.conn.execute(
            select(t.contacts).where(t.contacts.c.account_id == self.account_id, t.contacts.c.msisdn == msisdn)
        ).first()
        return self.to_entity(row) if row else None


def _latest_call_status(participation_id_column):
    return (
        select(t.phone_calls.c.status)
        .where(t.phone_calls.c.callout_participation_id == participation_id_column)
        .order_by(t.phone_calls.c.created_at.desc(), t.phone_calls.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _own_or_inherited(own, values, parent_id, parents_with_value):
    """The shown value (its own, else its parent's) is one of `values`: the parents are looked up only when
    this key is filtered on, as a semi-join that leaves the plain list untouched."""
    return own.in_(values) | (own.is_(None) & parent_id.in_(parents_with_value))


class CalloutRepository(Repository):
    table = t.callouts
    entity = model.Callout
    resource = "callout"

    def has_dependents(self, callout_id: int) -> bool:
        return self.exists(t.callout_participations.c.callout_id == callout_id) or self.exists(
            t.batch_operations.c.callout_id == callout_id
        )

    def parents(self) -> dict:
        p = t.callout_participations
        return {"contact": lambda contact_id: self.table.c.id.in_(
            select(p.c.callout_id).where(p.c.contact_id == contact_id))}


class CalloutParticipationRepository(Repository):
    table = t.callout_participations
    entity = model.CalloutParticipation
    resource = "callout participation"
    reads_joined_columns = True

    def base_select(self):
        return select(self.table, t.callouts.c.call_flow_logic.label("callout_call_flow_logic")).join(
            t.callouts, t.callouts.c.id == self.table.c.callout_id
        )

    def custom_compilers(self) -> dict:
        p = self.table
        has_calls = exists().where(t.phone_calls.c.callout_participation_id == p.c.id)
        return {
            "has_phone_calls": lambda value: has_calls if value else ~has_calls,
            "last_phone_call_attempt": lambda statuses: _latest_call_status(p.c.id).in_(statuses),
            "no_phone_calls_or_last_attempt": lambda statuses: (~has_calls) | _latest_call_status(p.c.id).in_(statuses),
        }

    def eq_compilers(self) -> dict:
        p, c = self.table, t.callouts
        return {"call_flow_logic": lambda values: _own_or_inherited(
            p.c.call_flow_logic, values, p.c.callout_id, select(c.c.id).where(c.c.call_flow_logic.in_(values)))}

    def has_dependents(self, participation_id: int) -> bool:
        return self.exists(t.phone_calls.c.callout_participation_id == participation_id)

    def parents(self) -> dict:
        return {"callout": self._column_is("callout_id"), "contact": self._column_is("contact_id")}


class PhoneCallRepository(Repository):
    table = t.phone_calls
    entity = model.PhoneCall
    resource = "phone call"
    reads_joined_columns = True

    def base_select(self):
        p, c = t.callout_participations, t.callouts
        inherited = func.coalesce(p.c.call_flow_logic, c.c.call_flow_logic).label("inherited_call_flow_logic")
        return select(self.table, inherited).select_from(
            self.table.outerjoin(p, p.c.id == self.table.c.callout_participation_id).outerjoin(
                c, c.c.id == p.c.callout_id)
        )

    def eq_compilers(self) -> dict:
        p, c = t.callout_participations, t.callouts
        inherited = func.coalesce(p.c.call_flow_logic, c.c.call_flow_logic)
        return {"call_flow_logic": lambda values: _own_or_inherited(
            self.table.c.call_flow_logic, values, self.table.c.callout_participation_id,
            select(p.c.id).join(c, c.c.id == p.c.callout_id).where(inherited.in_(values)))}

    def parents(self) -> dict:
        p = t.callout_participations
        return {
            "callout_participation": self._column_is("callout_participation_id"),
            "contact": self._column_is("contact_id"),
            "callout": lambda callout_id: self.table.c.callout_participation_id.in_(
                select(p.c.id).where(p.c.callout_id == callout_id)),
        }

    def has_dependents(self, phone_call_id: int) -> bool:
        return self.exists(t.remote_phone_call_events.c.phone_call_id == phone_call_id)


class RemotePhoneCallEventRepository(Repository):
    table = t.remote_phone_call_events
    entity = model.RemotePhoneCallEvent
    resource = "remote phone call event"

    def parents(self) -> dict:
        pc, p = t.phone_calls, t.callout_participations

        def calls_where(clause):
            return self.table.c.phone_call_id.in_(select(pc.c.id).where(clause))
        return {
            "phone_call": self._column_is("phone_call_id"),
            "contact": lambda contact_id: calls_where(pc.c.contact_id == contact_id),
            "callout_participation": lambda participation_id: calls_where(
                pc.c.callout_participation_id == participation_id),
            "callout": lambda callout_id: calls_where(pc.c.callout_participation_id.in_(
                select(p.c.id).where(p.c.callout_id == callout_id))),
        }


class BatchOperationRepository(Repository):
    table = t.batch_operations
    entity = model.BatchOperation
    resource = "batch operation"

    def stalled(self, older_than_seconds: float) -> list[int]:
        """Queued but never started, or running with no worker on them, for a while. A run holds its
        operation's row locked until it ends, so an operation being run is skipped, however long it takes."""
        bo = self.table
        cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
        queued, running = BatchOperationStatus.QUEUED.value, BatchOperationStatus.RUNNING.value
        return [row.id for row in self.conn.execute(select(bo.c.id).where(
            ((bo.c.status == queued) & (bo.c.updated_at < cutoff))
            | ((bo.c.status == running) & (func.coalesce(bo.c.started_at, bo.c.updated_at) < cutoff)))
            .order_by(bo.c.id).with_for_update(key_share=True, skip_locked=True))]

    def parents(self) -> dict:
        return {"callout": self._column_is("callout_id")}

    def has_dependents(self, operation_id: int) -> bool:
        pc = t.phone_calls
        return self.exists(t.callout_participations.c.callout_population_id == operation_id) or self.exists(
            (pc.c.create_batch_operation_id == operation_id) | (pc.c.queue_batch_operation_id == operation_id)
            | (pc.c.queue_remote_fetch_batch_operation_id == operation_id)
        )

    def mark_started(self, operation_id: int) -> None:
        self.conn.execute(update(self.table).where(self.table.c.id == operation_id).values(started_at=func.clock_timestamp()))

    def mark_finished(self, operation_id: int) -> None:
        self.conn.execute(update(self.table).where(self.table.c.id == operation_id).values(finished_at=func.clock_timestamp()))

    def record_error(self, operation_id: int, message: str) -> None:
        self.conn.execute(update(self.table).where(self.table.c.id == operation_id).values(
            error_message=message[:2000], updated_at=func.now()))
