"""The provider webhook's reads and writes: the busiest path there is (a million calls report several times
each), so it is two statements written out and prepared once per connection, not four built per request.
The first finds the account by its AccountSid and, in the same statement, locks the call it reports on; the
second records the event and updates the call together (neither, for a request already recorded)."""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from psycopg2.extras import Json

from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from scfm.adapters.postgres import tables as t
from scfm.domain import model
from scfm.domain.ports import ReportTarget

_ACCOUNT_COLUMNS = [c.name for c in t.accounts.c]
_CALL_COLUMNS = [c.name for c in t.phone_calls.c]
_ACCOUNT_FIELDS = {f.name for f in dataclasses.fields(model.Account)} & set(_ACCOUNT_COLUMNS)
_CALL_FIELDS = {f.name for f in dataclasses.fields(model.PhoneCall)} & {*_CALL_COLUMNS, "inherited_call_flow_logic"}
_EVENT_COLUMNS = [c.name for c in t.remote_phone_call_events.c if c.name != "request_digest"]
_WRITABLE = set(_CALL_COLUMNS) - {"id", "created_at", "updated_at"}
_JSON_COLUMNS = {c.name for c in t.phone_calls.c if isinstance(c.type, JSONB)}

# The account is the one account that names the SID, in either column (none: the webhook is refused).
# The lateral subquery locks the call (FOR UPDATE OF its own row only) once the account is known, so a call
# of another account is never touched; no call (an unknown CallSid) leaves the call columns NULL.
FIND = f"""
SELECT {", ".join(f'a.{name} AS "account.{name}"' for name in _ACCOUNT_COLUMNS)}, r.*
FROM accounts a
LEFT JOIN LATERAL (
    SELECT {", ".join(f"pc.{name}" for name in _CALL_COLUMNS)},
           coalesce(p.call_flow_logic, c.call_flow_logic) AS inherited_call_flow_logic,
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

# One statement whatever changed: each column takes its new value if it is among the call's changed fields
# (`changed`, from the entity's diff), else keeps its own. The event goes in first, unless this very request
# (its digest) is already recorded for the call: then nothing is inserted, the call is not updated, and no row
# comes back.
_ASSIGNMENTS = "".join(
    f"{c.name} = CASE WHEN '{c.name}' = ANY(%(changed)s::text[]) THEN %(call_{c.name})s::{c.type.compile(dialect=postgresql.dialect())} "
    f"ELSE {c.name} END, "
    for c in t.phone_calls.c if c.name in _WRITABLE)
_RECORD = """
WITH event AS (
    INSERT INTO remote_phone_call_events (account_id, phone_call_id, details, remote_call_id, remote_direction,
                                          call_flow_logic, metadata, request_digest)
    VALUES (%(account_id)s::bigint, %(call_id)s::bigint, %(details)s::jsonb, %(remote_call_id)s::text,
            %(remote_direction)s::text, %(call_flow_logic)s::text, %(metadata)s::jsonb, %(request_digest)s::bytea)
    ON CONFLICT (phone_call_id, request_digest) DO NOTHING
    RETURNING """ + ", ".join(_EVENT_COLUMNS) + """
), call AS (
    UPDATE phone_calls SET """ + _ASSIGNMENTS + """updated_at = now() WHERE id = %(call_id)s AND EXISTS (SELECT FROM event)
)
SELECT * FROM event"""


class Prepared:
    """A statement PREPAREd once per connection, then EXECUTEd: PostgreSQL plans it once, not per request
    (planning FIND is half its cost). Off with `prepared_statements=false` in DATABASE_URL, as behind a
    PgBouncer in transaction mode, where the next transaction may run on another server connection."""

    def __init__(self, sql: str):
        self.sql = sql
        self.name = "scfm_" + hashlib.sha1(sql.encode()).hexdigest()[:16]
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
        positional = re.sub(r"%\((\w+)\)s", lambda match: f"${names.index(match.group(1)) + 1}", sql)
        self.prepare = f"PREPARE {self.name} AS {positional}"
        self.execute = f"EXECUTE {self.name} ({', '.join(f'%({name})s' for name in names)})"

    def run(self, conn, params: dict):
        if not conn.get_execution_options().get("prepared_statements", True):
            return conn.exec_driver_sql(self.sql, params)
        prepared = conn.connection.info.setdefault("prepared_statements", set())  # forgotten on reconnect
        if self.name not in prepared:
            conn.exec_driver_sql(self.prepare)
            prepared.add(self.name)
        return conn.exec_driver_sql(self.execute, params)


_FIND = Prepared(FIND)
_RECORD_STATEMENT = Prepared(_RECORD)


class ProviderReports:
    def __init__(self, conn):
        self.conn = conn

    def find(self, account_sid: str, call_sid: str | None) -> ReportTarget | None:
        """The account a webhook names and, locked, the call of that account it reports on."""
        result = _FIND.run(self.conn, {"account_sid": account_sid, "call_sid": call_sid})
        row = result.mappings().first()
        if row is None:
            return None
        account = model.Account(**{name: row[f"account.{name}"] for name in _ACCOUNT_FIELDS})
        if row["id"] is None:
            return ReportTarget(account, None, None)
        call = model.PhoneCall(**{name: row[name] for name in _CALL_FIELDS})
        call.mark_clean()
        context = {**(row["callout_metadata"] or {}), **(row["participation_metadata"] or {}), **call.metadata}
        return ReportTarget(account, call, context)

    def record(self, call: model.PhoneCall, event: model.RemotePhoneCallEvent,
               request_digest: bytes) -> model.RemotePhoneCallEvent | None:
        """Save the call's changed fields and add the event, in one statement; the event as stored, or None
        (and nothing saved) when the request with this digest is already recorded for the call."""
        changed = call.changed_fields() & _WRITABLE
        params: dict[str, Any] = {f"call_{name}": _adapt(name, getattr(call, name)) if name in changed else None
                                  for name in _WRITABLE}
        params.update(changed=sorted(changed), call_id=call.id, account_id=event.account_id, details=Json(event.details),
                      remote_call_id=event.remote_call_id, remote_direction=event.remote_direction,
                      call_flow_logic=event.call_flow_logic, metadata=Json(event.metadata),
                      request_digest=request_digest)
        row = _RECORD_STATEMENT.run(self.conn, params).mappings().first()
        return model.RemotePhoneCallEvent(**dict(row)) if row else None


def _adapt(name: str, value):
    return Json(value) if name in _JSON_COLUMNS else value
