"""Dialing under the account's rate: the shared limiter, the in-flight cap, pauses and the sweeper."""
import threading
import time

import pytest
from sqlalchemy import text

from rq import SimpleWorker

from scfm.adapters.redis_limiter import RedisRateLimiter
from scfm.services import sweeper
from scfm.services.dispatcher import Dispatcher
from tests.integration.conftest import PROVIDER_SID, PROVIDER_TOKEN, dial, new_account_api

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


def _run_worker(deps):
    """The jobs (here: the queue batch operation) run by a worker, and no dialer."""
    SimpleWorker([deps.queue], connection=deps.redis).work(burst=True)


@pytest.fixture
def rated_api(app, admin, provider):
    return new_account_api(app, admin, platform_provider_name="somleng", somleng_account_sid=PROVIDER_SID,
                           somleng_auth_token=PROVIDER_TOKEN, somleng_api_base_url=provider.url, calls_per_second=20)


def test_the_limiter_spaces_slots_evenly_across_clients(deps):
    limiter = RedisRateLimiter(deps.redis, prefix=deps.settings.queue_name)
    waits = sorted(limiter.reserve("spacing-test", 10) for _ in range(10))
    gaps = [b - a for a, b in zip(waits, waits[1:])]
    assert all(0.095 <= gap <= 0.105 for gap in gaps), gaps


def _dispatcher(deps, lease_prefix=None, **timings):
    """A dispatcher as `scfm dialer` has, with its own leases (`lease_prefix`) or other timings if asked."""
    from dataclasses import replace

    dispatcher = deps.dispatcher()
    settings = replace(dispatcher.settings, timings=replace(dispatcher.timings, **timings),
                       lease_prefix=lease_prefix or dispatcher.settings.lease_prefix)
    return Dispatcher(dispatcher.uow_for, deps.provider, deps.limiter, deps.locks, dispatcher.clock, settings)


def test_concurrent_dialers_share_one_rate(rated_api, run_jobs, provider, deps):
    _queue_calls(rated_api, run_jobs, 30)
    _run_worker(deps)
    # three dialers that each think they hold the account (as if each had its own lease), one limiter
    dialers = [_dispatcher(deps, lease_prefix=f"{deps.settings.queue_name}:{n}") for n in range(3)]
    threads = [threading.Thread(target=dialer.drain) for dialer in dialers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps = sorted(provider.create_timestamps())
    assert len(stamps) == 30
    sids = [c["params"]["StatusCallback"] for c in provider.created_calls]
    assert len(set(sids)) == 30  # every phone call dialed once
    # never more than the rate in any one-second window (20/s, with a slot of slack for clock jitter)
    assert max(sum(1 for s in stamps if t <= s < t + 1) for t in stamps) <= 21
    assert rated_api.get("/api/phone_calls?q[status]=remotely_queued").headers["Total"] == "30"


def test_a_dialer_leaves_an_account_another_dialer_holds(rated_api, run_jobs, provider, deps):
    account_id = rated_api.get("/api/account").get_json()["id"]
    name = f"{deps.settings.queue_name}:dialer:{account_id}"
    assert deps.locks.acquire(name, "another-dialer", 30)
    _queue_calls(rated_api, run_jobs, 3)
    _run_worker(deps)
    assert dial(deps) == {} and provider.created_calls == []
    deps.locks.release(name, "another-dialer")  # it stopped (or its lease ran out: it died)
    assert dial(deps) == {"RemotelyQueued": 3} and len(provider.created_calls) == 3
    assert deps.locks.acquire(name, "probe", 1)  # and the lease was given back
    deps.locks.release(name, "probe")


def test_a_dialer_serves_until_stopped_and_gives_the_leases_back(rated_api, run_jobs, provider, deps):
    stopping = threading.Event()
    dispatcher = deps.dispatcher()
    serving = threading.Thread(target=dispatcher.serve, args=(stopping,))
    serving.start()
    try:
        _queue_calls(rated_api, run_jobs, 3)
        _run_worker(deps)  # the queue batch operation wakes the dialer up
        deadline = time.monotonic() + 30
        while len(provider.created_calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stopping.set()
        serving.join()
    assert len(provider.created_calls) == 3 and dispatcher.dialing == {}
    account_id = rated_api.get("/api/account").get_json()["id"]
    name = f"{deps.settings.queue_name}:dialer:{account_id}"
    assert deps.locks.acquire(name, "probe", 1)
    deps.locks.release(name, "probe")


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
    _queue_calls(rated_api, run_jobs, 1)
    _run_worker(deps)
    # a grace shorter than any slot wait: the sweeper could already be asking the provider about the claim
    assert _dispatcher(deps, unknown_outcome_grace=0.0).drain() == {"TooLate": 1}
    assert provider.created_calls == []
    with deps.engine.connect() as conn:
        claimed, attempts = conn.execute(text("SELECT dial_claimed_at, dial_attempts FROM phone_calls")).one()
    assert claimed is None and attempts == 0


def test_a_dialer_stopped_mid_account_gives_back_the_claims_it_did_not_dial(rated_api, run_jobs, provider, deps):
    _queue_calls(rated_api, run_jobs, 40)
    _run_worker(deps)
    account_id = rated_api.get("/api/account").get_json()["id"]
    dispatcher = deps.dispatcher()
    assert dispatcher.start(account_id) is not None
    deadline = time.monotonic() + 30
    while len(provider.created_calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    dispatcher.stop()  # as `scfm dialer` on SIGTERM
    with deps.engine.connect() as conn:
        left = conn.execute(text("SELECT dial_claimed_at, dial_attempts FROM phone_calls WHERE account_id = :a "
                                 "AND status = 'queued'"), {"a": account_id}).all()
    assert 0 < len(left) < 40 and len(provider.created_calls) == 40 - len(left)
    assert all(claimed_at is None and attempts == 0 for claimed_at, attempts in left)  # untouched, as if never claimed
    assert dial(deps) == {"RemotelyQueued": len(left)}
    assert len({c["params"]["StatusCallback"] for c in provider.created_calls}) == 40  # each dialed once
