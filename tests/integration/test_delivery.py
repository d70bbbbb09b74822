"""Work delivered once per need: however often the sweeper looks, and however slow (or dead) the workers, the
job queue holds at most one job per unit of work (a call's fetch, a call's reconciliation, a batch operation's
run); PostgreSQL, the truth, still gets every unit delivered. Dialing is no job: the dialers find due calls in
the database themselves."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace

import pytest
from rq import SimpleWorker
from rq.job import Job
from sqlalchemy import text

from scfm.services import sweeper
from tests.integration.conftest import PROVIDER_SID, PROVIDER_TOKEN, empty_queue, new_account_api

DEMO = {"parameters[remote_request_params][from]": "1234",
        "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml"}
SILENT, DUE, UNKNOWN = 5, 3, 2
UNITS = SILENT + UNKNOWN + 1  # the fetches, the reconciliations, the batch operation


@pytest.fixture
def rated_api(app, admin, provider):
    return new_account_api(app, admin, platform_provider_name="somleng", somleng_account_sid=PROVIDER_SID,
                           somleng_auth_token=PROVIDER_TOKEN, somleng_api_base_url=provider.url, calls_per_second=50)


@pytest.fixture
def eager(deps):
    """The sweeper's timings that find every unit of work due again on every sweep: the worst case for the
    job queue (the jobs keep theirs)."""
    return replace(deps.settings.timings, unknown_outcome_grace=0, reconcile_interval=0, fetch_after_silence=0,
                   stalled_batch_operation=0)


def _work(api, run_jobs, deps) -> dict:
    """Calls dialed and never heard of again, calls due for dialing, claims whose dial outcome is unknown and
    a queued batch operation; then every job is lost (the workers died, or Redis was flushed)."""
    callout = api.post("/api/callouts").get_json()
    for i in range(SILENT + DUE + UNKNOWN):
        contact = api.post("/api/contacts", data={"msisdn": f"+2526623{i:05d}"}).get_json()
        api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
    for data in ({"type": "BatchOperation::PhoneCallCreate", **DEMO}, {"type": "BatchOperation::PhoneCallQueue"}):
        operation = api.post(f"/api/callouts/{callout['id']}/batch_operations", data=data).get_json()
        api.post(f"/api/batch_operations/{operation['id']}/batch_operation_events", data={"event": "queue"})
        run_jobs()
    population = api.post(f"/api/callouts/{callout['id']}/batch_operations",
                          data={"type": "BatchOperation::CalloutPopulation"}).get_json()
    api.post(f"/api/batch_operations/{population['id']}/batch_operation_events", data={"event": "queue"})
    ids = [call["id"] for call in api.get("/api/phone_calls?per_page=100").get_json()]
    silent, due, unknown = ids[:SILENT], ids[SILENT:SILENT + DUE], ids[SILENT + DUE:]
    with deps.engine.begin() as conn:
        conn.execute(text("UPDATE phone_calls SET status = 'queued', remote_call_id = NULL, dial_claimed_at = NULL, "
                          "next_attempt_at = now() WHERE id = ANY(:ids)"), {"ids": due})
        conn.execute(text("UPDATE phone_calls SET status = 'queued', remote_call_id = NULL, "
                          "dial_claimed_at = now() - interval '1 hour' WHERE id = ANY(:ids)"), {"ids": unknown})
    empty_queue(deps)
    return dict(silent=silent, due=due, unknown=unknown, population=population["id"])


def _units_of_work(deps) -> int:
    """A job per call waiting for news or with an open claim, and per batch operation not finished."""
    with deps.engine.connect() as conn:
        return conn.execute(text(
            "SELECT (SELECT count(*) FROM phone_calls WHERE status IN ('remotely_queued', 'in_progress', "
            "'remote_fetch_queued') OR (status = 'queued' AND dial_claimed_at IS NOT NULL)) "
            "+ (SELECT count(*) FROM batch_operations WHERE status IN ('queued', 'running'))")).scalar()


def _jobs_by_unit(deps) -> Counter:
    ids = deps.queue.get_job_ids() + deps.queue.scheduled_job_registry.get_job_ids()
    return Counter((job.func_name.rsplit(".", 1)[-1], job.args[0]) for job in Job.fetch_many(ids, deps.redis))


def test_dead_workers_and_a_sweeper_that_finds_everything_due_every_time(rated_api, run_jobs, deps, eager, provider):
    work = _work(rated_api, run_jobs, deps)
    for _ in range(30):
        report = sweeper.sweep(deps.uow, deps.jobs, eager)
        assert deps.jobs.pending() == UNITS
    assert report["fetches"] == SILENT and report["unknown_outcomes"] == UNKNOWN and report["enqueued"] == 0
    expected = {("run_batch_operation", work["population"]): 1,
                **{("fetch_remote_call", id_): 1 for id_ in work["silent"]},
                **{("reconcile_unknown_outcome", id_): 1 for id_ in work["unknown"]}}
    assert _jobs_by_unit(deps) == expected

    # slow workers: a job now and then between sweeps
    worker = SimpleWorker([deps.queue], connection=deps.redis)
    for _ in range(2 * UNITS):
        worker.work(burst=True, max_jobs=1)
        sweeper.sweep(deps.uow, deps.jobs, eager)
        assert deps.jobs.pending() <= _units_of_work(deps)

    # the workers are back: everything is delivered
    run_jobs()
    with deps.engine.connect() as conn:
        calls = {row.id: row for row in conn.execute(text("SELECT * FROM phone_calls"))}
    assert all(calls[id_].status == "remotely_queued" for id_ in work["silent"] + work["due"])
    assert {fetch["sid"] for fetch in provider.fetches} >= {calls[id_].remote_call_id for id_ in work["silent"]}
    assert rated_api.get(f"/api/batch_operations/{work['population']}").get_json()["status"] == "finished"


def test_a_one_second_sweep_with_no_worker_keeps_the_queue_bounded_by_the_work(rated_api, run_jobs, deps):
    _work(rated_api, run_jobs, deps)
    env = {**os.environ, "SCFM_UNKNOWN_OUTCOME_GRACE": "1", "SCFM_RECONCILE_INTERVAL": "1",
           "SCFM_FETCH_AFTER_SILENCE": "1", "SCFM_STALLED_BATCH_OPERATION": "1"}
    scheduler = subprocess.Popen([sys.executable, "-m", "scfm.entrypoints.cli", "scheduler", "--interval", "1"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lengths = []
    try:
        sweeps = 0
        while sweeps < 8:
            line = scheduler.stderr.readline()
            if not line:
                break
            if "sweep: " in line:
                sweeps += 1
                lengths.append(deps.jobs.pending())
    finally:
        scheduler.terminate()
        scheduler.wait(10)
    assert sweeps == 8
    assert lengths[-1] == UNITS and max(lengths) == UNITS, lengths


def test_a_batch_operation_is_not_run_again_while_it_runs_but_is_after_its_worker_is_killed(rated_api, deps, eager):
    callout = rated_api.post("/api/callouts").get_json()
    operation = rated_api.post(f"/api/callouts/{callout['id']}/batch_operations",
                               data={"type": "BatchOperation::CalloutPopulation"}).get_json()
    rated_api.post(f"/api/batch_operations/{operation['id']}/batch_operation_events", data={"event": "queue"})
    [job_id] = deps.queue.get_job_ids()
    # a worker takes the job and runs it: its row is locked, and RQ has it started, its heartbeat alive
    deps.queue.remove(job_id)
    Job.fetch(job_id, deps.redis).set_status("started")
    running = deps.queue.started_job_registry.key
    deps.redis.zadd(running, {f"{job_id}:execution": time.time() + 60})
    with deps.engine.connect() as run:
        run.execute(text("UPDATE batch_operations SET status = 'running', started_at = now() - interval '1 hour'"))
        run.execute(text("SELECT id FROM batch_operations FOR UPDATE"))
        assert sweeper.sweep(deps.uow, deps.jobs, eager)["batch_operations"] == 0  # PostgreSQL sees the run
        run.commit()
    # the run's row lock is gone (as when its worker's connection dies), its heartbeat still alive: RQ has it
    assert sweeper.sweep(deps.uow, deps.jobs, eager)["batch_operations"] == 1
    assert deps.jobs.pending() == 0
    # the worker was killed: its heartbeat runs out, and the next sweep delivers the run again
    deps.redis.zadd(running, {f"{job_id}:execution": time.time() - 1})
    sweeper.sweep(deps.uow, deps.jobs, eager)
    assert _jobs_by_unit(deps) == {("run_batch_operation", operation["id"]): 1}


def test_a_job_that_ran_or_vanished_is_not_pending(rated_api, run_jobs, deps):
    phone_call_id = 404  # no such call: its reconciliation runs, and skips it
    assert deps.jobs.reconcile_unknown_outcomes([phone_call_id]) == 1
    assert deps.jobs.reconcile_unknown_outcomes([phone_call_id]) == 0  # pending
    run_jobs()
    assert not deps.redis.exists(deps.jobs.marker("reconcile", phone_call_id))  # it succeeded: nothing is left
    assert deps.jobs.reconcile_unknown_outcomes([phone_call_id]) == 1  # the last one ran
    empty_queue(deps)
    assert deps.jobs.reconcile_unknown_outcomes([phone_call_id]) == 1  # the last one was lost
    deps.redis.delete(deps.queue.key, Job.key_for(deps.queue.get_job_ids()[0]))
    assert deps.jobs.reconcile_unknown_outcomes([phone_call_id]) == 1
    assert deps.jobs.reconcile_unknown_outcomes([phone_call_id]) == 0
    # a worker took the job and was killed before it started it: RQ leaves it queued in its intermediate list
    deps.redis.lmove(deps.queue.key, deps.queue.intermediate_queue_key)
    assert deps.jobs.reconcile_unknown_outcomes([phone_call_id]) == 1 and deps.jobs.pending() == 1
