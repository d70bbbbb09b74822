"""The provider webhook's reads and writes: the busiest path there is (a million calls report several times
each), so it is two statements written out and prepared once per connection, not four built per request.
The first finds the account by its AccountSid and, in the same statement, locks the call it reports on; the
second records the event and updates the call together (neither, for a request already recorded).

They run on the DBAPI connection of the webhook's unit of work (reports_unit), and their rows are read as
tuples by position: SQLAlchemy's result machinery (a column map built per statement, a processor per column)
cost more CPU than the rest of the request's database work."""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any, Protocol

from psycopg2.extras import Json
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from scfm.adapters.postgres import tables as t
from scfm.domain import model
from scfm.domain.ports import ReportTarget

# Of the account, what the webhook reads: which SID it is, the token that signs for it
_ACCOUNT_FIELDS = ["id", "twilio_account_sid", "twilio_auth_token", "somleng_account_sid", "somleng_auth_token"]
_CALL_FIELDS = [f.name for f in dataclasses.fields(model.PhoneCall) if f.name in t.phone_calls.c]
_CALL_START = len(_ACCOUNT_FIELDS)  # where the call's columns begin in a row of FIND
_CALL_END = _CALL_START + len(_CALL_FIELDS)
_WRITABLE = {c.name for c in t.phone_calls.c} - {"id", "created_at", "updated_at"}
_JSON_COLUMNS = {c.name for c in t.phone_calls.c if isinstance(c.type, JSONB)}
_SQL_TYPES = {c.name: c.type.compile(dialect=postgresql.dialect()) for c in t.phone_calls.c}

# The account is the one account that names the SID, in either column (none: the webhook is refused).
# The lateral subquery locks the call (FOR UPDATE OF its own row only) once the account is known, so a call
# of another account is never touched; no call (an unknown CallSid) leaves the call columns NULL.
FIND = f"""
SELECT {", ".join(f"a.{name}" for name in _ACCOUNT_FIELDS)},
       {", ".join(f"r.{name}" for name in _CALL_FIELDS)},
       r.inherited_call_flow_logic, r.participation_metadata, r.callout_metadata
FROM accounts a
LEFT JOIN LATERAL (
    SELECT pc.*, coalesce(p.call_flow_logic, c.call_flow_logic) AS inherited_call_flow_logic,
           p.metadata AS participation_metadata, c.metadata AS callout_metadata
    FROM phone_calls pc
    LEFT JOIN callout_participations p ON p.id = pc.callout_participation_id
    LEFT JOIN callouts c ON c.id = p.callout_id
    WHERE pc.account_id = a.id AND pc.remote_call_id = %(call_sid)s
    FOR UPDATE OF pc
) r ON true
WHERE (a.twilio_account_sid = %(account_sid)s OR a.somleng_account_sid = %(account_sid)s)
  AND NOT EXISTS (  -- a SID two accounts name (only from before migration 0004) is nobody's
    SELECT 1 FROM accounts o
    WHERE o.id <> a.id AND (o.twilio_account_sid = %(account_sid)s OR o.somleng_account_sid = %(account_sid)s))
"""

# The event goes in first, unless this very request (its digest) is already recorded for the call: then
# nothing is inserted, the call is not updated, and no row comes back. Each of the call's columns takes its
# new value if it is among the changed ones (`changed`, from the entity's diff), else keeps its own: one
# statement whatever changed, over the columns a report changes (the general one, over every column, is for
# a change the webhook does not make today).
_RECORD = """
WITH event AS (
    INSERT INTO remote_phone_call_events (account_id, phone_call_id, details, remote_call_id, remote_direction,
                                          call_flow_logic, metadata, request_digest)
    VALUES (%(account_id)s::bigint, %(call_id)s::bigint, %(details)s::jsonb, %(remote_call_id)s::text,
            %(remote_direction)s::text, %(call_flow_logic)s::text, %(metadata)s::jsonb, %(request_digest)s::bytea)
    ON CONFLICT (phone_call_id, request_digest) DO NOTHING
    RETURNING id, created_at, updated_at
), call AS (
    UPDATE phone_calls SET {assignments}updated_at = now() WHERE id = %(call_id)s AND EXISTS (SELECT FROM event)
)
SELECT * FROM event"""


def _record(columns: frozenset[str]) -> tuple[frozenset[str], Prepared]:
    return columns, Prepared(_RECORD.format(assignments="".join(
        f"{name} = CASE WHEN '{name}' = ANY(%(changed)s::text[]) THEN %(call_{name})s::{_SQL_TYPES[name]} "
        f"ELSE {name} END, " for name in sorted(columns))))


class Prepared:
    """A statement as the unit of work PREPAREs it once per connection, then EXECUTEs it: PostgreSQL plans it
    once, not per request (planning FIND is half its cost). Off with `prepared_statements=false` in
    DATABASE_URL, as behind a PgBouncer in transaction mode, where the next transaction may run on another
    server connection: then `sql` runs as it is."""

    def __init__(self, sql: str):
        self.sql = sql
        self.name = "scfm_" + hashlib.sha1(sql.encode()).hexdigest()[:16]
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
        positional = re.sub(r"%\((\w+)\)s", lambda match: f"${names.index(match.group(1)) + 1}", sql)
        self.prepare = f"PREPARE {self.name} AS {positional}"
        self.execute = f"EXECUTE {self.name} ({', '.join(f'%({name})s' for name in names)})"


_FIND = Prepared(FIND)
_REPORTED = _record(frozenset({"status", "remote_status", "remote_status_updated_at", "remote_direction", "duration",
                               "metadata"}))
_ANY_CHANGE = _record(frozenset(_WRITABLE))


class Statements(Protocol):
    def first(self, statement: Prepared, params: dict[str, Any]) -> tuple | None:
        """The statement's first row (None: no row), run in the unit of work's transaction."""


class ProviderReports:
    def __init__(self, statements: Statements):
        self.statements = statements

    def find(self, account_sid: str, call_sid: str | None) -> ReportTarget | None:
        """The account a webhook names and, locked, the call of that account it reports on."""
        row = self.statements.first(_FIND, {"account_sid": account_sid, "call_sid": call_sid})
        if row is None:
            return None
        account = model.Account(**dict(zip(_ACCOUNT_FIELDS, row)))
        if row[_CALL_START] is None:  # the call's id: no call of this account has that CallSid
            return ReportTarget(account, None, None)
        inherited, participation_metadata, callout_metadata = row[_CALL_END:]
        call = model.PhoneCall(**dict(zip(_CALL_FIELDS, row[_CALL_START:_CALL_END])),
                               inherited_call_flow_logic=inherited)
        call.mark_clean()
        context = {**(callout_metadata or {}), **(participation_metadata or {}), **call.metadata}
        return ReportTarget(account, call, context)

    def record(self, call: model.PhoneCall, event: model.RemotePhoneCallEvent,
               request_digest: bytes) -> model.RemotePhoneCallEvent | None:
        """Save the call's changed fields and add the event, in one statement; the event as stored, or None
        (and nothing saved) when the request with this digest is already recorded for the call."""
        changed = call.changed_fields() & _WRITABLE
        columns, statement = _REPORTED if changed <= _REPORTED[0] else _ANY_CHANGE
        params: dict[str, Any] = {f"call_{name}": _adapt(name, getattr(call, name)) if name in changed else None
                                  for name in columns}
        params.update(changed=sorted(changed), call_id=call.id, account_id=event.account_id,
                      details=Json(event.details), remote_call_id=event.remote_call_id,
                      remote_direction=event.remote_direction, call_flow_logic=event.call_flow_logic,
                      metadata=Json(event.metadata), request_digest=request_digest)
        row = self.statements.first(statement, params)
        if row is None:
            return None
        event_id, created_at, updated_at = row
        return dataclasses.replace(event, id=event_id, created_at=created_at, updated_at=updated_at)


def _adapt(name: str, value):
    return Json(value) if name in _JSON_COLUMNS else value
