"""End-to-end capacity: the highest rate at which one machine dials with every status callback ingested.

The real cluster (`scfm serve` under gunicorn, `scfm worker`s, one `scfm dialer`, `scfm scheduler`) and the
fake provider of tests/support in a process of its own (`python -m bench.capacity`), which enforces the
account's rate and plays the far end of each call, sending the signed status callbacks the dialer asks for
from PROVIDER_THREADS threads: queued (initiated), ringing 0.3-1 s after the create, then in-progress and
completed (70%), busy or no-answer (25%), or failed without ringing (5%): 2 to 4 callbacks, 3.65 on average.

For each of --rates in turn, until one does not hold: an account at that rate with rate x --seconds calls,
queued by a PhoneCallQueue. A rate holds when
  - the steady rate at the provider is >= 95% of it, and no second (any sliding 1-second window) above it;
  - every callback was answered 2xx, 99% of them within 1 s;
  - nothing is left behind: every call ended in our database as it did at the provider, one event recorded
    per callback, no callback still to send.
Printed for each rate: calls/s, callbacks/s and their p99, and the cores used by each process. The server's
ceilings are raised through the environment (SCFM_MAX_CALLS_PER_SECOND, SCFM_SERVER_CALLS_PER_SECOND,
SCFM_MAX_CALLS_IN_FLIGHT), not in code.
"""
from __future__ import annotations

import argparse
import heapq
import json
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.common import (
    CpuMeter, Result, free_port, guarded, percentile, processes, progress, summary, throwaway_env,
)
from bench.dialing import TARGET_SHARE, Cluster, Figures
from scfm.domain.state_machines import REMOTE_STATUS_MAP, TERMINAL_PHONE_CALL_STATUSES

ANSWER_WITHIN, ANSWER_QUANTILE = 1.0, 99
PROVIDER_THREADS = 16
OUTCOMES = {"completed": 70, "busy": 10, "no-answer": 15, "failed": 5}


def far_end(rng: random.Random) -> list[tuple[float, str, int | None]]:
    """A call's status callbacks: (seconds after its create, CallStatus, CallDuration)."""
    outcome = rng.choices(list(OUTCOMES), list(OUTCOMES.values()))[0]
    ringing = rng.uniform(0.3, 1.0)
    steps = [(rng.uniform(0.05, 0.2), "queued", None)] + ([] if outcome == "failed" else [(ringing, "ringing", None)])
    if outcome == "completed":
        answered = ringing + rng.uniform(0.5, 1.5)
        return steps + [(answered, "in-progress", None), (answered + rng.uniform(1, 3), "completed", rng.randint(1, 60))]
    return steps + [(ringing + rng.uniform(0.5, 2.0), outcome, None)]


def serve_provider() -> None:
    """The provider process: tests/support's FakeProvider, every call it creates played out on schedule; GET on
    the report port answers its creates, callbacks (latency, status code), final statuses and what is pending."""
    from tests.support.fake_provider import FakeProvider

    parser = argparse.ArgumentParser()
    for name, kind in [("port", int), ("report-port", int), ("account", str), ("rate", float)]:
        parser.add_argument(f"--{name}", type=kind, required=True)
    args = parser.parse_args()
    sid, token = args.account.split(":", 1)
    provider = FakeProvider({sid: token}, rate_limit_per_second=args.rate, port=args.port).start()
    pool, rng, due, answers, finals = ThreadPoolExecutor(PROVIDER_THREADS), random.Random(1), [], [], Counter()
    seen = scheduled = 0

    def deliver(call_sid: str, status: str) -> None:
        started = time.monotonic()
        try:
            code = provider.send_status_callback(call_sid, status)[0]
        except OSError:  # refused, reset or timed out
            code = 0
        answers.append((time.monotonic() - started, code))

    class Report(BaseHTTPRequestHandler):
        def do_GET(self):
            creates = [{"at": c["at"], "status_code": c.get("status_code")} for c in list(provider.created_calls)]
            done = list(answers)
            body = json.dumps({"creates": creates, "answers": done, "finals": dict(finals),
                               "pending": scheduled - len(done)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    threading.Thread(target=ThreadingHTTPServer(("127.0.0.1", args.report_port), Report).serve_forever,
                     daemon=True).start()
    while True:
        while seen < len(provider.created_calls) and "status_code" in provider.created_calls[seen]:
            created = provider.created_calls[seen]
            seen += 1
            for after, status, duration in (far_end(rng) if created["status_code"] == 201 else []):
                heapq.heappush(due, (created["at"] + after, seen, created["sid"], status, duration))
                finals.update([status] if status in OUTCOMES else [])
                scheduled += 1
        while due and due[0][0] <= time.monotonic():
            _at, _n, call_sid, status, duration = heapq.heappop(due)
            provider.set_status(call_sid, status, duration)
            pool.submit(deliver, call_sid, status)
        time.sleep(0.005)


def run_rate(cluster: Cluster, rate: float, seconds: float) -> tuple[bool, list[Result]]:
    calls = round(rate * seconds)
    progress(f"{rate:g} calls/s: {calls} calls")
    provider = cluster.provider(rate, module="bench.capacity")
    tenant = cluster.account(calls, calls_per_second=rate, **provider.credentials())
    with CpuMeter(cluster.groups) as cpu:
        cluster.wait_finished(tenant, cluster.queue(tenant, {"type": "BatchOperation::PhoneCallQueue"}))
        cluster.wait_dialed([tenant.account_id], seconds)
        deadline = time.monotonic() + 30  # the last calls' callbacks: up to 6 s after their create, then queues
        while (report := provider.report())["pending"] and time.monotonic() < deadline:
            time.sleep(0.5)
    cluster.procs.stop(provider.process)
    figures = Figures(rate, calls, report["creates"])
    latencies, codes = [latency for latency, _code in report["answers"]], [code for _l, code in report["answers"]]
    late, refused = sum(1 for each in latencies if each > ANSWER_WITHIN), sum(1 for code in codes if code // 100 != 2)
    p99 = percentile(latencies, ANSWER_QUANTILE)
    with cluster.raw.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM phone_calls WHERE account_id = %s GROUP BY 1", (tenant.account_id,))
        ours = dict(cur.fetchall())
        cur.execute("SELECT count(*) FROM remote_phone_call_events WHERE account_id = %s", (tenant.account_id,))
        events = cur.fetchone()[0]
    cluster.raw.commit()
    theirs = Counter({REMOTE_STATUS_MAP[status].value: count for status, count in report["finals"].items()})
    left = {status: count for status, count in ours.items() if status not in TERMINAL_PHONE_CALL_STATUSES}
    behind = bool(left) or ours != theirs or events != len(codes) - refused or report["pending"]
    holds = (figures.share >= TARGET_SHARE and figures.busiest <= rate and not refused and p99 <= ANSWER_WITHIN
             and not behind)
    print(f"capacity {rate:g}/s: {'holds' if holds else 'does NOT hold'}: {figures.steady:.1f} calls/s "
          f"({figures.share:.1%}), busiest second {figures.busiest}; {len(codes)} callbacks "
          f"({len(codes) / cpu.seconds:.0f}/s), {refused} not 2xx, p99 {p99 * 1000:.0f} ms, {late} over "
          f"{ANSWER_WITHIN:g} s; ours {ours}, the provider's {dict(theirs)}, {events} events, {report['pending']} "
          f"callbacks pending\n  {cpu.line()}", flush=True)
    return holds, [
        figures.result(f"capacity {rate:g}/s: dialing"),
        Result(f"capacity {rate:g}/s: callbacks", f"{len(codes)} ({len(codes) / max(1, calls):.2f} a call), p99 "
               f"{p99 * 1000:.0f} ms", f"2xx, p{ANSWER_QUANTILE} <= {ANSWER_WITHIN:g} s",
               not refused and p99 <= ANSWER_WITHIN, f"{refused} not 2xx, {late} over {ANSWER_WITHIN:g} s"),
        Result(f"capacity {rate:g}/s: left behind", "nothing" if not behind else f"{left} open, {events} events",
               "nothing", not behind, f"{sum(ours.values())} calls ended as at the provider: {ours == theirs}"),
        Result(f"capacity {rate:g}/s: CPU", f"machine {cpu.machine:.2f} cores", note=", ".join(
            f"{label} {cores:.2f}" for label, cores in sorted(cpu.cores.items(), key=lambda kv: -kv[1])))]


def main(args: argparse.Namespace) -> int:
    api_port, ports = free_port(), [free_port() for _ in args.rates]
    extra_env = {"PUBLIC_URL": f"http://127.0.0.1:{api_port}", "SCFM_MAX_CALLS_PER_SECOND": str(max(args.rates)),
                 "SCFM_SERVER_CALLS_PER_SECOND": str(max(args.rates)), "SCFM_MAX_CALLS_IN_FLIGHT": "100000",
                 "SCFM_ALLOWED_PROVIDER_URLS": " ".join(f"http://127.0.0.1:{port}" for port in ports)}

    def body():
        results, held = [], []
        with throwaway_env("capacity", keep=args.keep, extra_env=extra_env) as env, \
                processes(env.child_env()) as procs:
            cluster = Cluster(env, procs, api_port, ports, args.workers, args.api_workers)
            for rate in args.rates:
                holds, figures = run_rate(cluster, rate, args.seconds)
                results += figures
                if not holds:
                    break
                held.append(rate)
            cluster.raw.close()
        results.insert(0, Result("capacity: the highest rate that held", f"{max(held, default=0):g} calls/s",
                                 ">= 200 calls/s", max(held, default=0) >= 200, f"of {args.rates}"))
        print("\n" + summary(f"end-to-end capacity ({args.api_workers} gunicorn workers x 4 threads, {args.workers} "
                             f"`scfm worker`s, one `scfm dialer`, {args.seconds:g}s of calls per rate)", results))

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", type=lambda text: [float(x) for x in text.split(",")], metavar="R,R,...",
                        default=[50.0, 100.0, 150.0, 200.0, 250.0], help="calls/s to step through (default 50..250)")
    parser.add_argument("--seconds", type=float, default=60.0, help="calls = rate x this (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="`scfm worker` processes (default 2)")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")


if __name__ == "__main__":
    serve_provider()
