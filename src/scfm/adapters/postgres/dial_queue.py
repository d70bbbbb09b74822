"""The dial queue in PostgreSQL: set-based statements on phone_calls, with every status from the domain's
state machines (the partial indexes of the migrations have the same predicates: tests/unit compares them)."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Text, bindparam, case, exists, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from scfm.adapters.postgres import tables as t
from scfm.adapters.postgres.repositories import integrity_error_to_validation
from scfm.domain import model
from scfm.domain import state_machines as sm
from scfm.domain.dial_queue import CallsToMake, Claim, PlannedCallout
from scfm.domain.ports import RemoteCall

pc = t.phone_calls
DIALABLE = sm.status_values(sm.DIALABLE_PHONE_CALL_STATUSES)
AWAITING_NEWS = sm.status_values(sm.AWAITING_NEWS_PHONE_CALL_STATUSES)
AT_PROVIDER = sm.status_values(sm.AT_PROVIDER_PHONE_CALL_STATUSES)
FETCH_QUEUED = sm.PhoneCallStatus.REMOTE_FETCH_QUEUED.value
REMOTELY_QUEUED = sm.PhoneCallStatus.REMOTELY_QUEUED.value
ERRORED = sm.PhoneCallStatus.ERRORED.value
EXPIRED = sm.PhoneCallStatus.EXPIRED.value
QUEUED = sm.PhoneCallStatus.QUEUED.value
COMPLETED = sm.PhoneCallStatus.COMPLETED.value
TERMINAL = sm.status_values(sm.TERMINAL_PHONE_CALL_STATUSES)
HELD = sm.status_values(sm.HELD_CALLOUT_STATUSES)
RUNNING = sm.CalloutStatus.RUNNING.value
_FIELDS = {f.name for f in dataclasses.fields(model.PhoneCall)}


def _seconds(seconds: Any) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def _unclaimed_due(now: datetime) -> list[ColumnElement[bool]]:
    """Waiting for a dialer now (index_phone_calls_due_for_dialing)."""
    return [pc.c.status.in_(DIALABLE), pc.c.dial_claimed_at.is_(None), pc.c.next_attempt_at <= now]


def _effective_plan(callout: Any, account: Any) -> Any:
    """A callout's call plan: its account's, with the callout's keys on top."""
    empty = literal({}, JSONB)
    return func.coalesce(account.c.call_plan, empty).op("||")(func.coalesce(callout.c.call_plan, empty))


def _nothing_in_flight(p: Any) -> ColumnElement[bool]:
    """A participation whose latest call ended (or that has none): a call `created` by a batch operation and
    not queued is the user's to queue."""
    return p.c.last_phone_call_status.is_(None) | p.c.last_phone_call_status.in_(TERMINAL)


def _open_claim() -> list[ColumnElement[bool]]:
    """Claimed for dialing, with no answer recorded (index_phone_calls_open_claims)."""
    return [pc.c.status.in_(DIALABLE), pc.c.dial_claimed_at.is_not(None), pc.c.remote_call_id.is_(None)]


def _recorded(status: str, **values: Any) -> Any:
    """What the dialer records of a claimed call, for the bound `phone_call_id`."""
    return update(pc).where(pc.c.id == bindparam("phone_call_id")).values(
        status=case((pc.c.status.in_(DIALABLE), status), else_=pc.c.status),
        remotely_queued_at=func.coalesce(pc.c.remotely_queued_at, func.now()), updated_at=func.now(), **values)


_RECORD_REMOTELY_QUEUED = _recorded(
    REMOTELY_QUEUED, remote_call_id=func.coalesce(pc.c.remote_call_id, bindparam("sid", type_=Text)),
    remote_status=func.coalesce(pc.c.remote_status, bindparam("status", type_=Text)),
    remote_direction=func.coalesce(pc.c.remote_direction, bindparam("direction", type_=Text)),
    remote_queue_response=bindparam("response", type_=JSONB))
_RECORD_MANY_REMOTELY_QUEUED = text(f"""
    UPDATE phone_calls AS pc
       SET status = CASE WHEN pc.status = ANY(:dialable) THEN '{REMOTELY_QUEUED}' ELSE pc.status END,
           remote_call_id = coalesce(pc.remote_call_id, v.sid), remote_status = coalesce(pc.remote_status, v.status),
           remote_direction = coalesce(pc.remote_direction, v.direction), remote_queue_response = v.response::jsonb,
           remotely_queued_at = coalesce(pc.remotely_queued_at, now()), updated_at = now()
      FROM unnest(CAST(:ids AS bigint[]), CAST(:sids AS text[]), CAST(:statuses AS text[]),
                  CAST(:directions AS text[]), CAST(:responses AS text[])) AS v (id, sid, status, direction, response)
     WHERE pc.id = v.id""")
_RECORD_REFUSAL = _recorded(ERRORED, remote_error_message=bindparam("message", type_=Text))


def _last_news() -> Any:
    return func.coalesce(pc.c.remote_status_updated_at, pc.c.remotely_queued_at, pc.c.updated_at)


class PostgresDialQueue:
    def __init__(self, conn: Connection):
        self.conn = conn

    # ---------------------------------------------------------------- the dialer
    def _due(self, account_id: int, now: datetime) -> list[ColumnElement[bool]]:
        p, c = t.callout_participations, t.callouts
        held = (select(p.c.id).join(c, c.c.id == p.c.callout_id)
                .where(p.c.id == pc.c.callout_participation_id, c.c.status.in_(HELD)))
        return [pc.c.account_id == account_id, *_unclaimed_due(now), ~exists(held)]

    def accounts_with_due_calls(self, now: datetime) -> list[int]:
        due = select(pc.c.account_id).where(*_unclaimed_due(now)).distinct()
        return [row.account_id for row in self.conn.execute(due)]

    def due_exists(self, account_id: int, now: datetime) -> bool:
        return bool(self.conn.execute(select(exists().where(*self._due(account_id, now)))).scalar())

    def in_flight_count(self, account_id: int) -> int:
        in_flight = pc.c.status.in_(AT_PROVIDER) | (pc.c.status.in_(DIALABLE) & pc.c.dial_claimed_at.is_not(None))
        return int(self.conn.execute(
            select(func.count()).select_from(pc).where(pc.c.account_id == account_id, in_flight)).scalar_one())

    def claim_due(self, account_id: int, now: datetime, limit: int) -> list[Claim]:
        """One statement: the claims, and what the dialer checks before dialing (the effective plan, the
        contact's time zone) read with them."""
        p, c, a, ct = t.callout_participations, t.callouts, t.accounts, t.contacts
        next_due = (select(pc.c.id).where(*self._due(account_id, now)).order_by(pc.c.next_attempt_at, pc.c.id)
                    .limit(limit).with_for_update(skip_locked=True).scalar_subquery())
        claimed = (update(pc).where(pc.c.id.in_(next_due))
                   .values(dial_claimed_at=func.now(), dial_attempts=pc.c.dial_attempts + 1, updated_at=func.now(),
                           waiting_for_window=False)
                   .returning(*pc.c).cte("claimed"))
        rows = self.conn.execute(
            select(claimed, _effective_plan(c, a).label("effective_call_plan"),
                   ct.c.metadata["time_zone"].label("contact_time_zone"))
            .select_from(claimed.outerjoin(p, p.c.id == claimed.c.callout_participation_id)
                         .outerjoin(c, c.c.id == p.c.callout_id).outerjoin(a, a.c.id == c.c.account_id)
                         .outerjoin(ct, ct.c.id == p.c.contact_id))
            .order_by(claimed.c.next_attempt_at, claimed.c.id))
        return [Claim(_phone_call(row), row.effective_call_plan or None, row.contact_time_zone) for row in rows]

    def release(self, phone_call_ids: list[int]) -> None:
        if phone_call_ids:
            self.conn.execute(update(pc).where(pc.c.id.in_(phone_call_ids), *_open_claim()).values(
                dial_claimed_at=None, dial_attempts=pc.c.dial_attempts - 1, updated_at=func.now()))

    def put_back_until(self, phone_call_id: int, at: datetime) -> None:
        self.conn.execute(update(pc).where(pc.c.id == phone_call_id, pc.c.status.in_(DIALABLE)).values(
            dial_claimed_at=None, next_attempt_at=at, waiting_for_window=True, dial_attempts=pc.c.dial_attempts - 1,
            updated_at=func.now()))

    def end_expired(self, phone_call_id: int, message: str) -> None:
        self.conn.execute(update(pc).where(pc.c.id == phone_call_id, pc.c.status.in_(DIALABLE)).values(
            status=EXPIRED, remote_error_message=message, dial_claimed_at=None, waiting_for_window=False,
            dial_attempts=pc.c.dial_attempts - 1, updated_at=func.now()))

    def record_remotely_queued(self, phone_call_id: int, remote: RemoteCall) -> None:
        self._record(_RECORD_REMOTELY_QUEUED, phone_call_id=phone_call_id, sid=remote.sid, status=remote.status,
                     direction=remote.direction, response=remote.response)

    def record_many_remotely_queued(self, records: list[tuple[int, RemoteCall]]) -> None:
        if len(records) == 1:
            self.record_remotely_queued(*records[0])
            return
        records = sorted(records, key=lambda record: record[0])
        self._record(_RECORD_MANY_REMOTELY_QUEUED, ids=[phone_call_id for phone_call_id, _ in records],
                     sids=[remote.sid for _, remote in records], statuses=[remote.status for _, remote in records],
                     directions=[remote.direction for _, remote in records],
                     responses=[json.dumps(remote.response) for _, remote in records], dialable=list(DIALABLE))

    def record_refusal(self, phone_call_id: int, message: str) -> None:
        self._record(_RECORD_REFUSAL, phone_call_id=phone_call_id, message=message)

    def _record(self, statement: Any, **params: Any) -> None:
        """One statement, built once (the dialer records every call); only a call still dialable moves (a status
        callback may have taken it further).

        Its commit does not wait for the WAL to reach the disk: a record lost in a crash of PostgreSQL leaves an
        open claim, which the reconciliation settles from the provider's list of calls (as when a dialer dies
        between the request and the record), and a lost record means every later commit was lost too. The claim
        itself, which keeps a call from being dialed twice, is committed durably."""
        self.conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        try:
            self.conn.execute(statement, params)
        except IntegrityError as error:
            translated = integrity_error_to_validation(error)
            if translated:
                raise translated from None
            raise

    def put_back(self, phone_call_id: int, retry_in_seconds: float, count_attempt: bool = True) -> None:
        values: dict[str, Any] = dict(dial_claimed_at=None, updated_at=func.now(),
                                      next_attempt_at=func.now() + _seconds(retry_in_seconds))
        if not count_attempt:
            values["dial_attempts"] = pc.c.dial_attempts - 1
        self.conn.execute(update(pc).where(pc.c.id == phone_call_id, pc.c.status.in_(DIALABLE)).values(**values))

    # ---------------------------------------------------------------- the sweeper and the reconciliation
    def claims_to_reconcile(self, older_than_seconds: float, ask_again_in_seconds: float,
                            limit: int = 1000) -> list[int]:
        due = (select(pc.c.id).where(
            *_open_claim(), pc.c.dial_claimed_at < func.now() - _seconds(older_than_seconds),
            or_(pc.c.reconcile_after.is_(None), pc.c.reconcile_after <= func.now()),
        ).order_by(pc.c.id).limit(limit).with_for_update(skip_locked=True))
        return [row.id for row in self.conn.execute(
            update(pc).where(pc.c.id.in_(due.scalar_subquery()))
            .values(reconcile_after=func.now() + _seconds(ask_again_in_seconds))
            .returning(pc.c.id))]

    def open_claims_to(self, msisdn: str, excluding: int) -> list[datetime]:
        """Of any account: accounts may share the server's provider credentials."""
        return list(self.conn.execute(select(pc.c.dial_claimed_at).where(
            *_open_claim(), pc.c.msisdn == msisdn, pc.c.id != excluding)).scalars())

    def known_remote_call_ids(self, sids: list[str]) -> set[str]:
        """Of any account: sids are unique."""
        if not sids:
            return set()
        return set(self.conn.execute(select(pc.c.remote_call_id).where(pc.c.remote_call_id.in_(sids))).scalars())

    def silent_calls(self, older_than_seconds: float, limit: int = 10000) -> list[int]:
        return [row.id for row in self.conn.execute(
            select(pc.c.id).where(pc.c.status.in_(AT_PROVIDER),
                                  _last_news() < func.now() - _seconds(older_than_seconds))
            .order_by(pc.c.id).limit(limit))]

    def expire(self, ids: list[int], message: str) -> int:
        return int(self.conn.execute(
            update(pc).where(pc.c.id.in_(ids), pc.c.status.in_(AT_PROVIDER))
            .values(status=ERRORED, remote_error_message=message, updated_at=func.now())).rowcount)

    def queue_remote_fetches(self, older_than_seconds: float, limit: int = 10000) -> list[int]:
        cutoff = func.now() - _seconds(older_than_seconds)
        silent = (pc.c.status.in_(AWAITING_NEWS) & (_last_news() < cutoff)
                  & ((pc.c.remote_fetch_queued_at.is_(None)) | (pc.c.remote_fetch_queued_at < cutoff)))
        lost = (pc.c.status == FETCH_QUEUED) & (func.greatest(pc.c.remote_fetch_queued_at, pc.c.updated_at) < cutoff)
        due = (select(pc.c.id).where(silent | lost).order_by(pc.c.id).limit(limit)
               .with_for_update(skip_locked=True))
        return sorted(row.id for row in self.conn.execute(
            update(pc).where(pc.c.id.in_(due.scalar_subquery()))
            .values(status=FETCH_QUEUED, remote_fetch_queued_at=func.now(), updated_at=func.now())
            .returning(pc.c.id)))


    # ---------------------------------------------------------------- the call plans' runner
    def planned_callouts(self, after_id: int = 0, limit: int = 1000) -> list[int]:
        c, a, p = t.callouts, t.accounts, t.callout_participations
        unfinished = select(p.c.id).where(p.c.callout_id == c.c.id, p.c.outcome.is_(None))
        return list(self.conn.execute(
            select(c.c.id).join(a, a.c.id == c.c.account_id)
            .where(c.c.id > after_id, c.c.status == RUNNING, _effective_plan(c, a) != literal({}, JSONB),
                   exists(unfinished))
            .order_by(c.c.id).limit(limit)).scalars())

    def lock_planned_callout(self, callout_id: int) -> PlannedCallout | None:
        c, a = t.callouts, t.accounts
        row = self.conn.execute(
            select(c.c.id, c.c.account_id, c.c.status, _effective_plan(c, a).label("call_plan"),
                   a.c.calls_per_second)
            .join(a, a.c.id == c.c.account_id).where(c.c.id == callout_id)
            .with_for_update(of=c, skip_locked=True)).first()
        if row is None or row.status != RUNNING or not row.call_plan:
            return None
        return PlannedCallout(row.id, row.account_id, row.call_plan, row.calls_per_second)

    def _callout_calls(self, callout_id: int) -> Any:
        p = t.callout_participations
        return select(p.c.id).where(p.c.callout_id == callout_id, p.c.id == pc.c.callout_participation_id)

    def expire_queued_calls(self, callout_id: int, message: str) -> int:
        return int(self.conn.execute(
            update(pc).where(pc.c.status == QUEUED, pc.c.dial_claimed_at.is_(None),
                             exists(self._callout_calls(callout_id)))
            .values(status=EXPIRED, remote_error_message=message, waiting_for_window=False,
                    updated_at=func.now())).rowcount)

    def finish_participations(self, callout_id: int, now: datetime, retried: list[str], max_attempts: int,
                              max_calls: int) -> int:
        p = t.callout_participations
        last = p.c.last_phone_call_status
        done = ((last == COMPLETED) | last.not_in(retried or [COMPLETED])
                | (p.c.attempts >= max_attempts) | (p.c.calls_count >= max_calls))
        return int(self.conn.execute(
            update(p).where(p.c.callout_id == callout_id, p.c.outcome.is_(None), last.in_(TERMINAL), done)
            .values(outcome=last, finished_at=now, updated_at=func.now())).rowcount)

    def expire_participations(self, callout_id: int, now: datetime) -> int:
        p = t.callout_participations
        return int(self.conn.execute(
            update(p).where(p.c.callout_id == callout_id, p.c.outcome.is_(None), _nothing_in_flight(p))
            .values(outcome=EXPIRED, finished_at=now, updated_at=func.now())).rowcount)

    def calls_ahead(self, callout_id: int, now: datetime, horizon_seconds: float, limit: int) -> int:
        ahead = (select(pc.c.id).where(*_unclaimed_due(now + timedelta(seconds=horizon_seconds)),
                                       exists(self._callout_calls(callout_id)))
                 .limit(limit).subquery())
        return int(self.conn.execute(select(func.count()).select_from(ahead)).scalar_one())

    def make_calls(self, callout_id: int, account_id: int, now: datetime, calls: CallsToMake) -> int:
        p, last = t.callout_participations, pc.alias("last_call")
        status = p.c.last_phone_call_status
        ladders = literal({outcome: list(ladder) for outcome, ladder in calls.retries.items()}, JSONB)
        ladder = ladders.op("->")(status)
        step = func.least(func.greatest(p.c.calls_count, 1), func.jsonb_array_length(ladder)) - 1
        delay = ladder.op("->>")(step).cast(Integer)
        ended = func.coalesce(last.c.remote_status_updated_at, last.c.updated_at)
        due = case((status.is_(None), literal(now)), else_=ended + _seconds(delay))
        retry = (status.in_(list(calls.retries) or [COMPLETED]) & (p.c.attempts < calls.max_attempts)
                 & (p.c.calls_count < calls.max_calls))
        chosen = (
            select(p.c.account_id, p.c.id, p.c.contact_id, p.c.msisdn, literal(QUEUED),
                   literal(calls.remote_request_params, JSONB), literal(now), due)
            .select_from(p.outerjoin(last, last.c.id == p.c.last_phone_call_id))
            .where(p.c.callout_id == callout_id, p.c.account_id == account_id, p.c.outcome.is_(None),
                   status.is_(None) | (retry & (due <= now + timedelta(seconds=calls.horizon_seconds))))
            .order_by(p.c.id).limit(calls.limit))
        statement = pg_insert(pc).from_select(
            ["account_id", "callout_participation_id", "contact_id", "msisdn", "status", "remote_request_params",
             "queued_at", "next_attempt_at"], chosen).on_conflict_do_nothing()
        return int(self.conn.execute(statement).rowcount)

    def reopen_expired(self, callout_id: int) -> int:
        p = t.callout_participations
        return int(self.conn.execute(
            update(p).where(p.c.callout_id == callout_id, p.c.outcome == EXPIRED)
            .values(outcome=None, finished_at=None, updated_at=func.now())).rowcount)


def _phone_call(row: Row[Any]) -> model.PhoneCall:
    return model.PhoneCall(**{k: v for k, v in row._mapping.items() if k in _FIELDS})
