"""The dial queue in PostgreSQL: set-based statements on phone_calls, with every status from the domain's
state machines (the partial indexes of the migrations have the same predicates: tests/unit compares them)."""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import case, exists, func, or_, select, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from scfm.adapters.postgres import tables as t
from scfm.adapters.postgres.repositories import integrity_error_to_validation
from scfm.domain import model
from scfm.domain import state_machines as sm
from scfm.domain.ports import RemoteCall

pc = t.phone_calls
DIALABLE = sm.status_values(sm.DIALABLE_PHONE_CALL_STATUSES)
AWAITING_NEWS = sm.status_values(sm.AWAITING_NEWS_PHONE_CALL_STATUSES)
AT_PROVIDER = sm.status_values(sm.AT_PROVIDER_PHONE_CALL_STATUSES)
FETCH_QUEUED = sm.PhoneCallStatus.REMOTE_FETCH_QUEUED.value
REMOTELY_QUEUED = sm.PhoneCallStatus.REMOTELY_QUEUED.value
ERRORED = sm.PhoneCallStatus.ERRORED.value
HELD = sm.status_values(sm.HELD_CALLOUT_STATUSES)
_FIELDS = {f.name for f in dataclasses.fields(model.PhoneCall)}


def _seconds(seconds: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def _unclaimed_due() -> list[ColumnElement[bool]]:
    """Waiting for a dialer now (index_phone_calls_due_for_dialing)."""
    return [pc.c.status.in_(DIALABLE), pc.c.dial_claimed_at.is_(None), pc.c.next_attempt_at <= func.now()]


def _open_claim() -> list[ColumnElement[bool]]:
    """Claimed for dialing, with no answer recorded (index_phone_calls_open_claims)."""
    return [pc.c.status.in_(DIALABLE), pc.c.dial_claimed_at.is_not(None), pc.c.remote_call_id.is_(None)]


def _last_news() -> Any:
    return func.coalesce(pc.c.remote_status_updated_at, pc.c.remotely_queued_at, pc.c.updated_at)


class PostgresDialQueue:
    def __init__(self, conn: Connection):
        self.conn = conn

    # ---------------------------------------------------------------- the dialer
    def _due(self, account_id: int) -> list[ColumnElement[bool]]:
        p, c = t.callout_participations, t.callouts
        held = (select(p.c.id).join(c, c.c.id == p.c.callout_id)
                .where(p.c.id == pc.c.callout_participation_id, c.c.status.in_(HELD)))
        return [pc.c.account_id == account_id, *_unclaimed_due(), ~exists(held)]

    def accounts_with_due_calls(self) -> list[int]:
        due = select(pc.c.account_id).where(*_unclaimed_due()).distinct()
        return [row.account_id for row in self.conn.execute(due)]

    def due_exists(self, account_id: int) -> bool:
        return bool(self.conn.execute(select(exists().where(*self._due(account_id)))).scalar())

    def in_flight_count(self, account_id: int) -> int:
        in_flight = pc.c.status.in_(AT_PROVIDER) | (pc.c.status.in_(DIALABLE) & pc.c.dial_claimed_at.is_not(None))
        return int(self.conn.execute(
            select(func.count()).select_from(pc).where(pc.c.account_id == account_id, in_flight)).scalar_one())

    def claim_next_due(self, account_id: int) -> model.PhoneCall | None:
        next_due = (select(pc.c.id).where(*self._due(account_id)).order_by(pc.c.next_attempt_at, pc.c.id)
                    .limit(1).with_for_update(skip_locked=True).scalar_subquery())
        row = self.conn.execute(
            update(pc).where(pc.c.id == next_due)
            .values(dial_claimed_at=func.now(), dial_attempts=pc.c.dial_attempts + 1, updated_at=func.now())
            .returning(pc)
        ).first()
        return _phone_call(row) if row else None

    def record_remotely_queued(self, phone_call_id: int, remote: RemoteCall) -> None:
        self._record(phone_call_id, REMOTELY_QUEUED, remote_call_id=func.coalesce(pc.c.remote_call_id, remote.sid),
                     remote_status=func.coalesce(pc.c.remote_status, remote.status),
                     remote_direction=func.coalesce(pc.c.remote_direction, remote.direction),
                     remote_queue_response=type_coerce(remote.response, JSONB))

    def record_refusal(self, phone_call_id: int, message: str) -> None:
        self._record(phone_call_id, ERRORED, remote_error_message=message)

    def _record(self, phone_call_id: int, status: str, **values: Any) -> None:
        """One statement; only a call still dialable moves (a status callback may have taken it further)."""
        dialable = pc.c.status.in_(DIALABLE)
        statement = update(pc).where(pc.c.id == phone_call_id).values(
            status=case((dialable, status), else_=pc.c.status),
            remotely_queued_at=func.coalesce(pc.c.remotely_queued_at, func.now()), updated_at=func.now(), **values)
        try:
            self.conn.execute(statement)
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


def _phone_call(row: Row[Any]) -> model.PhoneCall:
    return model.PhoneCall(**{k: v for k, v in row._mapping.items() if k in _FIELDS})
