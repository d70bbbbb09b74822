"""The sweeper: re-delivers whatever the database says is due, so a lost job or webhook delays work but
never drops it."""
from __future__ import annotations

import logging

from scfm.domain.dialing import Timings

log = logging.getLogger(__name__)


def sweep(uow_for, jobs, timings: Timings) -> dict:
    report = {}
    with uow_for(None) as uow:
        calls = uow.phone_calls
        accounts = calls.accounts_with_due_calls()
        unknown_outcomes = calls.claims_to_reconcile(timings.unknown_outcome_grace, timings.reconcile_interval)
        expired = calls.silent_calls(["remotely_queued", "in_progress", "remote_fetch_queued"],
                                     timings.expire_after_silence)
        if expired:
            calls.expire(expired, f"No news from the provider for {timings.expire_after_silence / 3600:g} hours")
        silent = calls.queue_remote_fetches(calls.silent_calls(["remotely_queued", "in_progress"],
                                                               timings.fetch_after_silence))
        lost_fetches = calls.silent_calls(["remote_fetch_queued"], timings.fetch_after_silence)
        stalled = uow.batch_operations.stalled(timings.stalled_batch_operation)
        stalled_imports = uow.contact_imports.stalled(timings.stalled_batch_operation)
        uow.commit()
    for account_id in accounts:
        jobs.dial_due(account_id)
    if unknown_outcomes:
        jobs.reconcile_unknown_outcomes(unknown_outcomes)
    if silent or lost_fetches:
        jobs.fetch_remote_calls(sorted(set(silent) | set(lost_fetches)))
    for operation_id in stalled:
        jobs.run_batch_operation(operation_id)
    for import_id in stalled_imports:
        jobs.run_contact_import(import_id)
    report.update(dispatched_accounts=len(accounts), unknown_outcomes=len(unknown_outcomes), expired=len(expired),
                  fetches=len(set(silent) | set(lost_fetches)), batch_operations=len(stalled),
                  contact_imports=len(stalled_imports))
    if any(report.values()):
        log.info("sweep: %s", report)
    return report
