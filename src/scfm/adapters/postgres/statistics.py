"""Callout statistics and results: the counters the triggers of migration 0008 keep (shards summed), and a
callout's participations as result rows, read through a server-side cursor."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Sequence

from sqlalchemy import and_, func, literal_column, select

from scfm.adapters.postgres import tables as t
from scfm.adapters.postgres.exports import STREAM_BATCH, Exports
from scfm.domain.model import Callout
from scfm.domain.state_machines import PhoneCallStatus

ANSWERED = PhoneCallStatus.COMPLETED.value


class PostgresStatistics:
    def __init__(self, conn):
        self.conn = conn

    def now(self) -> datetime:
        return self.conn.execute(select(func.now())).scalar_one()

    def state_counts(self, callout_ids: Sequence[int]) -> list[tuple[int, str, int, int, int]]:
        k = t.callout_participation_counters
        rows = self.conn.execute(
            select(k.c.callout_id, k.c.state, func.sum(k.c.participations), func.sum(k.c.calls),
                   func.sum(k.c.attempts))
            .where(k.c.callout_id.in_(list(callout_ids))).group_by(k.c.callout_id, k.c.state))
        return [(callout_id, state, int(participations), int(calls), int(attempts))
                for callout_id, state, participations, calls, attempts in rows
                if participations or calls or attempts]

    def duration_counts(self, callout_ids: Sequence[int]) -> list[tuple[int, int, int]]:
        k = t.callout_duration_counters
        rows = self.conn.execute(
            select(k.c.callout_id, k.c.seconds, func.sum(k.c.participations))
            .where(k.c.callout_id.in_(list(callout_ids))).group_by(k.c.callout_id, k.c.seconds))
        return [(callout_id, seconds, int(count)) for callout_id, seconds, count in rows if count]

    def minute_counts(self, callout_ids: Sequence[int], since: datetime) -> list[tuple[int, datetime, int]]:
        k = t.callout_minute_counters
        rows = self.conn.execute(
            select(k.c.callout_id, k.c.minute, func.sum(k.c.attempts))
            .where(and_(k.c.callout_id.in_(list(callout_ids)), k.c.minute >= since))
            .group_by(k.c.callout_id, k.c.minute))
        return [(callout_id, minute, int(count)) for callout_id, minute, count in rows]

    def callouts(self, account_id: int) -> list[Callout]:
        k, callouts = t.callout_participation_counters, t.callouts
        rows = self.conn.execute(
            select(callouts.c.id, callouts.c.account_id, callouts.c.status, callouts.c.call_plan)
            .where(and_(callouts.c.account_id == account_id,
                        select(k.c.callout_id).where(k.c.callout_id == callouts.c.id).exists()))
            .order_by(callouts.c.id))
        return [Callout(id=id_, account_id=account, status=status, call_plan=plan)
                for id_, account, status, plan in rows]

    # -- results

    def _participations(self, callout_id: int):
        """The callout's participations, each with its contact and its latest answered call (or none)."""
        p, calls = t.callout_participations, t.phone_calls
        answered = (select(calls.c.duration, calls.c.metadata)
                    .where(and_(calls.c.callout_participation_id == p.c.id, calls.c.status == ANSWERED))
                    .order_by(calls.c.id.desc()).limit(1).lateral("answered"))
        joined = (p.join(t.contacts, t.contacts.c.id == p.c.contact_id)
                  .outerjoin(answered, literal_column("true")))
        return p, answered, joined

    def _paths(self, query) -> list[tuple[str, ...]]:
        compiled = query.compile(dialect=self.conn.dialect)
        processors: Any = compiled._bind_processors
        params = {key: processors[key](value) if key in processors else value
                  for key, value in compiled.construct_params().items()}
        return Exports(self.conn).paths_of(str(compiled), params)

    def answer_paths(self, callout_id: int) -> list[tuple[str, ...]]:
        p, answered, joined = self._participations(callout_id)
        return self._paths(select(answered.c.metadata.label("metadata")).select_from(joined)
                           .where(and_(p.c.callout_id == callout_id, answered.c.metadata.is_not(None))))

    def contact_paths(self, callout_id: int) -> list[tuple[str, ...]]:
        p = t.callout_participations
        return self._paths(select(t.contacts.c.metadata.label("metadata"))
                           .select_from(p.join(t.contacts, t.contacts.c.id == p.c.contact_id))
                           .where(p.c.callout_id == callout_id))

    def results(self, callout_id: int) -> Iterator[tuple[Any, ...]]:
        p, answered, joined = self._participations(callout_id)
        query = (select(p.c.id, p.c.contact_id, p.c.msisdn, p.c.calls_count, p.c.attempts,
                        p.c.last_phone_call_status, p.c.outcome, p.c.finished_at, answered.c.duration,
                        t.contacts.c.metadata, answered.c.metadata.label("answered_metadata"))
                 .select_from(joined).where(p.c.callout_id == callout_id).order_by(p.c.id))
        yield from self.conn.execute(query.execution_options(stream_results=True, yield_per=STREAM_BATCH))
