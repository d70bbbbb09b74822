"""Dialing against the Twilio-compatible fake provider, on the real cluster: the API under gunicorn (the status
callbacks land there), `scfm worker` processes, one `scfm dialer` and `scfm scheduler`, on a throwaway
database and queue. Each fake provider runs in its own process (tests/support/provider_process.py) and
enforces its account's rate itself (429 above it).

rates     for each rate R (default 1, 10, 100 calls/s): one account with calls_per_second=R and its own
          provider account, R x --seconds calls queued by a PhoneCallQueue batch operation. The provider's
          create timestamps give the achieved rate over the steady part (after the first second) and the
          busiest second (any sliding 1-second window): target >= 95% at 10/s and more, never above R.
accounts  six accounts, each with its own provider account at --accounts-rate (10/s), each queueing
          rate x --seconds calls at the same moment, while a seventh account's CalloutPopulation is queued:
          each account's achieved rate (>= 95%), how long after its queue request its first call left
          (< 5 s), whether the six dialing periods overlap, and how long the population waited for a worker
          (< 5 s).
shared    the same six accounts dialing with the server's default credentials: one provider account whose
          rate the operator sets (SCFM_SERVER_CALLS_PER_SECOND = --accounts-rate), shared in proportion to
          what each asked (all ask the same: an equal split): the total (>= 95%, never above), each one's
          share, the time to first call and the population's wait.

The dialer spaces its slots by rate / 1.04 (SPACING_MARGIN in scfm.domain.dialing), so 96.2% is its ceiling.
Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass

from bench.common import (
    Api, BenchError, CpuMeter, Env, Result, admin_api, busiest_window, free_port, guarded, http_session,
    new_account, processes, progress, summary, throwaway_env, wait_for_http,
)
from scfm.domain.dialing import SPACING_MARGIN

TARGET_SHARE = 0.95
TARGET_FROM_RATE = 10  # the 95% target applies from this rate on; every rate must stay at or below itself
STEADY_SKIP_SECONDS = 1.0
TARGET_WAIT = 5.0  # seconds to the first call, and for a batch operation to start
ACCOUNTS = 6
REMOTE_REQUEST_PARAMS = {"parameters[remote_request_params][from]": "1234",
                         "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml"}


@dataclass
class Figures:
    rate: float
    calls: int
    dialed: int
    rejected: int  # 429s
    other_errors: int
    steady: float
    busiest: int
    long_gaps: int  # gaps of at least 1.9 slot intervals: a slot that went by unused

    @property
    def share(self) -> float:
        return self.steady / self.rate

    def line(self) -> str:
        return f"{self.steady:.2f}/s ({self.share * 100:.1f}%), busiest second {self.busiest}"

    def result(self, name: str) -> Result:
        """Printed at once; the share has a target from TARGET_FROM_RATE on, the busiest second always."""
        share_target = self.rate >= TARGET_FROM_RATE
        result = Result(name, self.line(), (f">= {TARGET_SHARE * 100:.0f}%, " if share_target else "")
                        + f"busiest <= {self.rate:g}",
                        self.busiest <= self.rate and (self.share >= TARGET_SHARE or not share_target),
                        f"{self.dialed} of {self.calls} calls dialed, {self.rejected} x 429, {self.other_errors} "
                        f"other errors, {self.long_gaps} gaps of 2 or more slots")
        print(f"{name}: {result.value}; {result.note}", flush=True)
        return result


def analyse(rate: float, calls: int, creates: list[dict]) -> Figures:
    ok = sorted(c["at"] for c in creates if c["status_code"] == 201)
    if len(ok) < 2:
        raise BenchError(f"at {rate:g}/s the provider saw {len(ok)} successful creates: {creates[:5]}")
    steady = [t for t in ok if t >= ok[0] + STEADY_SKIP_SECONDS] if ok[-1] - ok[0] > 3 * STEADY_SKIP_SECONDS else ok
    if len(steady) < 2:
        steady = ok
    return Figures(
        rate=rate, calls=calls, dialed=len(ok),
        rejected=sum(1 for c in creates if c["status_code"] == 429),
        other_errors=sum(1 for c in creates if c["status_code"] not in (201, 429)),
        steady=(len(steady) - 1) / (steady[-1] - steady[0]),
        busiest=busiest_window([c["at"] for c in creates]),
        long_gaps=sum(1 for a, b in zip(ok, ok[1:]) if b - a >= 1.9 * SPACING_MARGIN / rate),
    )


class Provider:
    """The fake provider in its own process, for one account, enforcing `rate` (429 above it)."""

    def __init__(self, procs, rate: float, port: int, sid: str | None = None, token: str | None = None):
        self.sid, self.token = sid or "AC" + uuid.uuid4().hex, token or uuid.uuid4().hex
        report_port = free_port()
        self.url, self.report_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{report_port}/"
        self.process = procs.start(
            f"provider {rate:g}/s", "-m", "tests.support.provider_process", "--port", str(port),
            "--report-port", str(report_port), "--account", f"{self.sid}:{self.token}", "--rate", str(rate),
            "--seed", "1")
        wait_for_http(self.report_url, self.process)

    def report(self) -> dict:
        return http_session().get(self.report_url, timeout=30).json()

    def credentials(self) -> dict:
        """An account's fields to dial through this provider account."""
        return {"platform_provider_name": "somleng", "somleng_account_sid": self.sid,
                "somleng_auth_token": self.token, "somleng_api_base_url": self.url}


@dataclass
class Tenant:
    """An account of the `accounts` or `shared` set-up, and what it saw."""
    account_id: int
    api: Api
    callout_id: int
    calls: int
    queued_at: float = 0.0  # time.monotonic() of its queue request
    creates: list | None = None

    def first_call_wait(self) -> float:
        return min(c["at"] for c in self.creates if c["status_code"] == 201) - self.queued_at

    def period(self) -> tuple[float, float]:
        stamps = [c["at"] for c in self.creates if c["status_code"] == 201]
        return min(stamps), max(stamps)


class Bench:
    def __init__(self, env: Env, procs, args, api_port: int, provider_ports: list[int], server: dict):
        self.env = env
        self.provider_ports = list(provider_ports)  # the URLs the operator allows (SCFM_ALLOWED_PROVIDER_URLS)
        self.server = server  # the server's provider account: sid, token, port
        self.procs = procs
        self.args = args
        self.api_port = api_port
        self.admin = admin_api(env.deps)
        self.raw = env.connect()
        self.results: list[Result] = []
        self.groups: dict[int, str] = {}

    # -- the cluster
    def start_cluster(self) -> None:
        api = self.procs.api(self.api_port)
        self.groups[api.popen.pid] = "api (gunicorn)"
        for label, args in [("scheduler", ("scheduler", "--interval", "1")), ("dialer", ("dialer",)),
                            *[("scfm workers", ("worker",))] * self.args.workers]:
            self.groups[self.procs.scfm(label, *args).popen.pid] = label
        progress(f"cluster: api on :{self.api_port} (2 gunicorn workers x 4 threads), {self.args.workers} "
                 f"`scfm worker` processes, one `scfm dialer`, `scfm scheduler --interval 1`")

    def provider(self, rate: float, **server) -> Provider:
        provider = Provider(self.procs, rate, server.pop("port", None) or self.provider_ports.pop(), **server)
        self.groups[provider.process.popen.pid] = "fake providers"
        return provider

    # -- helpers
    def scalar(self, query: str, params=None):
        with self.raw.cursor() as cur:
            cur.execute(query, params)
            value = cur.fetchone()[0]
        self.raw.commit()
        return value

    def account(self, calls: int, **fields) -> Tenant:
        """An account with `calls` contacts, a started callout, its participations and phone calls created."""
        account_id, token = new_account(self.admin, **fields)
        api = Api(self.admin.client, token)
        with self.raw.cursor() as cur:
            cur.execute("INSERT INTO contacts (account_id, msisdn) "
                        "SELECT %s, '+855' || lpad(%s::text, 3, '0') || lpad(n::text, 6, '0') "
                        "FROM generate_series(1, %s) AS n", (account_id, account_id, calls))
        self.raw.commit()
        callout_id = api.post("/api/callouts").get_json()["id"]
        api.post(f"/api/callouts/{callout_id}/callout_events", {"event": "start"})
        tenant = Tenant(account_id, api, callout_id, calls)
        if calls:
            self.wait_finished(api, self.queue_operation(tenant, {"type": "BatchOperation::CalloutPopulation"}))
            self.wait_finished(api, self.queue_operation(
                tenant, {"type": "BatchOperation::PhoneCallCreate", **REMOTE_REQUEST_PARAMS}))
        return tenant

    def queue_operation(self, tenant: Tenant, data: dict) -> int:
        operation_id = tenant.api.post(f"/api/callouts/{tenant.callout_id}/batch_operations", data).get_json()["id"]
        tenant.api.post(f"/api/batch_operations/{operation_id}/batch_operation_events", {"event": "queue"})
        return operation_id

    def wait_finished(self, api: Api, operation_id: int) -> dict:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            self.procs.check_alive()
            operation = api.get(f"/api/batch_operations/{operation_id}").get_json()
            if operation["status"] == "finished":
                return operation
            if operation.get("error_message"):
                raise BenchError(f"batch operation {operation_id}: {operation['error_message']}")
            time.sleep(0.1)
        raise BenchError(f"batch operation {operation_id} did not finish in 300s")

    def wait_dialed(self, account_ids: list[int], seconds: float) -> None:
        """Until no call of these accounts is queued (every one was dialed), or long past when it should be."""
        deadline = time.monotonic() + seconds * 2 + 60
        query = "SELECT count(*) FROM phone_calls WHERE account_id = ANY(%s) AND status = 'queued'"
        while time.monotonic() < deadline and self.scalar(query, (account_ids,)):
            self.procs.check_alive()
            time.sleep(0.25)
        if left := self.scalar(query, (account_ids,)):
            progress(f"  {left} calls still queued after {seconds * 2 + 60:.0f}s: figures of what was dialed")

    # -- one account at a time, at each rate
    def run_rate(self, rate: float) -> None:
        calls = max(2, round(rate * self.args.seconds))
        progress(f"{rate:g}/s: {calls} calls, provider enforcing {rate:g}/s")
        provider = self.provider(rate)
        try:
            tenant = self.account(calls, calls_per_second=rate, **provider.credentials())
            with CpuMeter(self.groups) as cpu:
                self.wait_finished(tenant.api, self.queue_operation(tenant, {"type": "BatchOperation::PhoneCallQueue"}))
                self.wait_dialed([tenant.account_id], calls / rate)
            report = provider.report()
        finally:
            self.procs.stop(provider.process)
        self.results.append(analyse(rate, calls, report["creates"]).result(f"dialing {rate:g}/s"))
        print(f"  {cpu.line()}", flush=True)

    # -- six accounts at once, and a seventh's batch operation
    def run_accounts(self, shared: bool) -> None:
        rate, seconds = self.args.accounts_rate, self.args.seconds
        label, own_rate = ("shared", rate / ACCOUNTS) if shared else ("accounts", rate)
        calls = max(2, round(own_rate * seconds))
        progress(f"{label}: {ACCOUNTS} accounts x {calls} calls at {rate:g}/s "
                 f"{'on the server provider account' if shared else 'each on its own provider account'}")
        providers = ([self.provider(rate, **self.server)] if shared
                     else [self.provider(rate) for _ in range(ACCOUNTS)])
        try:
            tenants = [self.account(calls, calls_per_second=rate, **({} if shared else provider.credentials()))
                       for provider in (providers * ACCOUNTS if shared else providers)]
            quiet = self.account(1)  # then another population of its callout, while the six dial
            with CpuMeter(self.groups) as cpu:
                queues = []
                for tenant in tenants:
                    tenant.queued_at = time.monotonic()
                    queues.append(self.queue_operation(tenant, {"type": "BatchOperation::PhoneCallQueue"}))
                queued_at = self.scalar("SELECT clock_timestamp()")
                population = self.queue_operation(quiet, {"type": "BatchOperation::CalloutPopulation"})
                self.wait_finished(quiet.api, population)
                for tenant, operation_id in zip(tenants, queues):
                    self.wait_finished(tenant.api, operation_id)
                self.wait_dialed([tenant.account_id for tenant in tenants], calls / own_rate)
            reports = [provider.report() for provider in providers]
        finally:
            for provider in providers:
                self.procs.stop(provider.process)
        population_wait = self.scalar("SELECT extract(epoch FROM started_at - %s) FROM batch_operations WHERE id = %s",
                                      (queued_at, population))
        if shared:
            with self.raw.cursor() as cur:
                cur.execute("SELECT id, account_id FROM phone_calls WHERE account_id = ANY(%s)",
                            ([tenant.account_id for tenant in tenants],))
                owner = dict(cur.fetchall())
            self.raw.commit()
            for tenant in tenants:
                tenant.creates = [c for c in reports[0]["creates"] if owner.get(c["phone_call_id"]) == tenant.account_id]
        else:
            for tenant, report in zip(tenants, reports):
                tenant.creates = report["creates"]
        self.report_accounts(label, shared, rate, tenants, reports, float(population_wait), cpu)

    def report_accounts(self, label, shared, rate, tenants, reports, population_wait, cpu) -> None:
        own_rate = rate / ACCOUNTS if shared else rate
        figures = [analyse(own_rate, t.calls, t.creates) for t in tenants]
        waits = [tenant.first_call_wait() for tenant in tenants]
        periods = [tenant.period() for tenant in tenants]
        overlap = max(first for first, _ in periods) < min(last for _, last in periods)
        for tenant, figure, wait, (first, last) in zip(tenants, figures, waits, periods):
            print(f"{label}: account {tenant.account_id}: {figure.steady:.2f}/s over {figure.dialed} calls "
                  f"({figure.share * 100:.1f}% of {'its share' if shared else 'its rate'}), first call {wait:.2f}s "
                  f"after its queue request, dialing from {first - periods[0][0]:.1f}s to {last - periods[0][0]:.1f}s",
                  flush=True)
        print(f"{label}: the seventh account's CalloutPopulation started {population_wait:.2f}s after it was queued; "
              f"dialing periods overlap: {overlap}", flush=True)
        print(f"  {cpu.line()}", flush=True)
        if shared:
            total = analyse(rate, sum(t.calls for t in tenants), reports[0]["creates"])
            self.results.append(total.result(f"{label}: the server's provider account at {rate:g}/s"))
            split = [f.steady for f in figures]
            self.results.append(Result(f"{label}: split of {ACCOUNTS}", f"{min(split):.2f}..{max(split):.2f}/s",
                                       f"~{rate / ACCOUNTS / SPACING_MARGIN:.2f}/s each",
                                       max(split) <= min(split) * 1.1))
        else:
            shares = [f.share for f in figures]
            self.results.append(Result(f"{label}: {ACCOUNTS} x {rate:g}/s", f"{min(shares) * 100:.1f}%..{max(shares) * 100:.1f}%",
                                       f">= {TARGET_SHARE * 100:.0f}% each",
                                       min(shares) >= TARGET_SHARE and all(f.busiest <= rate for f in figures)))
        self.results.append(Result(f"{label}: first call", f"{min(waits):.2f}..{max(waits):.2f}s",
                                   f"< {TARGET_WAIT:g}s", max(waits) < TARGET_WAIT, f"overlap: {overlap}"))
        self.results.append(Result(f"{label}: batch operation wait", f"{population_wait:.2f}s", f"< {TARGET_WAIT:g}s",
                                   population_wait < TARGET_WAIT))

    def run(self) -> None:
        self.start_cluster()
        for suite in self.args.suites:
            if suite == "rates":
                for rate in self.args.rates:
                    self.run_rate(rate)
            else:
                self.run_accounts(shared=suite == "shared")


def main(args: argparse.Namespace) -> int:
    api_port = free_port()
    provider_ports = [free_port() for _ in range(len(args.rates) + ACCOUNTS)]
    server = {"sid": "AC" + uuid.uuid4().hex, "token": uuid.uuid4().hex, "port": free_port()}
    extra_env = {"PUBLIC_URL": f"http://127.0.0.1:{api_port}",
                 "SCFM_MAX_CALLS_PER_SECOND": str(max(args.rates + [args.accounts_rate])),
                 "SCFM_ALLOWED_PROVIDER_URLS": " ".join(f"http://127.0.0.1:{port}" for port in provider_ports),
                 "PLATFORM_PROVIDER": "somleng", "SOMLENG_ACCOUNT_SID": server["sid"],
                 "SOMLENG_AUTH_TOKEN": server["token"],
                 "SOMLENG_CLIENT_REST_API_BASE_URL": f"http://127.0.0.1:{server['port']}",
                 "SCFM_SERVER_CALLS_PER_SECOND": str(args.accounts_rate)}

    def body():
        with throwaway_env("dialing", keep=args.keep, extra_env=extra_env) as env:
            with processes(env.child_env(**extra_env)) as procs:
                bench = Bench(env, procs, args, api_port, provider_ports, server)
                try:
                    bench.run()
                finally:
                    bench.raw.close()
        print("\n" + summary(f"dialing against the fake provider ({args.workers} `scfm worker` processes, one "
                             f"`scfm dialer`, ~{args.seconds:g}s of calls per run)", bench.results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suites", type=lambda text: text.split(","), default=["rates", "accounts", "shared"],
                        metavar="S,S,...", help="rates, accounts, shared (default all three)")
    parser.add_argument("--rates", type=lambda text: [float(x) for x in text.split(",")], default=[1.0, 10.0, 100.0],
                        metavar="R,R,...", help="calls per second to try, one account at a time (default 1,10,100)")
    parser.add_argument("--accounts-rate", type=float, default=10.0,
                        help="each account's rate in `accounts`, the server's provider account's in `shared` (10)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="calls = rate (or share) x this: about how long each run dials (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="`scfm worker` processes (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
