"""Dialing throughput: the real cluster against the Twilio-compatible fake provider at 1, 10 and 100 calls/s.

Starts the cluster of tests/integration/test_chaos.py (without its faults): the API under gunicorn (the status
callbacks land there), `scfm worker` processes and `scfm scheduler`, on a throwaway database and queue. For
each rate R: the fake provider in its own process (tests/support/provider_process.py, enforcing R itself),
an account with calls_per_second=R and somleng credentials pointing at it, R x --seconds contacts, a
callout started and populated, its phone calls created and queued with batch operations (the API in this
process, the jobs on the workers). When every call has been dialed, the provider's create timestamps give

  achieved   (n - 1) / (last - first) over the steady part (the 201 creates after the first second)
  busiest    the most create requests in any 1-second sliding window

printed as `dialing at R/s: achieved A/s (P% of configured), busiest second B`, against the target: at
least 95% of the rate at 10 and 100 calls/s, and never more than R in a second. Note that the dialer spaces
its slots by rate / 1.04 (SPACING_MARGIN in scfm.domain.dialing), so 96.2% is its ceiling.

When a rate of 10/s or more falls short (or with --profile), a diagnosis follows: the workers and the
scheduler are stopped and the same jobs (the batch operations, then the dispatcher `dial_due`) run in this
process with timers around the claim transaction, the wait for the limiter's slot, the provider request and
the record transaction of every call: first as the code is (DialingPolicy.concurrency: ceil(rate / 10)
threads), then with --what-if-threads threads (default 10; patched into this process only) when that
differs. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import signal
import threading
import time
import uuid
from dataclasses import dataclass

from bench.common import (
    Api, BenchError, CpuMeter, Env, Result, admin_api, busiest_window, free_port, new_account, percentile,
    processes, progress, summary, throwaway_env, wait_for_http,
)
from scfm.domain.dialing import SPACING_MARGIN

TARGET_SHARE = 0.95
TARGET_FROM_RATE = 10  # the 95% target applies from this rate on; every rate must stay at or below itself
STEADY_SKIP_SECONDS = 1.0
REMOTE_REQUEST_PARAMS = {"parameters[remote_request_params][from]": "1234",
                         "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml"}


@dataclass
class Figures:
    rate: float
    calls: int
    dialed: int
    rejected: int  # 429s
    other_errors: int
    overall: float
    steady: float
    busiest: int
    largest_gap: float
    span: float
    long_gaps: int  # gaps of at least 1.9 slot intervals: a slot that went by unused

    @property
    def share(self) -> float:
        return self.steady / self.rate

    def line(self) -> str:
        return (f"dialing at {self.rate:g}/s: achieved {self.steady:.2f}/s ({self.share * 100:.1f}% of configured), "
                f"busiest second {self.busiest}")

    def details(self) -> str:
        return (f"  {self.dialed} of {self.calls} calls dialed in {self.span:.1f}s (overall {self.overall:.2f}/s "
                f"from first to last create), {self.rejected} rejected with 429, {self.other_errors} other errors; "
                f"largest gap between two creates {self.largest_gap * 1000:.0f} ms "
                f"(slot interval {1000 * SPACING_MARGIN / self.rate:.0f} ms); {self.long_gaps} gaps of 2 or more intervals")

    def result(self) -> Result:
        below_rate = self.busiest <= self.rate
        meets = below_rate and (self.share >= TARGET_SHARE if self.rate >= TARGET_FROM_RATE else True)
        target = (f">= {TARGET_SHARE * 100:.0f}%, busiest <= {self.rate:g}" if self.rate >= TARGET_FROM_RATE
                  else f"busiest <= {self.rate:g}")
        return Result(f"dialing {self.rate:g}/s", f"{self.steady:.2f}/s ({self.share * 100:.1f}%), busiest {self.busiest}",
                      target, meets, f"{self.dialed} calls, {self.rejected} x 429")


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
        overall=(len(ok) - 1) / (ok[-1] - ok[0]),
        steady=(len(steady) - 1) / (steady[-1] - steady[0]),
        busiest=busiest_window([c["at"] for c in creates]),
        largest_gap=max(b - a for a, b in zip(ok, ok[1:])),
        span=ok[-1] - ok[0],
        long_gaps=sum(1 for a, b in zip(ok, ok[1:]) if b - a >= 1.9 * SPACING_MARGIN / rate),
    )


class Provider:
    """The fake provider in its own process, for one account, enforcing `rate` (429 above it)."""

    def __init__(self, procs, rate: float, port: int):
        self.sid, self.token = "AC" + uuid.uuid4().hex, uuid.uuid4().hex
        self.port, self.report_port = port, free_port()
        self.process = procs.start(
            f"provider {rate:g}/s", "-m", "tests.support.provider_process", "--port", str(self.port),
            "--report-port", str(self.report_port), "--account", f"{self.sid}:{self.token}", "--rate", str(rate),
            "--seed", "1")
        wait_for_http(self.report_url, self.process)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def report_url(self) -> str:
        return f"http://127.0.0.1:{self.report_port}/"

    def report(self) -> dict:
        import requests

        session = requests.Session()
        session.trust_env = False
        return session.get(self.report_url, timeout=30).json()


class Bench:
    def __init__(self, env: Env, procs, args, api_port: int, provider_ports: list[int]):
        self.env = env
        self.provider_ports = list(provider_ports)  # the URLs the operator allows (SCFM_ALLOWED_PROVIDER_URLS)
        self.procs = procs
        self.args = args
        self.api_port = api_port
        self.admin = admin_api(env.deps)
        self.app_client = self.admin.client
        self.raw = env.connect()
        self.figures: list[Figures] = []
        self.results: list[Result] = []
        self.workers = []
        self.scheduler = None
        self.groups: dict[int, str] = {}

    # -- the cluster
    def start_cluster(self) -> None:
        api = self.procs.api(self.api_port)
        self.groups[api.popen.pid] = "api (gunicorn)"
        self.scheduler = self.procs.scfm("scheduler", "scheduler", "--interval", "1")
        self.groups[self.scheduler.popen.pid] = "scheduler"
        for index in range(self.args.workers):
            worker = self.procs.scfm(f"worker {index}", "worker")
            self.groups[worker.popen.pid] = "scfm workers"
            self.workers.append(worker)
        progress(f"cluster: api on :{self.api_port} (2 gunicorn workers x 4 threads), {self.args.workers} "
                 f"`scfm worker` processes, `scfm scheduler --interval 1`")

    def stop_jobs_processes(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process is not None:
                self.procs.stop(process)
        self.workers, self.scheduler = [], None

    # -- helpers
    def scalar(self, query: str, params=None):
        with self.raw.cursor() as cur:
            cur.execute(query, params)
            value = cur.fetchone()[0]
        self.raw.commit()
        return value

    def prepare(self, rate: float, calls: int) -> tuple[Provider, Api, int, int]:
        """The provider, an account dialing it at `rate`, `calls` contacts, a started callout: (provider,
        api, account id, callout id)."""
        provider = Provider(self.procs, rate, self.provider_ports.pop())
        self.groups[provider.process.popen.pid] = "fake provider"
        account_id, token = new_account(
            self.admin, platform_provider_name="somleng", somleng_account_sid=provider.sid,
            somleng_auth_token=provider.token, somleng_api_base_url=provider.url, calls_per_second=rate)
        api = Api(self.app_client, token)
        with self.raw.cursor() as cur:
            cur.execute("INSERT INTO contacts (account_id, msisdn) "
                        "SELECT %s, '+85510' || lpad(n::text, 6, '0') FROM generate_series(1, %s) AS n",
                        (account_id, calls))
        self.raw.commit()
        callout_id = api.post("/api/callouts").get_json()["id"]
        api.post(f"/api/callouts/{callout_id}/callout_events", {"event": "start"})
        return provider, api, account_id, callout_id

    def operation(self, api: Api, callout_id: int, data: dict, run_jobs=None) -> None:
        operation_id = api.post(f"/api/callouts/{callout_id}/batch_operations", data).get_json()["id"]
        api.post(f"/api/batch_operations/{operation_id}/batch_operation_events", {"event": "queue"})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if run_jobs:
                run_jobs()
            else:
                self.procs.check_alive()
            operation = api.get(f"/api/batch_operations/{operation_id}").get_json()
            if operation["status"] == "finished":
                return
            if operation.get("error_message"):
                raise BenchError(f"{data['type']}: {operation['error_message']}")
            time.sleep(0.1)
        raise BenchError(f"{data['type']} did not finish in 300s")

    def populate_and_create(self, api: Api, callout_id: int, run_jobs=None) -> None:
        self.operation(api, callout_id, {"type": "BatchOperation::CalloutPopulation"}, run_jobs)
        self.operation(api, callout_id, {"type": "BatchOperation::PhoneCallCreate", **REMOTE_REQUEST_PARAMS}, run_jobs)

    def wait_dialed(self, account_id: int, calls: int, rate: float) -> None:
        """Until no call of the account is queued (every one was dialed), or long past when it should be."""
        deadline = time.monotonic() + calls / rate * 2 + 60
        while time.monotonic() < deadline:
            self.procs.check_alive()
            if not self.scalar("SELECT count(*) FROM phone_calls WHERE account_id = %s AND status = 'queued'",
                               (account_id,)):
                return
            time.sleep(0.25)
        left = self.scalar("SELECT count(*) FROM phone_calls WHERE account_id = %s AND status = 'queued'",
                           (account_id,))
        progress(f"  {left} calls still queued after {calls / rate * 2 + 60:.0f}s: figures of what was dialed")

    def dispatcher_runs(self, account_id: int) -> list:
        """The results of the account's dial_due jobs that dialed (each one ran up to the budget)."""
        from rq.job import Job

        queue = self.env.deps.queue
        jobs = Job.fetch_many(queue.finished_job_registry.get_job_ids(), connection=self.env.deps.redis)
        runs = []
        for job in jobs:
            if job and job.func_name.endswith("dial_due") and tuple(job.args) == (account_id,):
                value = job.return_value()
                if isinstance(value, dict) and value.get("dialed"):
                    runs.append(value)
        return runs

    # -- the benchmark
    def run_rate(self, rate: float) -> Figures:
        calls = max(2, round(rate * self.args.seconds))
        progress(f"{rate:g}/s: {calls} contacts, provider enforcing {rate:g}/s")
        provider, api, account_id, callout_id = self.prepare(rate, calls)
        try:
            self.populate_and_create(api, callout_id)
            with CpuMeter(self.groups) as cpu:
                self.operation(api, callout_id, {"type": "BatchOperation::PhoneCallQueue"})
                progress(f"  {calls} calls queued; dialing")
                self.wait_dialed(account_id, calls, rate)
            report = provider.report()
        finally:
            self.procs.stop(provider.process)
        figures = analyse(rate, calls, report["creates"])
        runs = self.dispatcher_runs(account_id)
        print(figures.line(), flush=True)
        print(figures.details(), flush=True)
        print(f"  dispatcher: {len(runs)} dial_due run(s) that dialed {[run['dialed'] for run in runs]}, "
              f"{_threads(rate)} dialing threads each; {self.args.workers} `scfm worker` processes", flush=True)
        print(f"  {cpu.line()}", flush=True)
        return figures

    def run(self) -> None:
        self.start_cluster()
        for rate in self.args.rates:
            figures = self.run_rate(rate)
            self.figures.append(figures)
            self.results.append(figures.result())
        short = [f for f in self.figures if f.rate >= TARGET_FROM_RATE and f.share < TARGET_SHARE]
        if self.args.profile == "always" or (self.args.profile == "auto" and short):
            rate = max(f.rate for f in short) if short else max(self.args.rates)
            self.stop_jobs_processes()
            threads = self.args.what_if_threads or None
            self.profile(rate, None)
            if threads and threads != _threads(rate):
                self.profile(rate, threads)

    # -- the diagnosis
    def profile(self, rate: float, threads: int | None) -> None:
        """The same jobs in this process (RQ SimpleWorker), with timers around each step of every dial;
        `threads` patches DialingPolicy.concurrency."""
        from scfm.domain.dialing import DialingPolicy

        calls = max(2, round(rate * self.args.profile_seconds))
        label = f"{threads} dialing threads (patched)" if threads else f"{_threads(rate)} dialing threads (as is)"
        progress(f"profile at {rate:g}/s, {label}: {calls} calls, the jobs in this process")
        provider, api, account_id, callout_id = self.prepare(rate, calls)
        probe = Probe(self.env.deps)
        saved = DialingPolicy.concurrency
        try:
            run_jobs = self.jobs_runner()
            self.populate_and_create(api, callout_id, run_jobs)
            if threads:
                DialingPolicy.concurrency = property(lambda _self: threads)
            with probe, CpuMeter(self.groups) as cpu:
                self.operation(api, callout_id, {"type": "BatchOperation::PhoneCallQueue"}, run_jobs)
                run_jobs()  # the dispatcher, until it yields (every call dialed, or its budget spent)
                self.wait_dialed(account_id, calls, rate)
            report = provider.report()
        finally:
            DialingPolicy.concurrency = saved
            self.procs.stop(provider.process)
        figures = analyse(rate, calls, report["creates"])
        print(f"profile at {rate:g}/s, {label}, dispatcher in this process: achieved {figures.steady:.2f}/s "
              f"({figures.share * 100:.1f}% of configured), busiest second {figures.busiest}", flush=True)
        print(probe.report(threads or _threads(rate), rate), flush=True)
        print(f"  {cpu.line()}", flush=True)
        self.results.append(Result(f"profile {rate:g}/s, {threads or _threads(rate)} threads",
                                   f"{figures.steady:.2f}/s ({figures.share * 100:.1f}%)",
                                   f">= {TARGET_SHARE * 100:.0f}%", figures.share >= TARGET_SHARE and
                                   figures.busiest <= rate, "in-process dispatcher" + (", patched" if threads else "")))

    def jobs_runner(self):
        from rq import SimpleWorker

        deps = self.env.deps

        def run() -> None:
            saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
            worker = SimpleWorker([deps.queue], connection=deps.redis)
            try:
                worker.work(burst=True, logging_level="WARNING")
            finally:
                for signum, handler in saved.items():
                    signal.signal(signum, handler)
                deps.redis.delete(worker.key)
            if getattr(worker, "_stop_requested", False):
                raise KeyboardInterrupt("stop requested while the worker ran")

        return run

    def close(self) -> None:
        self.raw.close()


def _threads(rate: float) -> int:
    from scfm.domain.dialing import DialingPolicy

    return DialingPolicy(rate, None).concurrency


class Probe:
    """Timers around every step of a dial, patched into scfm.services.dialing of this process:

    claim   from the end of a thread's previous dial to its wait for a slot (the claim transaction)
    wait    _wait_for_slot: the limiter's round trip and the sleep until the slot (slots given up included)
    create  the provider request (the twilio client)
    record  the rest of dial_claimed: the transaction that records the answer
    """

    def __init__(self, deps):
        self.deps = deps
        self.lock = threading.Lock()
        self.local = threading.local()
        self.samples: list[tuple] = []  # (claim or None, wait, create, record)
        self.reserves = 0
        self.waits = 0
        self.slots: list[tuple[float, float]] = []  # (when each reserved slot falls, the wait the limiter gave)

    def __enter__(self):
        from scfm.services import dialing

        self.dialing = dialing
        self.saved = (dialing._wait_for_slot, dialing.dial_claimed)
        original_wait, original_dial = self.saved
        provider, limiter = self.deps.provider, self.deps.limiter
        original_create, original_reserve = provider.create_call, limiter.reserve
        local, probe = self.local, self

        def wait_for_slot(limiter_, name, per_second):
            started = time.perf_counter()
            last = getattr(local, "last", None)
            local.claim = started - last if last is not None else None
            try:
                return original_wait(limiter_, name, per_second)
            finally:
                local.wait = time.perf_counter() - started
                with probe.lock:
                    probe.waits += 1

        def dial_claimed(*args, **kwargs):
            started = time.perf_counter()
            local.create = 0.0
            try:
                return original_dial(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                local.last = ended
                sample = (getattr(local, "claim", None), getattr(local, "wait", 0.0), local.create,
                          ended - started - local.create)
                local.claim = local.wait = None
                with probe.lock:
                    probe.samples.append(sample)

        def create_call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original_create(*args, **kwargs)
            finally:
                local.create = time.perf_counter() - started

        def reserve(*args, **kwargs):
            wait = original_reserve(*args, **kwargs)
            answered = time.perf_counter()
            with probe.lock:
                probe.reserves += 1
                probe.slots.append((answered + wait, wait))
            return wait

        dialing._wait_for_slot, dialing.dial_claimed = wait_for_slot, dial_claimed
        provider.create_call, limiter.reserve = create_call, reserve
        return self

    def __exit__(self, *exc):
        self.dialing._wait_for_slot, self.dialing.dial_claimed = self.saved
        del self.deps.provider.create_call, self.deps.limiter.reserve
        return False

    def report(self, threads: int, rate: float) -> str:
        def ms(values, q):
            return percentile(values, q) * 1000

        claims = [s[0] for s in self.samples if s[0] is not None]
        waits, creates, records = ([s[i] for s in self.samples] for i in (1, 2, 3))
        busy = [s[0] + s[2] + s[3] for s in self.samples if s[0] is not None]
        lines = [f"  per call, ms (p50 / p90 / max) over {len(self.samples)} dials:"]
        for name, values in (("claim transaction", claims), ("wait for the slot", waits),
                             ("provider request", creates), ("record transaction", records),
                             ("claim + request + record", busy)):
            if values:
                lines.append(f"    {name:<26} {ms(values, 50):6.1f} / {ms(values, 90):6.1f} / {max(values) * 1000:6.1f}")
        if busy:
            mean = sum(busy) / len(busy)
            capacity = threads / mean
            lines.append(f"  capacity of {threads} threads with no waiting: {threads} / {mean * 1000:.1f} ms mean = "
                         f"{capacity:.1f} calls/s; the slots come at {rate / SPACING_MARGIN:.1f}/s (rate / {SPACING_MARGIN})")
        given_up = self.reserves - self.waits
        interval = SPACING_MARGIN / rate
        # a reservation answered with no wait found the schedule behind: the slots since the previous one went
        # by unused (the limiter does not catch up, so that it never bursts)
        slots = sorted(self.slots)
        idle = sum(max(0.0, b - a - interval) for (a, _wait), (b, wait) in zip(slots, slots[1:]) if wait == 0)
        span = slots[-1][0] - slots[0][0] if len(slots) > 1 else 0.0
        lines.append(f"  limiter: {self.reserves} slots reserved for {self.waits} dials: {given_up} given up "
                     f"(woken more than 10 ms late, MAX_SLOT_LATENESS), {given_up * interval / span * 100 if span else 0:.1f}% "
                     f"of the run's slots")
        lines.append(f"  limiter idle (no thread had reserved the next slot, so it went by unused): {idle:.2f}s of "
                     f"{span:.2f}s = {idle / span * 100 if span else 0:.1f}% of the slots")
        return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    code = 1
    bench = None
    api_port = free_port()
    provider_ports = [free_port() for _ in range(len(args.rates) + 2)]  # each rate, and two diagnosis runs
    extra_env = {"PUBLIC_URL": f"http://127.0.0.1:{api_port}", "SCFM_MAX_CALLS_PER_SECOND": str(max(args.rates)),
                 "SCFM_ALLOWED_PROVIDER_URLS": " ".join(f"http://127.0.0.1:{port}" for port in provider_ports)}
    try:
        with throwaway_env("dialing", keep=args.keep, extra_env=extra_env) as env:
            with processes(env.child_env(**extra_env)) as procs:
                bench = Bench(env, procs, args, api_port, provider_ports)
                try:
                    bench.run()
                finally:
                    bench.close()
        print()
        print(summary(f"dialing against the fake provider ({args.workers} `scfm worker` processes, "
                      f"~{args.seconds:g}s of calls per rate)", bench.results), flush=True)
        code = 0
    except (KeyboardInterrupt, SystemExit):
        progress("interrupted")
        code = 130
    except BenchError as error:
        progress(f"failed: {error}")
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", type=lambda text: [float(x) for x in text.split(",")], default=[1.0, 10.0, 100.0],
                        metavar="R,R,...", help="calls per second to try (default 1,10,100)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="contacts = rate x this: about how long each rate dials (default 30)")
    parser.add_argument("--workers", type=int, default=2, help="`scfm worker` processes (default 2)")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="the in-process diagnosis: when a rate >= 10/s falls short (auto, the default), "
                             "always (at the highest rate), or never")
    parser.add_argument("--profile-seconds", type=float, default=8.0,
                        help="about how long each run of the diagnosis dials (default 8)")
    parser.add_argument("--what-if-threads", type=int, default=10, metavar="N",
                        help="in the diagnosis, also dial with N threads (DialingPolicy.concurrency patched "
                             "in this process; default 10); 0, or the number the rate already gets, skips it")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
