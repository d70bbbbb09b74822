"""RQ job functions: thin, ids in, the same services as the API."""
from __future__ import annotations

from scfm.bootstrap import bootstrap
from scfm.services import dialing

# How long a dial whose outcome is unknown waits for a status callback before it is given up.
UNKNOWN_OUTCOME_GRACE_SECONDS = 15 * 60


def dial(phone_call_id: int) -> str:
    deps = bootstrap()
    outcome = dialing.dial(deps.uow(), deps.provider, deps.settings.provider, deps.settings.public_url, phone_call_id)
    if outcome.result == "retry":
        deps.jobs.dial(phone_call_id, delay=outcome.retry_in)
    elif outcome.result == "unknown":
        deps.jobs.give_up_unknown_outcome(phone_call_id, delay=UNKNOWN_OUTCOME_GRACE_SECONDS)
    return outcome.result


def fetch_remote_call(phone_call_id: int) -> str:
    deps = bootstrap()
    return dialing.fetch_remote_call(deps.uow(), deps.provider, deps.settings.provider, phone_call_id)


def give_up_unknown_outcome(phone_call_id: int) -> bool:
    deps = bootstrap()
    return dialing.give_up_unknown_outcome(deps.uow(), phone_call_id)


def run_batch_operation(batch_operation_id: int) -> str:
    from scfm.services import batch_operations

    deps = bootstrap()
    return batch_operations.run(deps.uow(), deps.jobs, batch_operation_id)
