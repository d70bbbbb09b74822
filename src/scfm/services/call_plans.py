"""The call plans' runner: callouts that call, retry and expire by themselves (issue 12).

For each running callout with an effective call plan, one run, in one transaction with the callout locked:
past its `not_after`, the calls no dialer has claimed end expired and the participations with nothing in
flight end with the outcome expired; otherwise the participations that are done get their outcome
(completed, an outcome the plan does not retry, the maximum of attempts or of calls reached), and the others
with nothing in flight get their next call, queued: the first one due now, a retry its ladder's delay after
the last call ended. Only a bounded amount is made ahead of the dialer (the account's rate for
HORIZON_SECONDS, at least MIN_AHEAD calls), so that pause, stop and plan changes act on what is not yet made,
and a million participations are made in many small runs, not one giant transaction.

The sweeper runs it every few seconds; `start` and `resume` run it at once (a job). The dialer checks each
call's window and expiry itself when it claims it (services/dispatcher.py).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from scfm.domain.call_plan import CallPlan
from scfm.domain.dial_queue import CallsToMake, DialQueue
from scfm.domain.dialing import DEFAULT_CALLS_PER_SECOND
from scfm.domain.errors import ValidationFailed
from scfm.domain.ports import JobQueue, UnitsOfWork

log = logging.getLogger(__name__)

HORIZON_SECONDS = 120.0  # calls made ahead of the dialer: its next two minutes at the account's rate
MIN_AHEAD = 2000  # but at least this many (a slow account's queue is never starved between two sweeps)
CALLOUTS_PER_PAGE = 1000
CALLS_PER_ATTEMPT = 2  # a participation's calls in all, those that dialed nothing too, per attempt allowed


@dataclass
class CalloutRun:
    account_id: int
    expired_calls: int = 0
    finished: int = 0
    expired: int = 0
    made: int = 0


def run_callout(uow_for: UnitsOfWork, callout_id: int, now: datetime, cap: int) -> CalloutRun | None:
    """One run of the callout's plan; None when it is not running with a plan (or another run holds it)."""
    with uow_for(None) as uow:
        queue = uow.dial_queue
        callout = queue.lock_planned_callout(callout_id)
        if callout is None:
            return None
        run = CalloutRun(callout.account_id)
        try:
            plan = CallPlan.parse(callout.call_plan, cap=None)  # stored under a higher cap: bounded below
        except ValidationFailed as error:  # stored before a rule was added: nothing is made of it
            log.warning("callout %s: its call plan cannot be run: %s", callout_id, error)
            return None
        if plan.expired(now):
            run.expired_calls = queue.expire_queued_calls(callout_id, plan.expiry_message)
            run.finished = _finish(queue, callout_id, now, plan, cap)
            run.expired = queue.expire_participations(callout_id, now)
        else:
            run.finished = _finish(queue, callout_id, now, plan, cap)
            rate = callout.calls_per_second or DEFAULT_CALLS_PER_SECOND
            target = max(MIN_AHEAD, math.ceil(rate * HORIZON_SECONDS))
            room = target - queue.calls_ahead(callout_id, now, HORIZON_SECONDS, target)
            if room > 0 and plan.remote_request_params:
                run.made = queue.make_calls(callout_id, callout.account_id, now, CallsToMake(
                    plan.remote_request_params, plan.retries, plan.attempts_allowed(cap),
                    CALLS_PER_ATTEMPT * plan.attempts_allowed(cap), HORIZON_SECONDS, room))
        uow.commit()
    return run


def _finish(queue: DialQueue, callout_id: int, now: datetime, plan: CallPlan, cap: int) -> int:
    return int(queue.finish_participations(callout_id, now, sorted(plan.retries), plan.attempts_allowed(cap),
                                           CALLS_PER_ATTEMPT * plan.attempts_allowed(cap)))


def run_all(uow_for: UnitsOfWork, jobs: JobQueue, now: datetime, cap: int,
            page: int = CALLOUTS_PER_PAGE) -> dict[str, int]:
    """One run of every running callout's plan (the sweeper's), read a page of callouts at a time: what was
    done, in all. The dialers of the accounts that calls were made for are woken up."""
    totals = {"callouts": 0, "expired_calls": 0, "finished": 0, "expired": 0, "made": 0}
    after_id = 0
    while True:
        with uow_for(None) as uow:
            callout_ids = uow.dial_queue.planned_callouts(after_id, page)
        for callout_id in callout_ids:
            run = run_callout(uow_for, callout_id, now, cap)
            if run is None:
                continue
            totals["callouts"] += 1
            for name in ("expired_calls", "finished", "expired", "made"):
                totals[name] += getattr(run, name)
            if run.made:
                jobs.dial_due(run.account_id)
        if len(callout_ids) < page:
            return totals
        after_id = callout_ids[-1]
