"""The call plans' runner's decisions on the in-memory fakes: first calls, retries after their ladder's delay,
outcomes that end a participation, the maximum, calls that dialed nothing, expiry, pause."""
from datetime import timedelta

import pytest

from scfm.domain.model import Account, Callout, CalloutParticipation, Contact, PhoneCall
from scfm.services import call_plans
from tests.unit.fakes import T0, FakeJobs, UnitsOfWork

PARAMS = {"from": "1234", "url": "https://example.com/hello.xml"}
PLAN = {"remote_request_params": PARAMS, "max_attempts": 3, "retries": {"busy": [300, 1800], "errored": [60]}}


@pytest.fixture
def uows():
    return UnitsOfWork()


def a_callout(uows, plan=PLAN, account_plan=None, participations=1, status="running"):
    account = uows.db.insert("accounts", Account(call_plan=account_plan))
    callout = uows.db.insert("callouts", Callout(account_id=account.id, status=status, call_plan=plan))
    for n in range(participations):
        contact = uows.db.insert("contacts", Contact(account_id=account.id, msisdn=f"+8551234567{n}"))
        uows.db.insert("callout_participations", CalloutParticipation(
            account_id=account.id, callout_id=callout.id, contact_id=contact.id, msisdn=contact.msisdn))
    return callout


def run(uows, callout, cap=10):
    return call_plans.run_callout(uows, callout.id, uows.clock(), cap)


def calls(uows):
    return [c for _, c in sorted(uows.db.tables.get("phone_calls", {}).items())]


def participations(uows):
    return [p for _, p in sorted(uows.db.tables["callout_participations"].items())]


def end(uows, call, status, dialed=True):
    stored = uows.db.get("phone_calls", call.id)
    stored.status, stored.updated_at = status, uows.clock()
    stored.remote_call_id = f"CA{call.id}" if dialed else None


def test_a_first_call_is_queued_now_for_every_participation_with_the_plans_parameters(uows):
    callout = a_callout(uows, participations=3)
    assert run(uows, callout).made == 3
    assert [(c.status, c.next_attempt_at, c.remote_request_params) for c in calls(uows)] == [("queued", T0, PARAMS)] * 3
    assert run(uows, callout).made == 0  # one call in flight per participation


def test_a_busy_number_is_retried_after_its_ladders_delay_and_a_completed_one_is_done(uows):
    callout = a_callout(uows, participations=2)
    run(uows, callout)
    busy, answered = calls(uows)
    end(uows, busy, "busy")
    end(uows, answered, "completed")
    uows.clock.advance(10)
    report = run(uows, callout)
    assert (report.made, report.finished) == (0, 1)  # the retry is made when its time comes near
    assert [p.outcome for p in participations(uows)] == [None, "completed"]
    uows.clock.advance(200)
    assert run(uows, callout).made == 1
    retry = calls(uows)[-1]
    assert retry.callout_participation_id == busy.callout_participation_id
    assert retry.next_attempt_at == T0 + timedelta(seconds=300)  # from the end of the busy call
    uows.clock.advance(100)
    end(uows, retry, "busy")
    uows.clock.advance(1700)
    assert run(uows, callout).made == 1  # the ladder's second step: 30 minutes
    assert calls(uows)[-1].next_attempt_at == T0 + timedelta(seconds=310 + 1800)  # it ended at T0 + 310
    assert len(calls(uows)) == 4


def test_an_outcome_the_plan_does_not_retry_ends_the_participation(uows):
    callout = a_callout(uows)
    run(uows, callout)
    end(uows, calls(uows)[0], "not_answered")
    assert run(uows, callout).finished == 1
    assert participations(uows)[0].outcome == "not_answered" and len(calls(uows)) == 1


def test_the_maximum_of_attempts_ends_the_participation_and_the_cap_bounds_the_plan(uows):
    callout = a_callout(uows, plan={**PLAN, "retries": {"busy": [0]}})
    for _ in range(3):
        run(uows, callout)
        end(uows, calls(uows)[-1], "busy")
    assert run(uows, callout).finished == 1 and len(calls(uows)) == 3
    assert participations(uows)[0].outcome == "busy"
    capped = a_callout(uows, plan={**PLAN, "max_attempts": 8, "retries": {"busy": [0]}})
    for _ in range(5):
        run(uows, capped, cap=2)
        if calls(uows)[-1].status == "queued":
            end(uows, calls(uows)[-1], "busy")
    assert sum(c.callout_participation_id == participations(uows)[1].id for c in calls(uows)) == 2


def test_a_call_that_dialed_nothing_is_no_attempt_but_counts_towards_the_calls_in_all(uows):
    callout = a_callout(uows, plan={**PLAN, "max_attempts": 2, "retries": {"errored": [0]}})
    run(uows, callout)
    end(uows, calls(uows)[0], "errored", dialed=False)
    assert run(uows, callout).made == 1  # not an attempt: called again
    for _ in range(5):
        end(uows, calls(uows)[-1], "errored", dialed=False)
        run(uows, callout)
    assert len(calls(uows)) == 4  # a refusing provider: 2 x max_attempts calls, then done
    assert participations(uows)[0].outcome == "errored"


def test_past_not_after_queued_calls_expire_and_nothing_more_is_made(uows):
    callout = a_callout(uows, plan={**PLAN, "not_after": (T0 + timedelta(hours=1)).isoformat()}, participations=2)
    run(uows, callout)
    first, second = calls(uows)
    end(uows, first, "busy")
    uows.db.get("phone_calls", second.id).dial_claimed_at = T0  # a dialer has it: left to end as it will
    uows.clock.advance(3600)
    report = run(uows, callout)
    assert (report.expired_calls, report.expired, report.made) == (0, 1, 0)
    assert [p.outcome for p in participations(uows)] == ["expired", None]
    unclaimed = a_callout(uows, plan={**PLAN, "not_after": T0.isoformat()})
    uows.db.insert("phone_calls", PhoneCall(account_id=unclaimed.account_id, msisdn="+85512345670",
                                            callout_participation_id=participations(uows)[-1].id, status="queued"))
    assert run(uows, unclaimed).expired_calls == 1
    assert participations(uows)[-1].outcome == "expired"
    assert calls(uows)[-1].status == "expired" and "not_after" in calls(uows)[-1].remote_error_message


def test_a_paused_or_stopped_callout_or_one_without_a_plan_makes_nothing(uows):
    for callout in (a_callout(uows, status="paused"), a_callout(uows, status="stopped"), a_callout(uows, plan=None)):
        assert run(uows, callout) is None
    assert calls(uows) == []


def test_the_callout_keys_win_over_the_accounts_plan(uows):
    callout = a_callout(uows, plan={"max_attempts": 1}, account_plan={**PLAN, "max_attempts": 3})
    run(uows, callout)
    end(uows, calls(uows)[0], "busy")
    assert run(uows, callout).finished == 1 and len(calls(uows)) == 1


def test_the_sweeper_runs_every_running_plan_and_wakes_the_dialers(uows):
    from scfm.domain.dialing import Timings
    from scfm.services.sweeper import sweep

    callout = a_callout(uows, participations=2)
    a_callout(uows, plan=None)
    jobs = FakeJobs()
    report = sweep(uows, jobs, Timings(), clock=uows.clock)
    assert (report["planned_callouts"], report["planned_calls"]) == (1, 2)
    assert jobs.asked == [("dial_due", callout.account_id)]


def test_the_sweep_runs_every_callout_page_by_page(uows):
    for _ in range(5):
        a_callout(uows)
    report = call_plans.run_all(uows, FakeJobs(), uows.clock(), 10, page=2)
    assert (report["callouts"], report["made"]) == (5, 5)
    assert {c.callout_participation_id for c in calls(uows)} == {p.id for p in participations(uows)}
