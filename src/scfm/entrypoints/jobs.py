"""RQ job functions: thin, ids in, the same services as the API; every one is safe to run twice."""
from __future__ import annotations

from scfm.bootstrap import bootstrap
from scfm.domain.clock import utc_now
from scfm.services import batch_operations, call_plans, dialing


def fetch_remote_call(phone_call_id: int) -> str:
    deps = bootstrap()
    return dialing.fetch_remote_call(deps.uow(), deps.provider, deps.settings.provider, phone_call_id)


def reconcile_unknown_outcome(phone_call_id: int) -> str:
    deps = bootstrap()
    return dialing.reconcile_unknown_outcome(deps.uow, deps.provider, deps.settings.provider, phone_call_id,
                                             deps.settings.timings)


def run_batch_operation(batch_operation_id: int) -> str:
    deps = bootstrap()
    return batch_operations.run(deps.uow(), deps.jobs, batch_operation_id)


def run_contact_import(contact_import_id: int) -> dict:
    from scfm.services import contact_imports

    deps = bootstrap()
    return contact_imports.run_import(deps.uow, contact_import_id)


def run_call_plan(callout_id: int) -> str:
    deps = bootstrap()
    run = call_plans.run_callout(deps.uow, callout_id, utc_now(), deps.settings.max_attempts)
    if run is None:
        return "skipped"
    if run.made:
        deps.jobs.dial_due(run.account_id)
    return f"made {run.made} calls, finished {run.finished + run.expired} participations"
