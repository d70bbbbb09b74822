"""Repositories: rows in and out of the tables, scoped to one account."""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from scfm.adapters.postgres import tables as t
from scfm.adapters.postgres.filters import all_of, compile_conditions
from scfm.domain import model
from scfm.domain.errors import NotFound, ValidationFailed

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
    "phone_calls_remote_call_id_key": ("remote_call_id", "has already been taken"),
}


def integrity_error_to_validation(error: IntegrityError) -> ValidationFailed | None:
    name = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    if name in UNIQUE_ERRORS:
        field, message = UNIQUE_ERRORS[name]
        return ValidationFailed.on(field, message)
    return None


class Repository:
    """CRUD and filtered, paginated listing of one table, scoped by account where it has one."""

    table = None
    entity: type = None
    scoped = True
    resource = "record"

    def __init__(self, conn: Connection, account_id: int | None):
        self.conn = conn
        self.account_id = account_id
        self.fields = {f.name for f in dataclasses.fields(self.entity)} & set(self.table.c.keys())

    # -- reading
    def base_select(self):
        return select(self.table)

    def scope(self):
        if self.scoped and self.account_id is not None:
            return self.table.c.account_id == self.account_id
        return None

    def where(self, conditions=(), extra: Iterable = ()):
        clauses = list(compile_conditions(self.table, conditions, self.custom_compilers()))
        clauses.extend(extra)
        if (scope := self.scope()) is not None:
            clauses.append(scope)
        return all_of(clauses)

    def custom_compilers(self) -> dict:
        return {}

    def to_entity(self, row) -> Any:
        data = dict(row._mapping)
        known = {f.name for f in dataclasses.fields(self.entity)}
        return self.entity(**{k: v for k, v in data.items() if k in known})

    def find(self, id_: Any) -> Any | None:
        try:
            id_ = int(id_)
        except (TypeError, ValueError):
            return None
        if not -(2**63) <= id_ < 2**63:
            return None
        row = self.conn.execute(self.base_select().where(self.where(extra=[self.table.c.id == id_]))).first()
        return self.to_entity(row) if row else None

    def get(self, id_: Any, for_update: bool = False) -> Any:
        entity = self.find(id_)
        if entity is None:
            raise NotFound(self.resource)
        if for_update:
            self.conn.execute(select(self.table.c.id).where(self.table.c.id == entity.id).with_for_update())
            entity = self.find(id_)
        return entity

    def list(self, conditions=(), extra: Iterable = (), page: int = 1, per_page: int = 25):
        where = self.where(conditions, extra)
        total = self.conn.execute(select(func.count()).select_from(self.table).where(where)).scalar_one()
        query = self.base_select().where(where).order_by(self.table.c.id).limit(per_page).offset((page - 1) * per_page)
        return [self.to_entity(row) for row in self.conn.execute(query)], total

    def exists(self, *clauses) -> bool:
        return bool(self.conn.execute(select(exists().where(and_(*clauses)))).scalar())

    # -- writing
    def _values(self, entity, names: Iterable[str] | None = None) -> dict:
        names = self.fields - {"id", "created_at", "updated_at"} if names is None else names
        return {name: getattr(entity, name) for name in names}

    def _run(self, statement):
        try:
            with self.conn.begin_nested():
                return self.conn.execute(statement)
        except IntegrityError as error:
            translated = integrity_error_to_validation(error)
            if translated:
                raise translated from None
            raise

    def add(self, entity) -> Any:
        values = {k: v for k, v in self._values(entity).items() if v is not None}
        row = self._run(insert(self.table).values(**values).returning(self.table.c.id)).first()
        return self._fetch(row.id)

    def save(self, entity, names: Iterable[str]) -> Any:
        values = self._values(entity, set(names) & self.fields)
        values["updated_at"] = func.now()
        self._run(update(self.table).where(self.table.c.id == entity.id).values(**values))
        return self._fetch(entity.id)

    def _fetch(self, id_: int):
        """A row this unit of work just wrote (it may belong to another account, e.g. a token)."""
        return self.to_entity(self.conn.execute(self.base_select().where(self.table.c.id == id_)).one())

    def remove(self, entity) -> None:
        self._run(delete(self.table).where(self.table.c.id == entity.id))


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

    def by_provider_account_sid(self, account_sid: str) -> model.Account | None:
        row = self.conn.execute(
            select(t.accounts).where(
                (t.accounts.c.twilio_account_sid == account_sid) | (t.accounts.c.somleng_account_sid == account_sid)
            )
        ).first()
        return self.to_entity(row) if row else None


class AccessTokenRepository(Repository):
    table = t.access_tokens
    entity = model.AccessToken
    resource = "access token"

    def account_for_digest(self, digest: str) -> model.Account | None:
        row = self.conn.execute(
            select(t.accounts).join(t.access_tokens, t.access_tokens.c.account_id == t.accounts.c.id)
            .where(t.access_tokens.c.token_digest == digest)
        ).first()
        return model.Account(**{k: v for k, v in row._mapping.items()}) if row else None


class ContactRepository(Repository):
    table = t.contacts
    entity = model.Contact
    resource = "contact"

    def has_dependents(self, contact_id: int) -> bool:
        return self.exists(t.callout_participations.c.contact_id == contact_id) or self.exists(
            t.phone_calls.c.contact_id == contact_id
        )

    def by_msisdn(self, msisdn: str) -> model.Contact | None:
        row = self.conn.execute(
            select(t.contacts).where(t.contacts.c.account_id == self.account_id, t.contacts.c.msisdn == msisdn)
        ).first()
        return self.to_entity(row) if row else None
