"""RQ job functions: thin, ids in, the same services as the API; every one is safe to run twice."""
from __future__ import annotations

import threading
import uuid

from scfm.bootstrap import bootstrap
from scfm.services import batch_operations, dialing

def dial_due(account_id: int) -> dict | str:
    """The account's dispatcher: one at a time per account (a lease in Redis), dialing at its rate."""
    deps = bootstrap()
    name, token = f"{deps.settings.queue_name}:dispatcher:{account_id}", uuid.uuid4().hex
    lease = deps.settings.timings.dispatcher_lease
    if not deps.locks.acquire(name, token, lease):
        return "busy"
    stop = threading.Event()

    def renew():
        while not stop.wait(lease / 4):
            if not deps.locks.acquire(name, token, lease):
                stop.set()

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        report = dialing.dispatch(deps.uow, deps.provider, deps.limiter, deps.settings.provider,
                                  deps.settings.public_url, account_id, deps.settings.timings, stop)
    finally:
        stop.set()
        deps.locks.release(name, token)
    if report.more_due:
        deps.jobs.dial_due(account_id, delay=1.0 if report.dialed == 0 else None)
    return {"dialed": report.dialed, **(report.results or {})}


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
