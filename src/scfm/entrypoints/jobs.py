"""RQ job functions: thin, ids in, the same services as the API; every one is safe to run twice."""
from __future__ import annotations

import threading
import time
import uuid

from scfm.bootstrap import bootstrap
from scfm.services import batch_operations, dialing


# A dispatcher that is still dialing this long before its budget ends enqueues its successor, which waits
# for the lease: the successor's start (a forked work horse, connections) overlaps the end, not the slots.
HANDOVER_SECONDS = 2.0


def dial_due(account_id: int, wait_for_lease: float = 0.0) -> dict | str:
    """The account's dispatcher: one at a time per account (a lease in Redis), dialing at its rate."""
    deps = bootstrap()
    timings = deps.settings.timings
    name, token = f"{deps.settings.queue_name}:dispatcher:{account_id}", uuid.uuid4().hex
    lease = timings.dispatcher_lease
    if not wait_for_lease and not deps.locks.acquire(name, token, lease):
        return "busy"  # the usual case of a kick while a dispatcher runs: answered before any set-up
    if not wait_for_lease:
        with deps.uow(None) as uow:
            due = uow.phone_calls.due_for_dialing_exists(account_id)
        if not due:  # dialed meanwhile, or held (a paused callout): nothing to set up for
            deps.locks.release(name, token)
            return {"dialed": 0}
    stop = threading.Event()
    successor = threading.Timer(max(0.0, timings.dispatcher_budget - HANDOVER_SECONDS),
                                deps.jobs.dial_due, args=(account_id,), kwargs={"wait_for_lease": 3 * HANDOVER_SECONDS})
    successor.daemon = True

    def renew(ends: float):
        while not stop.wait(min(lease / 4, max(0.0, ends - time.monotonic()))):
            if time.monotonic() >= ends:  # no more claims: let the waiting successor in while the last dials end
                deps.locks.release(name, token)
                return
            if not deps.locks.acquire(name, token, lease):
                stop.set()

    def begin() -> bool:  # the dialing threads are ready: take (or renew) the lease, waiting for it if asked
        waiting_until = time.monotonic() + wait_for_lease
        while not deps.locks.acquire(name, token, lease):
            if time.monotonic() >= waiting_until:
                return False
            time.sleep(0.005)
        threading.Thread(target=renew, args=(time.monotonic() + timings.dispatcher_budget,), daemon=True).start()
        if timings.dispatcher_budget > 2 * HANDOVER_SECONDS:  # else every dispatcher would enqueue another
            successor.start()
        return True

    try:
        report = dialing.dispatch(deps.uow, deps.provider, deps.limiter, deps.settings.provider,
                                  deps.settings.public_url, account_id, timings, stop, begin)
    finally:
        successor.cancel()
        stop.set()
        deps.locks.release(name, token)
    if report.more_due:  # a successor may be waiting already; a second one finds the lease taken
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


def run_contact_import(contact_import_id: int) -> dict:
    from scfm.services import contact_imports

    deps = bootstrap()
    return contact_imports.run_import(deps.uow, contact_import_id)
