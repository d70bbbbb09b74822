"""A candidate fix of the dialer's per-call cost, patched into this process only (src/ is not touched), for
the diagnosis of `python -m bench dialing`:

  claim   UPDATE ... RETURNING the claimed row, instead of the UPDATE and then a SELECT of it with two joins
  record  one UPDATE that moves a queued call to remotely_queued and fills in what is missing, instead of
          SELECT, SELECT ... FOR UPDATE, SELECT, SAVEPOINT, UPDATE, RELEASE, SELECT
  pool    no pre-ping (a `SELECT 1` round trip at every checkout; there are two checkouts per call)

The outcome is the same as the code's: a call still queued becomes remotely_queued; a status callback that
came first (the call already further along) keeps its status; remote_call_id, remote_status,
remote_direction and remotely_queued_at are only filled in when empty.
"""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def patched(deps):
    from sqlalchemy import case, func, select, update

    from scfm.adapters.postgres import tables as t
    from scfm.adapters.postgres.repositories import PhoneCallRepository
    from scfm.services import dialing

    pc = t.phone_calls

    def claim_next_due(self, account_id: int):
        next_due = (select(pc.c.id).where(*self._due(account_id)).order_by(pc.c.next_attempt_at, pc.c.id)
                    .limit(1).with_for_update(skip_locked=True).scalar_subquery())
        row = self.conn.execute(
            update(pc).where(pc.c.id == next_due)
            .values(dial_claimed_at=func.now(), dial_attempts=pc.c.dial_attempts + 1, updated_at=func.now())
            .returning(*pc.c)
        ).first()
        return self.to_entity(row) if row else None

    def record_remotely_queued(uow, phone_call_id: int, remote) -> None:
        with uow:
            uow.conn.execute(update(pc).where(pc.c.id == phone_call_id).values(
                status=case((pc.c.status == "queued", "remotely_queued"), else_=pc.c.status),
                remote_call_id=func.coalesce(pc.c.remote_call_id, remote.sid),
                remote_status=func.coalesce(pc.c.remote_status, remote.status),
                remote_direction=func.coalesce(pc.c.remote_direction, remote.direction),
                remote_queue_response=remote.response,
                remotely_queued_at=func.coalesce(pc.c.remotely_queued_at, func.now()),
                updated_at=func.now(),
            ))
            uow.commit()

    saved = (PhoneCallRepository.claim_next_due, dialing._record_remotely_queued, deps.engine.pool._pre_ping)
    PhoneCallRepository.claim_next_due = claim_next_due
    dialing._record_remotely_queued = record_remotely_queued
    deps.engine.pool._pre_ping = False
    try:
        yield
    finally:
        PhoneCallRepository.claim_next_due, dialing._record_remotely_queued, deps.engine.pool._pre_ping = saved
