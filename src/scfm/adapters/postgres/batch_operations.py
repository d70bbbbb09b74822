"""The rows a batch operation acts on, as SQL: one selection serves the preview and the run.

Runs are set-based (INSERT ... SELECT, UPDATE ... WHERE id IN (SELECT ...)), each marks the rows it touched
with the operation's id, and each excludes what an earlier delivery of the same run already did.
"""
from __future__ import annotations

from sqlalchemy import exists, func, insert, literal, select, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from scfm.adapters.postgres import tables as t
from scfm.adapters.postgres.filters import compile_conditions
from scfm.adapters.postgres.repositories import count_matches
from scfm.domain import batch_operation as bo
from scfm.domain import state_machines as sm

IN_FLIGHT = sm.status_values(sm.IN_FLIGHT_PHONE_CALL_STATUSES)
FETCHABLE = sm.status_values(sm.PHONE_CALL_TRANSITIONS["queue_remote_fetch"][0])
CREATED, QUEUED, FETCH_QUEUED = (sm.PhoneCallStatus.CREATED.value, sm.PhoneCallStatus.QUEUED.value,
                                 sm.PhoneCallStatus.REMOTE_FETCH_QUEUED.value)


class BatchOperationQueries:
    def __init__(self, uow):
        self.uow = uow
        self.conn = uow.conn

    # ------------------------------------------------------------ selections
    def _clauses(self, repo, table, conditions):
        return compile_conditions(table, conditions, repo.custom_compilers())

    def _participation_and_callout_clauses(self, operation, plan, p, c):
        clauses = self._clauses(self.uow.callout_participations, p, plan.filters.get("callout_participation", []))
        clauses += self._clauses(self.uow.callouts, c, plan.filters.get("callout", []))
        if operation.callout_id is not None:
            clauses.append(p.c.callout_id == operation.callout_id)
        return clauses

    def limit(self, operation, plan) -> int | None:
        calls_in_period = None
        cap = plan.period_cap
        if cap is not None:
            pc = t.phone_calls
            column = pc.c[cap.timestamp_attribute]
            clauses = [pc.c.account_id == operation.account_id,
                       column >= func.now() - func.make_interval(0, 0, 0, 0, 0, 0, cap.hours * 3600)]
            if cap.statuses:
                clauses.append(pc.c.status.in_(cap.statuses))
            calls_in_period = self.conn.execute(select(func.count()).select_from(pc).where(*clauses)).scalar_one()
        return bo.acted_on_limit(plan, calls_in_period)

    def candidates(self, operation, plan):
        """A SELECT of the rows the run acts on, with the columns the run needs; with a limit, the first by id."""
        limit = self.limit(operation, plan) if operation.type in bo.PHONE_CALL_TYPES else None
        query, order = getattr(self, "_" + operation.type.split("::")[1])(operation, plan)
        # without a limit the order does not matter, and sorting a million rows costs a second
        return query if limit is None else query.order_by(order).limit(limit)

    def _CalloutPopulation(self, operation, plan):
        c, p = t.contacts, t.callout_participations
        clauses = self._clauses(self.uow.contacts, c, plan.filters.get("contact", []))
        return (
            select(c.c.id, c.c.msisdn)
            .where(c.c.account_id == operation.account_id, *clauses,
                   ~exists().where(p.c.callout_id == operation.callout_id, p.c.contact_id == c.c.id),
                   ~exists().where(p.c.callout_id == operation.callout_id, p.c.msisdn == c.c.msisdn)),
            c.c.id,
        )

    def _PhoneCallCreate(self, operation, plan):
        p, c, pc = t.callout_participations, t.callouts, t.phone_calls
        clauses = [p.c.account_id == operation.account_id,
                   *self._participation_and_callout_clauses(operation, plan, p, c)]
        if operation.id is not None:  # a run made again skips what it made; a new operation has made nothing
            clauses.append(~exists().where(pc.c.callout_participation_id == p.c.id,
                                           pc.c.create_batch_operation_id == operation.id))
        return (
            select(p.c.id, p.c.contact_id, p.c.msisdn).select_from(p.join(c, c.c.id == p.c.callout_id)).where(*clauses),
            p.c.id,
        )

    def _phone_calls(self, operation, plan, statuses):
        pc, p, c = t.phone_calls, t.callout_participations, t.callouts
        clauses = self._clauses(self.uow.phone_calls, pc, plan.filters.get("phone_call", []))
        if plan.filters.get("callout_participation") or plan.filters.get("callout") or operation.callout_id:
            clauses += self._participation_and_callout_clauses(operation, plan, p, c)
        return (
            pc.outerjoin(p, p.c.id == pc.c.callout_participation_id).outerjoin(c, c.c.id == p.c.callout_id),
            [pc.c.account_id == operation.account_id, pc.c.status.in_(statuses), *clauses],
        )

    def _PhoneCallQueue(self, operation, plan):
        pc = t.phone_calls
        source, clauses = self._phone_calls(operation, plan, [CREATED])
        other = pc.alias("other")
        clauses.append(~exists().where(other.c.callout_participation_id == pc.c.callout_participation_id,
                                       other.c.status.in_(IN_FLIGHT)))
        # one call per participation: a second would break the one-in-flight rule
        first = func.row_number().over(partition_by=func.coalesce(pc.c.callout_participation_id, -pc.c.id),
                                       order_by=pc.c.id).label("n")
        ranked = select(pc.c.id, first).select_from(source).where(*clauses).subquery()
        return select(ranked.c.id).where(ranked.c.n == 1), ranked.c.id

    def _PhoneCallQueueRemoteFetch(self, operation, plan):
        pc = t.phone_calls
        source, clauses = self._phone_calls(operation, plan, FETCHABLE)
        return select(pc.c.id).select_from(source).where(*clauses, pc.c.remote_call_id.is_not(None)), pc.c.id

    # ------------------------------------------------------------ previews and results
    def _page(self, repo, ids_query, page: int, per_page: int):
        ids = ids_query.subquery()
        total, estimated = count_matches(self.conn, select(ids.c.id))
        # page the ids first: the limit then reaches into the selection instead of joining every row
        page_ids = select(ids.c.id).order_by(ids.c.id).limit(per_page).offset((page - 1) * per_page)
        query = repo.base_select().where(repo.table.c.id.in_(page_ids)).order_by(repo.table.c.id)
        return [repo.to_entity(row) for row in self.conn.execute(query)], total, estimated

    def preview(self, operation, plan, kind: str, page: int, per_page: int):
        candidates = self.candidates(operation, plan).subquery()
        if operation.type == bo.PHONE_CALL_CREATE and kind == "contacts":
            ids = select(candidates.c.contact_id.label("id")).distinct()
        else:
            ids = select(candidates.c.id)
        return self._page(getattr(self.uow, kind), ids, page, per_page)

    def preview_is_empty(self, operation, plan) -> bool:
        candidates = self.candidates(operation, plan).subquery()
        return not self.conn.execute(select(exists(select(candidates.c.id)))).scalar()

    def analyze(self, operation) -> None:
        """Fresh planner statistics after a bulk insert, so that the next preview plans for the real size, or
        after calls were queued, so that the dialer's claim is planned for queued calls."""
        table = "callout_participations" if operation.type == bo.CALLOUT_POPULATION else "phone_calls"
        self.conn.exec_driver_sql(f"ANALYZE {table}")

    def results(self, operation, kind: str, page: int, per_page: int):
        p, pc = t.callout_participations, t.phone_calls
        if operation.type == bo.CALLOUT_POPULATION:
            touched = select(p.c.id, p.c.contact_id).where(p.c.callout_population_id == operation.id).subquery()
            ids = select(touched.c.contact_id.label("id")) if kind == "contacts" else select(touched.c.id)
        else:
            column = {bo.PHONE_CALL_CREATE: "create_batch_operation_id", bo.PHONE_CALL_QUEUE: "queue_batch_operation_id",
                      bo.PHONE_CALL_QUEUE_REMOTE_FETCH: "queue_remote_fetch_batch_operation_id"}[operation.type]
            ids = select(pc.c.id).where(pc.c[column] == operation.id)
        return self._page(getattr(self.uow, kind), ids, page, per_page)

    # ------------------------------------------------------------ runs
    def run(self, operation, plan) -> list[int]:
        """Act on the candidates; the ids of phone calls that now need a worker (to dial or to fetch)."""
        candidates = self.candidates(operation, plan).subquery()
        now = func.now()
        if operation.type == bo.CALLOUT_POPULATION:
            p = t.callout_participations
            self.conn.execute(pg_insert(p).from_select(
                ["account_id", "callout_id", "contact_id", "callout_population_id", "msisdn", "created_at",
                 "updated_at"],
                select(literal(operation.account_id), literal(operation.callout_id), candidates.c.id,
                       literal(operation.id), candidates.c.msisdn, now, now),
            ).on_conflict_do_nothing())
            return []
        if operation.type == bo.PHONE_CALL_CREATE:
            pc = t.phone_calls
            self.conn.execute(insert(pc).from_select(
                ["account_id", "callout_participation_id", "contact_id", "create_batch_operation_id", "status",
                 "msisdn", "remote_request_params", "created_at", "updated_at"],
                select(literal(operation.account_id), candidates.c.id, candidates.c.contact_id, literal(operation.id),
                       literal(CREATED), candidates.c.msisdn,
                       type_coerce(plan.remote_request_params, JSONB), now, now)
                .order_by(candidates.c.id),  # calls made (and so dialed) in the order of their participations
            ))
            return []
        pc = t.phone_calls
        if operation.type == bo.PHONE_CALL_QUEUE:
            other = pc.alias("other")
            statement = (
                update(pc).where(
                    pc.c.id.in_(select(candidates.c.id)), pc.c.status == CREATED,
                    ~exists().where(other.c.callout_participation_id == pc.c.callout_participation_id,
                                    other.c.status.in_(IN_FLIGHT)))
                .values(status=QUEUED, queue_batch_operation_id=operation.id, queued_at=now, next_attempt_at=now,
                        dial_claimed_at=None, updated_at=now)
            )
        else:
            statement = (
                update(pc).where(pc.c.id.in_(select(candidates.c.id)), pc.c.status.in_(FETCHABLE))
                .values(status=FETCH_QUEUED, queue_remote_fetch_batch_operation_id=operation.id,
                        updated_at=now)
            )
        return [row.id for row in self.conn.execute(statement.returning(pc.c.id))]


__all__ = ["BatchOperationQueries"]
