"""Many accounts dialing at once on the real cluster (`scfm serve`, `scfm worker`s, one `scfm dialer`, `scfm
scheduler`) against tests/support's fake provider in a process of its own: 429 above its account's rate, and
each call's status callbacks (ringing, then its end).
Rates are judged from the provider's create timestamps: the steady rate (after the first second) and the
busiest second (any sliding 1-second window). One account at a time is the `capacity` benchmark.

accounts  six accounts on their own provider accounts at --accounts-rate, queued at once while a seventh
          account's CalloutPopulation is queued: each one's rate (>= 95%), its first call's wait (< 5 s),
          whether they overlap, and the population's wait for a worker (< 5 s).
shared    the same six on the server's provider account, whose rate the operator sets
          (SCFM_SERVER_CALLS_PER_SECOND = --accounts-rate): the total (>= 95%, never above) and its split.

The dialer spaces its slots by rate / 1.04 (SPACING_MARGIN in scfm.domain.dialing): 96.2% is its ceiling.
"""
from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass

from bench.common import (
    Api, BenchError, CpuMeter, Result, admin_api, busiest_window, free_port, guarded, http_session, new_account,
    processes, progress, summary, throwaway_env, wait_finished, wait_for_http,
)
from scfm.domain.dialing import SPACING_MARGIN
from scfm.domain.state_machines import PhoneCallStatus

TARGET_SHARE, TARGET_FROM_RATE, TARGET_WAIT = 0.95, 10, 5.0  # the share's target applies from TARGET_FROM_RATE
ACCOUNTS = 6
REMOTE_REQUEST_PARAMS = {"parameters[remote_request_params][from]": "1234",
                         "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml"}


@dataclass
class Figures:
    """What the provider saw of one rate: its create requests' times and answers."""
    rate: float
    calls: int
    creates: list[dict]

    def __post_init__(self):
        self.ok = sorted(c["at"] for c in self.creates if c["status_code"] == 201)
        if len(self.ok) < 2:
            raise BenchError(f"at {self.rate:g}/s the provider saw {len(self.ok)} successful creates")
        steady = [t for t in self.ok if t >= self.ok[0] + 1.0] if self.ok[-1] - self.ok[0] > 3 else self.ok
        steady = steady if len(steady) >= 2 else self.ok
        self.steady = (len(steady) - 1) / (steady[-1] - steady[0])
        self.busiest = busiest_window([c["at"] for c in self.creates])
        self.share = self.steady / self.rate

    def result(self, name: str) -> Result:
        """Printed at once; the share has a target from TARGET_FROM_RATE on, the busiest second always."""
        codes, share_target = [c["status_code"] for c in self.creates], self.rate >= TARGET_FROM_RATE
        gaps = sum(1 for a, b in zip(self.ok, self.ok[1:]) if b - a >= 1.9 * SPACING_MARGIN / self.rate)
        result = Result(name, f"{self.steady:.2f}/s ({self.share:.1%}), busiest second {self.busiest}",
                        (f">= {TARGET_SHARE:.0%}, " if share_target else "") + f"busiest <= {self.rate:g}",
                        self.busiest <= self.rate and (self.share >= TARGET_SHARE or not share_target),
                        f"{len(self.ok)} of {self.calls} calls dialed, {codes.count(429)} x 429, "
                        f"{len(codes) - len(self.ok) - codes.count(429)} other errors, {gaps} gaps of 2+ slots")
        print(f"{name}: {result.value}; {result.note}", flush=True)
        return result


class Provider:
    """A fake provider process for one account (`sid`, `token`: the server's own), enforcing `rate`: the far end
    of `capacity`, or tests/support's (2 callbacks a call from one thread, as the figures of issue 11 had it)."""

    def __init__(self, procs, rate: float, port: int, sid: str | None = None, token: str | None = None,
                 module: str = "tests.support.provider_process"):
        self.sid, self.token, report_port = sid or "AC" + uuid.uuid4().hex, token or uuid.uuid4().hex, free_port()
        self.url, self.report_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{report_port}/"
        self.process = procs.start(f"provider {rate:g}/s", "-m", module, "--port", str(port), "--report-port",
                                   str(report_port), "--account", f"{self.sid}:{self.token}", "--rate", str(rate))
        wait_for_http(self.report_url, self.process)

    def report(self) -> dict:
        return http_session().get(self.report_url, timeout=30).json()

    def credentials(self) -> dict:
        """An account's fields to dial through this provider account."""
        return {"platform_provider_name": "somleng", "somleng_account_sid": self.sid,
                "somleng_auth_token": self.token, "somleng_api_base_url": self.url}


@dataclass
class Tenant:
    """An account with a started callout whose calls are created."""
    account_id: int
    api: Api
    callout_id: int
    calls: int
    queued_at: float = 0.0  # time.monotonic() of its queue request


class Cluster:
    """The real cluster on a throwaway database, fake providers, and accounts made through the API."""

    def __init__(self, env, procs, api_port: int, provider_ports: list[int], workers: int, api_workers: int = 2):
        self.env, self.procs, self.provider_ports = env, procs, list(provider_ports)
        self.admin, self.raw, self.groups = admin_api(env.deps), env.connect(), {}
        self.groups[procs.api(api_port, workers=api_workers).popen.pid] = "api (scfm serve)"
        for label, args in [("scheduler", ("scheduler", "--interval", "1")), ("dialer", ("dialer",)),
                            *[("workers", ("worker",))] * workers]:
            self.groups[procs.scfm(label, *args).popen.pid] = label
        progress(f"cluster: api on :{api_port} ({api_workers} API workers x 4 threads), {workers} `scfm "
                 f"worker` processes, one `scfm dialer`, `scfm scheduler --interval 1`")

    def provider(self, rate: float, **server) -> Provider:
        provider = Provider(self.procs, rate, server.pop("port", None) or self.provider_ports.pop(), **server)
        self.groups[provider.process.popen.pid] = "fake providers"
        return provider

    def rows(self, query: str, params=None) -> list:
        with self.raw.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall() if cur.description else []
        self.raw.commit()
        return rows

    def account(self, calls: int, **fields) -> Tenant:
        """An account with `calls` contacts, a started callout, its participations and phone calls created."""
        account_id, token = new_account(self.admin, **fields)
        self.rows("INSERT INTO contacts (account_id, msisdn) SELECT %s, '+855' || lpad(%s::text, 3, '0') "
                  "|| lpad(n::text, 6, '0') FROM generate_series(1, %s) AS n", (account_id, account_id, calls))
        api = Api(self.admin.client, token)
        tenant = Tenant(account_id, api, api.post("/api/callouts").json["id"], calls)
        api.post(f"/api/callouts/{tenant.callout_id}/callout_events", {"event": "start"})
        if calls:
            for data in ({"type": "BatchOperation::CalloutPopulation"},
                         {"type": "BatchOperation::PhoneCallCreate", **REMOTE_REQUEST_PARAMS}):
                wait_finished(api, self.queue(tenant, data), self.procs)
        return tenant

    def queue(self, tenant: Tenant, data: dict) -> int:
        """A batch operation of the tenant's callout, queued."""
        operation_id = tenant.api.post(f"/api/callouts/{tenant.callout_id}/batch_operations", data).json["id"]
        tenant.api.post(f"/api/batch_operations/{operation_id}/batch_operation_events", {"event": "queue"})
        return operation_id

    def dial(self, tenants: list[Tenant], seconds: float, meanwhile=lambda: None):
        """Queue every tenant's calls, then do `meanwhile`; wait until no call is left queued (or long past when
        none should be); what `meanwhile` gave."""
        operations = []
        for tenant in tenants:
            tenant.queued_at = time.monotonic()
            operations.append(self.queue(tenant, {"type": "BatchOperation::PhoneCallQueue"}))
        also = meanwhile()
        for tenant, operation_id in zip(tenants, operations):
            wait_finished(tenant.api, operation_id, self.procs)
        deadline = time.monotonic() + seconds * 2 + 60
        while time.monotonic() < deadline and self.rows(
                "SELECT 1 FROM phone_calls WHERE account_id = ANY(%s) AND status = %s LIMIT 1",
                ([tenant.account_id for tenant in tenants], PhoneCallStatus.QUEUED.value)):
            self.procs.check_alive()
            time.sleep(0.25)
        return also

    def run_accounts(self, rate: float, seconds: float, server: dict | None) -> list[Result]:
        """Six accounts on their own provider accounts at `rate` each, or sharing the `server`'s at `rate`."""
        label, own_rate = ("shared", rate / ACCOUNTS) if server else ("accounts", rate)
        calls = max(2, round(own_rate * seconds))
        progress(f"{label}: {ACCOUNTS} accounts x {calls} calls, {rate:g}/s {'shared' if server else 'each'}")
        providers = [self.provider(rate, **server)] if server else [self.provider(rate) for _ in range(ACCOUNTS)]
        tenants = [self.account(calls, calls_per_second=rate, **({} if server else provider.credentials()))
                   for provider in providers * (ACCOUNTS if server else 1)]
        quiet = self.account(1)  # its second population is queued just after the six, while they dial
        with CpuMeter(self.groups) as cpu:
            queued_at, population = self.dial(tenants, calls / own_rate, lambda: (
                self.rows("SELECT clock_timestamp()")[0][0],
                self.queue(quiet, {"type": "BatchOperation::CalloutPopulation"})))
            wait_finished(quiet.api, population, self.procs)
        creates = [provider.report()["creates"] for provider in providers]
        self.procs.stop(*(provider.process for provider in providers))
        waited = float(self.rows("SELECT extract(epoch FROM started_at - %s) FROM batch_operations WHERE id = %s",
                                 (queued_at, population))[0][0])
        owner = dict(self.rows("SELECT id, account_id FROM phone_calls"))
        figures = [Figures(own_rate, tenant.calls, [c for each in creates for c in each
                                                    if owner.get(c["phone_call_id"]) == tenant.account_id])
                   for tenant in tenants]
        waits = [figure.ok[0] - tenant.queued_at for tenant, figure in zip(tenants, figures)]
        start = min(figure.ok[0] for figure in figures)
        overlap = max(figure.ok[0] for figure in figures) < min(figure.ok[-1] for figure in figures)
        print(*(f"{label}: account {tenant.account_id}: {figure.steady:.2f}/s ({figure.share:.1%} of its "
                f"{'share' if server else 'rate'}), first call {wait:.2f}s after its queue request, dialing from "
                f"{figure.ok[0] - start:.1f}s to {figure.ok[-1] - start:.1f}s"
                for tenant, figure, wait in zip(tenants, figures, waits)), sep="\n")
        print(f"{label}: the seventh account's CalloutPopulation started {waited:.2f}s after it was queued; dialing "
              f"periods overlap: {overlap}\n  {cpu.line()}", flush=True)
        if server:
            split = [figure.steady for figure in figures]
            results = [Figures(rate, calls * ACCOUNTS, creates[0]).result(f"shared: the server's account at {rate:g}/s"),
                       Result(f"shared: split of {ACCOUNTS}", f"{min(split):.2f}..{max(split):.2f}/s",
                              f"~{own_rate / SPACING_MARGIN:.2f}/s each", max(split) <= min(split) * 1.1)]
        else:
            shares = [figure.share for figure in figures]
            results = [Result(f"accounts: {ACCOUNTS} x {rate:g}/s", f"{min(shares):.1%}..{max(shares):.1%}",
                              f">= {TARGET_SHARE:.0%} each",
                              min(shares) >= TARGET_SHARE and all(f.busiest <= rate for f in figures))]
        return results + [
            Result(f"{label}: first call", f"{min(waits):.2f}..{max(waits):.2f}s", f"< {TARGET_WAIT:g}s",
                   max(waits) < TARGET_WAIT, f"overlap: {overlap}"),
            Result(f"{label}: batch operation wait", f"{waited:.2f}s", f"< {TARGET_WAIT:g}s", waited < TARGET_WAIT)]


def with_cluster(label: str, args, providers: int, max_rate: float, server_rate: float, measure) -> list[Result]:
    """`measure(cluster, server)` on the cluster, the ceilings raised to `max_rate` through the environment,
    and the server's own provider account (`server`) at `server_rate`."""
    api_port, server = free_port(), {"sid": "AC" + uuid.uuid4().hex, "token": uuid.uuid4().hex, "port": free_port()}
    provider_ports = [free_port() for _ in range(providers)]
    extra_env = {"PUBLIC_URL": f"http://127.0.0.1:{api_port}", "SCFM_MAX_CALLS_PER_SECOND": str(max_rate),
                 "SCFM_MAX_CALLS_IN_FLIGHT": "100000", "SCFM_SERVER_CALLS_PER_SECOND": str(server_rate),
                 "SCFM_ALLOWED_PROVIDER_URLS": " ".join(f"http://127.0.0.1:{port}" for port in provider_ports),
                 "PLATFORM_PROVIDER": "somleng", "SOMLENG_ACCOUNT_SID": server["sid"],
                 "SOMLENG_AUTH_TOKEN": server["token"],
                 "SOMLENG_CLIENT_REST_API_BASE_URL": f"http://127.0.0.1:{server['port']}"}
    with throwaway_env(label, keep=args.keep, extra_env=extra_env) as env, processes() as procs:
        cluster = Cluster(env, procs, api_port, provider_ports, args.workers, args.api_workers)
        try:
            return measure(cluster, server)
        finally:
            cluster.raw.close()


def main(args: argparse.Namespace) -> int:
    def measure(cluster: Cluster, server: dict) -> list[Result]:
        return [each for suite in args.suites
                for each in cluster.run_accounts(args.accounts_rate, args.seconds, server if suite == "shared" else None)]

    return guarded(lambda: print("\n" + summary(
        f"dialing against the fake provider ({args.workers} `scfm worker`s, one `scfm dialer`, ~{args.seconds:g}s "
        f"of calls per run)", with_cluster("dialing", args, ACCOUNTS, args.accounts_rate,
                                           args.accounts_rate, measure)), flush=True))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suites", type=lambda text: text.split(","), default=["accounts", "shared"],
                        metavar="S,S,...", help="accounts, shared (default both)")
    parser.add_argument("--accounts-rate", type=float, default=10.0,
                        help="each account's rate in `accounts`, the server's provider account's in `shared` (10)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="calls = rate (or share) x this: about how long each dials (default 20)")
    add_cluster_arguments(parser)


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="`scfm worker` processes (default 2)")
    parser.add_argument("--api-workers", type=int, default=2, help="API server (scfm serve) worker processes (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
