"""Call plans against the test provider: callouts that call, retry, wait for their window and expire by
themselves, with a clock that is set (the dialer's and the runner's) instead of waited for."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from scfm.services import sweeper
from scfm.services.dispatcher import Dispatcher
from tests.integration.conftest import PROVIDER_SID, signed_webhook

PARAMS = {"from": "1234", "url": "https://demo.twilio.com/docs/voice.xml"}
NEW_YORK, LOS_ANGELES = "+12125551234", "+13105551234"


class SetClock:
    """The wall clock of the dialer and the runner, shifted to a chosen instant (and moving on from it); the
    dialer's monotonic time and sleeps are real, as the rate limiter needs."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def set(self, instant: datetime) -> None:
        self.offset = instant - datetime.now(timezone.utc)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def __call__(self) -> datetime:
        return self.now()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def clock() -> SetClock:
    return SetClock()


def dial(deps, clock: SetClock) -> dict:
    """Dial every due call, as a dialer process does, at the clock's time."""
    real = deps.dispatcher()
    return dict(Dispatcher(real.uow_for, deps.provider, deps.limiter, deps.locks, clock, real.settings).drain())


def sweep(deps, clock: SetClock) -> dict:
    return sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings, deps.settings.max_attempts, clock=clock)


def planned_callout(api, numbers, plan, start=True):
    callout = api.post("/api/callouts", json={"call_plan": plan})
    assert callout.status_code == 201, callout.get_json()
    callout = callout.get_json()
    for number in numbers:
        contact = api.post("/api/contacts", data={"msisdn": number}).get_json()
        api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
    if start:
        assert api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"}).status_code == 201
    return callout


def calls_to(api, number) -> list[dict]:
    return [c for c in api.get("/api/phone_calls?per_page=100").get_json() if c["msisdn"] == number]


def report(api, call, status):
    params = {"CallSid": call["remote_call_id"], "AccountSid": PROVIDER_SID, "From": "1234", "To": call["msisdn"],
              "CallStatus": status, "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
    assert signed_webhook(api.client, params).status_code in (200, 201)


def participations(deps) -> dict[str, tuple]:
    """msisdn: (outcome, attempts, calls_count), as the runner and the triggers keep them."""
    with deps.engine.connect() as conn:
        return {row.msisdn: (row.outcome, row.attempts, row.calls_count) for row in conn.execute(text(
            "SELECT msisdn, outcome, attempts, calls_count FROM callout_participations"))}


def in_flight_per_participation(deps) -> int:
    with deps.engine.connect() as conn:
        return conn.execute(text(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM phone_calls WHERE status IN "
            "('queued', 'remotely_queued', 'remote_fetch_queued', 'in_progress') "
            "GROUP BY callout_participation_id) c")).scalar()


# ---------------------------------------------------------------- the API

def test_a_callout_and_its_account_hold_a_call_plan_and_a_bad_one_is_a_422_naming_the_field(calling_api, app):
    api = calling_api
    plan = {"remote_request_params": PARAMS, "max_attempts": 3, "retries": {"busy": [300, 1800]},
            "window": {"time_zone": "Africa/Mogadishu", "days": ["mon", "sat"], "from": "08:00", "to": "20:00"},
            "not_after": "2026-12-24T18:00:00Z"}
    callout = api.post("/api/callouts", json={"call_plan": plan}).get_json()
    assert callout["call_plan"] == {**plan, "not_after": "2026-12-24T18:00:00+00:00"}
    assert api.get(f"/api/callouts/{callout['id']}").get_json()["call_plan"]["retries"] == {"busy": [300, 1800]}
    bad = api.patch(f"/api/callouts/{callout['id']}", json={"call_plan": {"retries": {"busy": "often"}}})
    assert bad.status_code == 422 and "call_plan[retries][busy]" in bad.get_json()["errors"]
    too_many = api.post("/api/callouts", json={"call_plan": {"max_attempts": 11}})
    assert too_many.status_code == 422 and "call_plan[max_attempts]" in too_many.get_json()["errors"]
    assert api.get("/api/callouts").headers["Total"] == "1"  # nothing stored of the refused one
    # a form sets it too, and null clears it
    form = api.patch(f"/api/callouts/{callout['id']}", data={"call_plan[max_attempts]": "2",
                                                               "call_plan[retries][busy][]": ["60", "600"]})
    assert form.status_code == 204
    assert api.get(f"/api/callouts/{callout['id']}").get_json()["call_plan"] == {
        "max_attempts": 2, "retries": {"busy": [60, 600]}}
    assert api.patch(f"/api/callouts/{callout['id']}", json={"call_plan": None}).status_code == 204
    assert api.get(f"/api/callouts/{callout['id']}").get_json()["call_plan"] is None
    # the account's default
    assert api.patch("/api/account", json={"call_plan": {"remote_request_params": PARAMS}}).status_code == 204
    assert api.get("/api/account").get_json()["call_plan"] == {"remote_request_params": PARAMS}
    bad = api.patch("/api/account", json={"call_plan": {"window": {"time_zone": "Nowhere/Special"}}})
    assert bad.status_code == 422 and "call_plan[window][time_zone]" in bad.get_json()["errors"]
    document = app.test_client().get("/api/openapi.json").get_json()["components"]["schemas"]
    assert {"Callout", "CalloutArgs", "Account", "AccountArgs"} <= set(document)
    assert all("call_plan" in document[name]["properties"] for name in ("Callout", "CalloutArgs", "Account",
                                                                         "AccountArgs"))


# ---------------------------------------------------------------- retries and outcomes

def test_a_busy_number_is_retried_after_its_delay_and_a_completed_one_is_never_called_again(
        calling_api, run_jobs, deps, provider, clock):
    api = calling_api
    planned_callout(api, ["+252662345678", "+252662345679"],
                    {"remote_request_params": PARAMS, "max_attempts": 3, "retries": {"busy": [300]}})
    run_jobs()  # start ran the plan at once; the dialer dialed both
    [busy], [answered] = calls_to(api, "+252662345678"), calls_to(api, "+252662345679")
    assert busy["status"] == answered["status"] == "remotely_queued"
    assert busy["remote_request_params"] == PARAMS
    report(api, busy, "busy")
    report(api, answered, "completed")
    clock.advance(10)
    assert sweep(deps, clock)["planned_finished"] == 1  # the completed one
    assert participations(deps)["+252662345679"] == ("completed", 1, 1)
    clock.advance(200)  # the retry is made as its time comes near, due 300 s after the busy call ended
    assert sweep(deps, clock)["planned_calls"] == 1
    retry = calls_to(api, "+252662345678")[-1]
    assert retry["status"] == "queued"
    assert dial(deps, SetClock()) == {}  # not due yet now
    clock.advance(100)
    assert dial(deps, clock) == {"RemotelyQueued": 1}
    assert [c["status"] for c in calls_to(api, "+252662345678")] == ["busy", "remotely_queued"]
    assert len(calls_to(api, "+252662345679")) == 1
    assert [c["params"]["To"] for c in provider.created_calls].count("+252662345679") == 1
    for _ in range(3):
        clock.advance(400)
        sweep(deps, clock)
        dial(deps, clock)
    assert len(calls_to(api, "+252662345679")) == 1  # completed: never called again


def test_a_refusal_that_dialed_nothing_is_not_counted_and_the_maximum_is_respected(
        calling_api, run_jobs, deps, provider, clock):
    api = calling_api
    provider.refused_numbers.add("+252662345670")
    planned_callout(api, ["+252662345670", "+252662345671"],
                    {"remote_request_params": PARAMS, "max_attempts": 2,
                     "retries": {"busy": [0], "errored": [0]}})
    run_jobs()
    for _ in range(6):
        for call in calls_to(api, "+252662345671"):
            if call["status"] == "remotely_queued":
                report(api, call, "busy")
        clock.advance(60)
        sweep(deps, clock)
        dial(deps, clock)
    refused, busy = calls_to(api, "+252662345670"), calls_to(api, "+252662345671")
    # the refused number: no attempt ever reached the provider, and its calls in all are bounded (2 x 2)
    assert [c["status"] for c in refused] == ["errored"] * 4 and all(c["remote_call_id"] is None for c in refused)
    assert participations(deps)["+252662345670"] == ("errored", 0, 4)
    # the busy one: two attempts, the maximum
    assert [c["status"] for c in busy] == ["busy", "busy"]
    assert participations(deps)["+252662345671"] == ("busy", 2, 2)
    assert sum(c["params"]["To"] == "+252662345671" for c in provider.created_calls) == 2


# ---------------------------------------------------------------- windows and expiry

def test_a_contact_in_another_time_zone_is_called_only_inside_its_window(calling_api, deps, provider, clock):
    api = calling_api
    window = {"time_zone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"],
              "from": "09:00", "to": "17:00"}
    callout = planned_callout(api, [NEW_YORK, LOS_ANGELES], {"remote_request_params": PARAMS, "window": window})
    # Tuesday 1 December 2026, 14:30 UTC: 09:30 in New York, 06:30 in Los Angeles
    clock.set(datetime(2026, 12, 1, 14, 30, tzinfo=timezone.utc))
    assert sweep(deps, clock)["planned_calls"] == 2
    assert dial(deps, clock) == {"RemotelyQueued": 1, "OutsideWindow": 1}
    assert [c["params"]["To"] for c in provider.created_calls] == [NEW_YORK]
    [waiting] = calls_to(api, LOS_ANGELES)
    assert waiting["status"] == "queued"
    with deps.engine.connect() as conn:  # put back until 09:00 in Los Angeles, no attempt counted
        assert tuple(conn.execute(text(
            "SELECT waiting_for_window, dial_attempts, next_attempt_at FROM phone_calls WHERE id = :id"),
            {"id": waiting["id"]}).one()) == (True, 0, datetime(2026, 12, 1, 17, tzinfo=timezone.utc))
    clock.set(datetime(2026, 12, 1, 16, 59, tzinfo=timezone.utc))  # 08:59 in Los Angeles
    assert dial(deps, clock) == {}
    clock.set(datetime(2026, 12, 1, 17, 0, 1, tzinfo=timezone.utc))
    assert dial(deps, clock) == {"RemotelyQueued": 1}
    assert [c["params"]["To"] for c in provider.created_calls] == [NEW_YORK, LOS_ANGELES]
    with deps.engine.connect() as conn:
        assert conn.execute(text("SELECT bool_or(waiting_for_window) FROM phone_calls")).scalar() is False
    assert api.get(f"/api/callouts/{callout['id']}/phone_calls").headers["Total"] == "2"


def test_an_expired_callout_dials_nothing_more(calling_api, deps, provider, clock):
    api = calling_api
    clock.set(datetime(2026, 12, 1, 12, tzinfo=timezone.utc))
    callout = planned_callout(api, ["+252662345678", "+252662345679"],
                              {"remote_request_params": PARAMS, "not_after": "2026-12-01T13:00:00Z",
                               "retries": {"busy": [0]}})
    assert sweep(deps, clock)["planned_calls"] == 2
    clock.set(datetime(2026, 12, 1, 13, tzinfo=timezone.utc))
    assert dial(deps, clock) == {"Expired": 2}  # claimed past not_after: ended, not dialed
    assert provider.created_calls == []
    calls = api.get(f"/api/callouts/{callout['id']}/phone_calls").get_json()
    assert {c["status"] for c in calls} == {"expired"}
    assert all("not_after" in c["remote_error_message"] for c in calls)
    assert sweep(deps, clock)["planned_finished"] == 2
    assert {outcome for outcome, _, _ in participations(deps).values()} == {"expired"}
    assert sweep(deps, clock)["planned_calls"] == 0 and dial(deps, clock) == {}
    # calls made before not_after and not claimed by then end expired in the database too
    later = planned_callout(api, ["+252662345670"], {"remote_request_params": PARAMS,
                                                     "not_after": "2026-12-01T14:00:00Z"})
    sweep(deps, clock)
    clock.set(datetime(2026, 12, 1, 14, tzinfo=timezone.utc))
    assert sweep(deps, clock)["planned_expired_calls"] == 1
    assert [c["status"] for c in api.get(f"/api/callouts/{later['id']}/phone_calls").get_json()] == ["expired"]
    assert dial(deps, clock) == {} and provider.created_calls == []


# ---------------------------------------------------------------- pause, stop, one call in flight

def test_pause_and_stop_hold_the_plan_and_resume_continues(calling_api, run_jobs, deps, provider, clock):
    api = calling_api
    callout = planned_callout(api, ["+252662345678", "+252662345679"],
                              {"remote_request_params": PARAMS, "retries": {"busy": [0]}}, start=False)
    events = f"/api/callouts/{callout['id']}/callout_events"
    assert sweep(deps, clock)["planned_calls"] == 0  # not started
    api.post(events, data={"event": "start"})
    api.post(events, data={"event": "pause"})
    run_jobs()  # the run asked for by start finds the callout paused
    assert api.get("/api/phone_calls").headers["Total"] == "0" and provider.created_calls == []
    api.post(events, data={"event": "resume"})
    api.post(events, data={"event": "stop"})
    run_jobs()
    sweep(deps, clock)
    assert api.get("/api/phone_calls").headers["Total"] == "0"
    api.post(events, data={"event": "resume"})
    run_jobs()
    assert len(provider.created_calls) == 2
    for call in api.get("/api/phone_calls").get_json():
        report(api, call, "busy")
    api.post(events, data={"event": "pause"})
    clock.advance(60)
    sweep(deps, clock)
    dial(deps, clock)
    assert len(provider.created_calls) == 2  # no retry while paused
    api.post(events, data={"event": "resume"})
    run_jobs()
    dial(deps, clock)
    assert len(provider.created_calls) == 4


def test_one_call_in_flight_per_participation_whoever_asks(calling_api, run_jobs, deps, clock):
    api = calling_api
    callout = planned_callout(api, ["+252662345678", "+252662345679"],
                              {"remote_request_params": PARAMS, "retries": {"busy": [0]}}, start=False)
    api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"})
    for _ in range(3):  # the sweeper and the job, again and again
        sweep(deps, clock)
    run_jobs()
    assert in_flight_per_participation(deps) == 1
    assert api.get("/api/phone_calls").headers["Total"] == "2"
    # a call of the user's own for a participation with one in flight is refused, as ever
    participation = api.get(f"/api/callouts/{callout['id']}/callout_participations").get_json()[0]
    made = api.post(f"/api/callout_participations/{participation['id']}/phone_calls",
                    data={"remote_request_params[from]": "1234", "remote_request_params[url]": PARAMS["url"]})
    queued = api.post(f"/api/phone_calls/{made.get_json()['id']}/phone_call_events", data={"event": "queue"})
    assert queued.status_code == 422
    assert in_flight_per_participation(deps) == 1


def test_participations_added_to_a_running_callout_are_called_too(calling_api, run_jobs, deps, provider, clock):
    api = calling_api
    callout = planned_callout(api, ["+252662345678"], {"remote_request_params": PARAMS})
    run_jobs()
    assert len(provider.created_calls) == 1
    contact = api.post("/api/contacts", data={"msisdn": "+252662345679"}).get_json()
    api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
    api.post("/api/contacts", data={"msisdn": "+252662345670", "metadata[group]": "late"})
    population = api.post(f"/api/callouts/{callout['id']}/batch_operations", data={
        "type": "BatchOperation::CalloutPopulation", "parameters[contact_filter_params][metadata][group]": "late"})
    api.post(f"/api/batch_operations/{population.get_json()['id']}/batch_operation_events", data={"event": "queue"})
    run_jobs()
    assert sweep(deps, clock)["planned_calls"] == 2
    assert dial(deps, clock) == {"RemotelyQueued": 2}
    assert sorted(c["params"]["To"] for c in provider.created_calls) == [
        "+252662345670", "+252662345678", "+252662345679"]


def test_a_callout_without_a_plan_of_its_own_runs_by_its_accounts(calling_api, run_jobs, provider):
    api = calling_api
    assert api.patch("/api/account", json={"call_plan": {"remote_request_params": PARAMS}}).status_code == 204
    planned_callout(api, ["+252662345678"], None)
    run_jobs()
    [created] = provider.created_calls
    assert created["params"]["To"] == "+252662345678" and created["params"]["From"] == "1234"
    api.patch("/api/account", json={"call_plan": None})
    planned_callout(api, ["+252662345679"], None)  # no plan at all: batch operations only, as before
    run_jobs()
    assert len(provider.created_calls) == 1
