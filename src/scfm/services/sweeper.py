"""The sweeper: re-delivers whatever the database says is due, so a lost job or webhook delays work but
never drops it. Due calls it leaves to the dialers, which look for them in the database themselves."""
from __future__ import annotations

import logging

from scfm.domain.call_plan import DEFAULT_MAX_ATTEMPTS_CAP
from scfm.domain.clock import Clock, utc_now
from scfm.domain.dialing import Timings
from scfm.domain.ports import JobQueue, UnitsOfWork
from scfm.services import call_plans

log = logging.getLogger(__name__)


def sweep(uow_for: UnitsOfWork, jobs: JobQueue, timings: Timings, max_attempts: int = DEFAULT_MAX_ATTEMPTS_CAP,
          clock: Clock = utc_now) -> dict[str, int]:
    """One look at what is due. The same work found again on the next sweep is asked for again, and the job
    queue enqueues it only if its job is no longer pending, so the queue is bounded by the work. The call
    plans of running callouts are run here too (`max_attempts`: the operator's cap, SCFM_MAX_ATTEMPTS)."""
    with uow_for(None) as uow:
        calls = uow.dial_queue
        unknown_outcomes = calls.claims_to_reconcile(timings.unknown_outcome_grace, timings.reconcile_interval)
        expired = calls.silent_calls(timings.expire_after_silence)
        if expired:
            calls.expire(expired, f"No news from the provider for {timings.expire_after_silence / 3600:g} hours")
        fetches = calls.queue_remote_fetches(timings.fetch_after_silence)
        stalled = uow.batch_operations.stalled(timings.stalled_batch_operation)
        stalled_imports = uow.contact_imports.stalled(timings.stalled_batch_operation)
        uow.commit()
    plans = call_plans.run_all(uow_for, jobs, clock(), max_attempts)
    enqueued = 0
    if unknown_outcomes:
        enqueued += jobs.reconcile_unknown_outcomes(unknown_outcomes)
    if fetches:
        enqueued += jobs.fetch_remote_calls(fetches)
    enqueued += sum(bool(jobs.run_batch_operation(operation_id)) for operation_id in stalled)
    enqueued += sum(bool(jobs.run_contact_import(import_id)) for import_id in stalled_imports)
    report = dict(unknown_outcomes=len(unknown_outcomes), expired=len(expired), fetches=len(fetches),
                  batch_operations=len(stalled), contact_imports=len(stalled_imports), enqueued=enqueued,
                  planned_callouts=plans["callouts"], planned_calls=plans["made"],
                  planned_finished=plans["finished"] + plans["expired"], planned_expired_calls=plans["expired_calls"])
    if any(report.values()):
        log.info("sweep: %s", report)
    return report
