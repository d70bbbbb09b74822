"""Dialing under the account's rate: the shared limiter, the in-flight cap, pauses and the sweeper."""
import threading
import time

import pytest
from sqlalchemy import text

from scfm.adapters.redis_limiter import RedisRateLimiter
from scfm.entrypoints import jobs
from scfm.services import sweeper
from tests.integration.conftest import new_account_api, PROVIDER_SID, PROVIDER_TOKEN

DEMO = {"parameters[remote_request_params][from]": "1234",
        "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml"}


def _queue_calls(api, run_jobs, n, start=0):
    callout = api.post("/api/callouts").get_json()
    for i in range(n):
        contact = api.post("/api/contacts", data={"msisdn": f"+2526623{start + i:05d}"}).get_json()
        api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
    for data in ({"type": "BatchOperation::PhoneCallCreate", **DEMO}, {"type": "BatchOperation::PhoneCallQueue"}):
        operation = api.post(f"/api/callouts/{callout['id']}/batch_operations", data=data).get_json()
        api.post(f"/api/batch_operations/{operation['id']}/batch_operation_events", data={"event": "queue"})
        run_jobs() if data["type"].endswith("Create") else None
    return callout


@pytest.fixture
def rated_api(app, admin, provider):
    return new_account_api(app, admin, platform_provider_name="somleng", somleng_account_sid=PROVIDER_SID,
                           somleng_auth_token=PROVIDER_TOKEN, somleng_api_base_url=provider.url, calls_per_second=20)


def test_the_limiter_spaces_slots_evenly_across_clients(deps):
    limiter = RedisRateLimiter(deps.redis, prefix=deps.settings.queue_name)
    waits = sorted(limiter.reserve("spacing-test", 10) for _ in range(10))
    gaps = [b - a for a, b in zip(waits, waits[1:])]
    assert all(0.095 <= gap <= 0.105 for gap in gaps), gaps


def test_concurrent_dispatchers_share_one_rate(rated_api, run_jobs, provider, deps):
    _queue_calls(rated_api, run_jobs, 30)
    account_id = rated_api.get("/api/account").get_json()["id"]
    threads = [threading.Thread(target=jobs.dial_due, args=(account_id,)) for _ in range(3)]
    # the account's dispatcher lease lets one run; run the others as separate dispatchers by hand
    from scfm.services import dialing
    threads += [threading.Thread(target=dialing.dispatch, args=(
        deps.uow, deps.provider, deps.limiter, deps.settings.provider, deps.settings.public_url, account_id))
        for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run_jobs()
    stamps = sorted(provider.create_timestamps())
    assert len(stamps) == 30
    sids = [c["params"]["StatusCallback"] for c in provider.created_calls]
    assert len(set(sids)) == 30  # every phone call dialed once
    # never more than the rate in any one-second window (20/s, with a slot of slack for clock jitter)
    assert max(sum(1 for s in stamps if t <= s < t + 1) for t in stamps) <= 21
    assert rated_api.get("/api/phone_calls?q[status]=remotely_queued").headers["Total"] == "30"


def test_a_successor_dispatcher_waits_for_the_lease_and_takes_over(rated_api, run_jobs, provider, deps):
    account_id = rated_api.get("/api/account").get_json()["id"]
    name = f"{deps.settings.queue_name}:dispatcher:{account_id}"
    assert deps.locks.acquire(name, "running-dispatcher", 30)
    _queue_calls(rated_api, run_jobs, 3)
    run_jobs()  # the calls are queued; the kick of the dispatcher finds the lease taken
    assert jobs.dial_due(account_id) == "busy"
    assert provider.created_calls == []
    threading.Timer(0.3, deps.locks.release, args=(name, "running-dispatcher")).start()
    result = jobs.dial_due(account_id, wait_for_lease=5.0)  # enqueued by a dispatcher near the end of its budget
    assert result["dialed"] == 3 and len(provider.created_calls) == 3
    assert deps.locks.acquire(name, "probe", 1)  # and it gave the lease back
    deps.locks.release(name, "probe")


def test_a_dispatcher_that_cannot_begin_dials_nothing_and_ends(rated_api, run_jobs, provider, deps):
    from scfm.services import dialing

    _queue_calls(rated_api, run_jobs, 1)
    account_id = rated_api.get("/api/account").get_json()["id"]

    def begin():
        raise ConnectionError("Redis went away")

    with pytest.raises(ConnectionError):
        dialing.dispatch(deps.uow, deps.provider, deps.limiter, deps.settings.provider, deps.settings.public_url,
                         account_id, deps.settings.timings, begin=begin)
    assert provider.created_calls == []


def test_max_calls_in_flight_holds_the_rest(rated_api, run_jobs, provider):
    rated_api.patch("/api/account", data={"max_calls_in_flight": "3"})
    _queue_calls(rated_api, run_jobs, 5)
    run_jobs()
    assert rated_api.get("/api/phone_calls?q[status]=remotely_queued").headers["Total"] == "3"
    assert rated_api.get("/api/phone_calls?q[status]=queued").headers["Total"] == "2"


def test_a_paused_callout_holds_its_queued_calls_until_resumed(rated_api, run_jobs, deps):
    callout = rated_api.post("/api/callouts").get_json()
    rated_api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"})
    rated_api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "pause"})
    contact = rated_api.post("/api/contacts", data={"msisdn": "+252662345678"}).get_json()
    participation = rated_api.post(f"/api/callouts/{callout['id']}/callout_participations",
                                   data={"contact_id": contact["id"]}).get_json()
    call = rated_api.post(f"/api/callout_participations/{participation['id']}/phone_calls",
                          data={"remote_request_params[from]": "1234",
                                "remote_request_params[url]": "https://demo.twilio.com/docs/voice.xml"}).get_json()
    rated_api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"})
    run_jobs()
    assert rated_api.get(f"/api/phone_calls/{call['id']}").get_json()["status"] == "queued"
    rated_api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "resume"})
    run_jobs()
    assert rated_api.get(f"/api/phone_calls/{call['id']}").get_json()["status"] == "remotely_queued"


def test_the_sweeper_fetches_silent_calls_and_asks_the_provider_about_unknown_outcomes(rated_api, run_jobs, provider,
                                                                                       deps, short_grace):
    _queue_calls(rated_api, run_jobs, 3)
    run_jobs()
    calls = rated_api.get("/api/phone_calls").get_json()
    provider.set_status(calls[0]["remote_call_id"], "completed", duration=5)
    with deps.engine.begin() as conn:
        conn.execute(text("UPDATE phone_calls SET remote_status_updated_at = now() - interval '1 hour' WHERE id = :id"),
                     {"id": calls[0]["id"]})
        # a call claimed by a worker that died before the provider answered
        conn.execute(text("UPDATE phone_calls SET status = 'queued', remote_call_id = NULL, "
                          "dial_claimed_at = remotely_queued_at WHERE id = :id"), {"id": calls[1]["id"]})
    time.sleep(short_grace)
    report = sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings)
    assert report["fetches"] == 1 and report["unknown_outcomes"] == 1
    run_jobs()
    first, second, third = (rated_api.get(f"/api/phone_calls/{c['id']}").get_json() for c in calls)
    assert first["status"] == "completed" and first["duration"] == 5
    assert second["status"] == "remotely_queued" and second["remote_call_id"] == calls[1]["remote_call_id"]
    assert third["status"] == "remotely_queued"
    assert len(provider.created_calls) == 3


def test_a_stalled_batch_operation_is_run_by_the_sweeper(rated_api, run_jobs, deps):
    callout = rated_api.post("/api/callouts").get_json()
    rated_api.post("/api/contacts", data={"msisdn": "+252662345678"})
    operation = rated_api.post(f"/api/callouts/{callout['id']}/batch_operations",
                               data={"type": "BatchOperation::CalloutPopulation"}).get_json()
    rated_api.post(f"/api/batch_operations/{operation['id']}/batch_operation_events", data={"event": "queue"})
    deps.queue.empty()  # the job is lost
    with deps.engine.begin() as conn:
        conn.execute(text("UPDATE batch_operations SET updated_at = now() - interval '1 hour'"))
    assert sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings)["batch_operations"] == 1
    run_jobs()
    assert rated_api.get(f"/api/batch_operations/{operation['id']}").get_json()["status"] == "finished"
    assert rated_api.get(f"/api/callouts/{callout['id']}/callout_participations").headers["Total"] == "1"



def test_a_claim_whose_slot_comes_too_late_is_put_back_not_dialed(rated_api, run_jobs, provider, deps):
    from dataclasses import replace

    from scfm.services import dialing

    _queue_calls(rated_api, run_jobs, 1)  # the queue batch operation is not run: queue the call by hand
    with deps.engine.begin() as conn:
        account_id = conn.execute(text("UPDATE phone_calls SET status = 'queued', queued_at = now(), "
                                       "next_attempt_at = now() RETURNING account_id")).scalar_one()
    # a grace shorter than any slot wait: the sweeper could already be asking the provider about the claim
    timings = replace(deps.settings.timings, unknown_outcome_grace=0.0, dispatcher_budget=1.0)
    report = dialing.dispatch(deps.uow, deps.provider, deps.limiter, deps.settings.provider, deps.settings.public_url,
                              account_id, timings)
    assert report.dialed == 0 and provider.created_calls == []
    with deps.engine.connect() as conn:
        claimed, attempts = conn.execute(text("SELECT dial_claimed_at, dial_attempts FROM phone_calls")).one()
    assert claimed is None and attempts == 0
