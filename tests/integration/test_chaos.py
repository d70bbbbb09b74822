"""Chaos: a callout of many calls against a flaky, rate-limited provider while dialers and workers are SIGKILLed.

At the end every call has ended (or was reconciled), the provider made at most one call per phone call
(the call that phone call knows), and never saw more creates in any one-second window than the account's rate.
All along, with a sweep every second, the job queue held no more jobs than there was work.

Meanwhile a second callout runs by its call plan: retries by outcome, a calling window that opens during the
test in its contacts' time zone (and never, during the test, for the tenth of them in a zone six hours
ahead), and a not_after. All along at most one call is in flight per participation; no call is made outside
its window, and none after not_after; every participation is settled, with at most max_attempts dialed.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import text

from scfm.domain.call_plan import Window
from tests.integration.conftest import PROVIDER_SID, PROVIDER_TOKEN, allow_provider_url, new_account_api

CALLS = int(os.environ.get("SCFM_CHAOS_CALLS", "1000"))
PLANNED = int(os.environ.get("SCFM_CHAOS_PLANNED", "200"))  # participations of the callout with a call plan
MAX_ATTEMPTS = 3
RATE = 20
TERMINAL = ("completed", "busy", "failed", "not_answered", "canceled", "errored", "expired")
IN_FLIGHT = ("queued", "remotely_queued", "remote_fetch_queued", "in_progress")
FAR = "Etc/GMT-6"  # six hours ahead of UTC: the window, in its contacts' time, is closed all test long


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class Cluster:
    """The provider, the API (`scfm serve`), RQ workers, dialers and the scheduler: processes, each in its own group."""

    def __init__(self, env: dict, workers: int, dialers: int):
        self.env = env
        self.provider_port, self.report_port, self.api_port = _free_port(), _free_port(), _free_port()
        self.processes = [self._start(
            "tests.support.provider_process", "--port", str(self.provider_port), "--report-port",
            str(self.report_port), "--account", f"{PROVIDER_SID}:{PROVIDER_TOKEN}", "--rate", str(RATE),
            "--fail-ratio", "0.03", "--drop-callbacks", "0.25", "--delay-seconds", "2.5", "--delay-ratio", "0.03",
            "--fail-after-create", "0.02", "--seed", "99")]
        env.update(PUBLIC_URL=f"http://127.0.0.1:{self.api_port}", SCFM_ALLOWED_PROVIDER_URLS=self.provider_url)
        self.processes.append(self._scfm("serve", "--port", str(self.api_port), "--workers", "2"))
        self.processes.append(self._scfm("scheduler", "--interval", "1"))
        self.workers = [self._scfm("worker") for _ in range(workers)]
        self.dialers = [self._scfm("dialer") for _ in range(dialers)]
        self.kills = {"worker": 0, "dialer": 0}
        _wait_for(f"http://127.0.0.1:{self.report_port}/")
        _wait_for(f"http://127.0.0.1:{self.api_port}/api/openapi.json")

    @property
    def provider_url(self) -> str:
        return f"http://127.0.0.1:{self.provider_port}"

    def report(self) -> dict:
        return requests.get(f"http://127.0.0.1:{self.report_port}/", timeout=10).json()

    def _start(self, module: str, *args) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", module, *args], env=self.env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _scfm(self, *args) -> subprocess.Popen:
        return self._start("scfm.entrypoints.cli", *args)

    def kill_one(self, rng: random.Random) -> None:
        """A worker (and the job it forked) or a dialer (amid its dials), replaced by a new one."""
        kind = rng.choice(["worker", "dialer"])
        group = self.workers if kind == "worker" else self.dialers
        index = rng.randrange(len(group))
        os.killpg(group[index].pid, signal.SIGKILL)
        group[index].wait()
        group[index] = self._scfm(kind)
        self.kills[kind] += 1

    def stop(self) -> None:
        everything = self.processes + self.workers + self.dialers
        for process in everything:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in everything:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.chaos
def test_chaos(app, admin, deps, monkeypatch):
    rng = random.Random(1234)
    env = {**os.environ, "PROVIDER_TIMEOUT_SECONDS": "1", "SCFM_UNKNOWN_OUTCOME_GRACE": "8",
           "SCFM_FETCH_AFTER_SILENCE": "4", "SCFM_STALLED_BATCH_OPERATION": "5",
           "SCFM_DISPATCHER_LEASE": "3", "SCFM_RETRY_AFTER_UNREACHABLE": "1"}
    cluster = Cluster(env, workers=2, dialers=2)
    allow_provider_url(monkeypatch, cluster.provider_url, deps.settings)
    try:
        api = new_account_api(app, admin, platform_provider_name="somleng", somleng_account_sid=PROVIDER_SID,
                              somleng_auth_token=PROVIDER_TOKEN, somleng_api_base_url=cluster.provider_url,
                              calls_per_second=RATE)
        account_id = api.get("/api/account").get_json()["id"]
        with deps.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO contacts (account_id, msisdn) "
                "SELECT :account, '+8551' || lpad(n::text, 7, '0') FROM generate_series(1, :n) AS n"),
                {"account": account_id, "n": CALLS})
        callout = api.post("/api/callouts").get_json()
        api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"})
        for data in (
            {"type": "BatchOperation::CalloutPopulation"},
            {"type": "BatchOperation::PhoneCallCreate", "parameters[remote_request_params][from]": "1234",
             "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml"},
            {"type": "BatchOperation::PhoneCallQueue"},
        ):
            operation = api.post(f"/api/callouts/{callout['id']}/batch_operations", data=data)
            assert operation.status_code == 201, operation.get_json()
            operation_id = operation.get_json()["id"]
            api.post(f"/api/batch_operations/{operation_id}/batch_operation_events", data={"event": "queue"})
            _wait(lambda: api.get(f"/api/batch_operations/{operation_id}").get_json()["status"] == "finished",
                  120, f"batch operation {data['type']}")

        planned = _planned_callout(api, deps, account_id)

        # kill dialers and workers at random while the calls are dialed; look at the job queue all along
        pending, in_flight = [], []
        deadline = time.monotonic() + 360
        while time.monotonic() < deadline and _count(deps, "status = 'queued'"):
            time.sleep(rng.uniform(1.0, 3.0))
            pending.append(deps.jobs.pending())
            in_flight.append(_most_in_flight(deps))
            cluster.kill_one(rng)
        _wait(lambda: pending.append(deps.jobs.pending()) or _count(deps, f"status NOT IN {TERMINAL}") == 0, 180,
              "every call to end", deps)
        _wait(lambda: _unsettled(deps, planned["id"]) == 0, 60, "every planned participation to settle", deps)
        seen = cluster.report()
    finally:
        cluster.stop()

    # every call ended, or was reconciled
    assert _count(deps, "create_batch_operation_id IS NOT NULL") == CALLS
    assert _count(deps, f"status NOT IN {TERMINAL}") == 0
    # at most one call made per phone call: a phone call is asked for again only when its request made no
    # call (a 429, a 500 before the call was made, found out by asking the provider for its calls)
    made: dict[int, int] = {}
    for create in seen["creates"]:
        if create["sid"]:
            made[create["phone_call_id"]] = made.get(create["phone_call_id"], 0) + 1
    assert None not in made
    assert max(made.values()) == 1
    with deps.engine.connect() as conn:
        remote_ids = dict(conn.execute(text("SELECT id, remote_call_id FROM phone_calls")).all())
    assert all(remote_ids[create["phone_call_id"]] == create["sid"] for create in seen["creates"] if create["sid"])
    # never more creates in any one-second window than the rate
    stamps = sorted(create["at"] for create in seen["creates"])
    busiest, start = max((sum(1 for s in stamps[i:i + RATE + 5] if s < t + 1.0), i) for i, t in enumerate(stamps))
    gaps = [round((b - a) * 1000) for a, b in zip(stamps[max(0, start - 3):start + busiest], stamps[max(0, start - 3) + 1:start + busiest])]
    assert busiest <= RATE, (busiest, gaps)
    assert sum(cluster.kills.values()) >= 5 and cluster.kills["dialer"] >= 2, cluster.kills
    # one job at most per unit of work (a call's fetch or reconciliation, a batch operation), however many
    # sweeps went by: before, the sweeper enqueued the same work on every sweep
    assert len(pending) >= 10 and max(pending) <= CALLS + 3, pending
    with deps.engine.connect() as conn:
        statuses = dict(conn.execute(text("SELECT status, count(*) FROM phone_calls GROUP BY status")).all())
    planned_report = _check_planned(deps, planned, seen["creates"], in_flight)
    print(f"\nchaos: {CALLS} calls, killed {cluster.kills}, {len(stamps)} create requests, "
          f"busiest second {busiest}, statuses {statuses}, jobs waiting at most {max(pending)} "
          f"({len(pending)} samples); call plan: {planned_report}")


def _planned_callout(api, deps, account_id: int) -> dict:
    """A callout of PLANNED contacts run by its call plan: its window opens in UTC half a minute to a minute
    and a half from now (every tenth contact is six hours ahead: closed for it), and not_after comes 90 s
    after the opening."""
    opens = (datetime.now(timezone.utc) + timedelta(seconds=90)).replace(second=0, microsecond=0)
    closes = min(opens + timedelta(minutes=30), opens.replace(hour=0, minute=0) + timedelta(days=1))
    window = {"time_zone": "UTC", "from": opens.strftime("%H:%M"),
              "to": "24:00" if closes.date() > opens.date() else closes.strftime("%H:%M")}
    not_after = opens + timedelta(seconds=90)
    with deps.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO contacts (account_id, msisdn, metadata) "
            "SELECT :account, '+8552' || lpad(n::text, 7, '0'), "
            "jsonb_build_object('time_zone', CASE WHEN n % 10 = 0 THEN :far ELSE 'UTC' END) "
            "FROM generate_series(1, :n) AS n"), {"account": account_id, "n": PLANNED, "far": FAR})
    plan = {"remote_request_params": {"from": "1234", "url": "https://demo.twilio.com/docs/voice.xml"},
            "max_attempts": MAX_ATTEMPTS, "window": window, "not_after": not_after.isoformat(),
            "retries": {"busy": [2, 5], "not_answered": [3], "failed": [2], "errored": [2]}}
    callout = api.post("/api/callouts", json={"call_plan": plan})
    assert callout.status_code == 201, callout.get_json()
    callout = callout.get_json()
    with deps.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO callout_participations (account_id, callout_id, contact_id, msisdn) "
            "SELECT account_id, :callout, id, msisdn FROM contacts WHERE account_id = :account "
            "AND msisdn LIKE '+8552%'"), {"account": account_id, "callout": callout["id"]})
    api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"})
    return {**callout, "window": window, "not_after": not_after}


def _most_in_flight(deps) -> int:
    """The most calls in flight for one participation, now."""
    with deps.engine.connect() as conn:
        return conn.execute(text(
            f"SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM phone_calls WHERE status IN {IN_FLIGHT} "
            "GROUP BY callout_participation_id) c")).scalar()


def _unsettled(deps, callout_id: int) -> int:
    with deps.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM callout_participations WHERE callout_id = :c "
                                 "AND outcome IS NULL"), {"c": callout_id}).scalar()


def _check_planned(deps, planned: dict, creates: list[dict], in_flight: list[int]) -> dict:
    """The call plan's promises, from the provider's creates and the database."""
    assert len(in_flight) >= 10 and max(in_flight) <= 1, in_flight
    with deps.engine.connect() as conn:
        zones = {row.id: row.zone for row in conn.execute(text(
            "SELECT pc.id, ct.metadata ->> 'time_zone' AS zone FROM phone_calls pc "
            "JOIN callout_participations p ON p.id = pc.callout_participation_id "
            "JOIN contacts ct ON ct.id = p.contact_id WHERE p.callout_id = :c"), {"c": planned["id"]})}
        outcomes = dict(conn.execute(text(
            "SELECT outcome, count(*) FROM callout_participations WHERE callout_id = :c GROUP BY outcome"),
            {"c": planned["id"]}).all())
        most = conn.execute(text("SELECT max(attempts), max(calls_count) FROM callout_participations "
                                 "WHERE callout_id = :c"), {"c": planned["id"]}).one()
        far_outcomes = set(conn.execute(text(
            "SELECT DISTINCT p.outcome FROM callout_participations p JOIN contacts ct ON ct.id = p.contact_id "
            "WHERE p.callout_id = :c AND ct.metadata ->> 'time_zone' = :far"),
            {"c": planned["id"], "far": FAR}).scalars())
    # the provider's create times are the machine's monotonic clock: to the wall clock
    to_wall = time.time() - time.monotonic()
    window = Window.parse(planned["window"])
    made = [(datetime.fromtimestamp(create["at"] + to_wall, timezone.utc), zones[create["phone_call_id"]])
            for create in creates if create["phone_call_id"] in zones]
    assert made, "the call plan made no call"
    outside = [(at, zone) for at, zone in made if not window.contains(at, ZoneInfo(zone))]
    assert outside == [], outside[:5]
    late = [at for at, _zone in made if at >= planned["not_after"] + timedelta(seconds=1)]
    assert late == [], late[:5]
    assert not any(zone == FAR for _at, zone in made)
    assert far_outcomes == {"expired"}, far_outcomes
    assert None not in outcomes and sum(outcomes.values()) == PLANNED, outcomes
    assert most[0] <= MAX_ATTEMPTS and most[1] <= 2 * MAX_ATTEMPTS, most
    return {"participations": PLANNED, "creates": len(made), "outcomes": outcomes,
            "most attempts": most[0], "window": planned["window"]}


def _count(deps, where: str) -> int:
    with deps.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM phone_calls WHERE {where}")).scalar()


def _wait(predicate, seconds: float, what: str, deps=None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    detail = ""
    if deps is not None:
        with deps.engine.connect() as conn:
            statuses = dict(conn.execute(text(f"SELECT status, count(*) FROM phone_calls WHERE status NOT IN {TERMINAL} "
                                              "GROUP BY status")).all())
        detail = f": {statuses}, {deps.queue.count} jobs queued, {deps.queue.scheduled_job_registry.count} scheduled"
    raise AssertionError(f"timed out waiting for {what}{detail}")
