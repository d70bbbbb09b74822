"""End-to-end capacity: the highest rate at which one machine dials with every status callback ingested.

The cluster of `dialing`, and tests/support's fake provider in a process of its own (`python -m bench.capacity`)
that plays the far end of each call: 2 to 4 signed status callbacks as the dialer asks for them (see far_end). For each of --rates (default 50 to 250 calls/s): an account at that rate with rate x --seconds
calls queued by a PhoneCallQueue. A rate holds when
  - the steady rate at the provider is >= 95% of it, and no second (any sliding 1-second window) above it;
  - every callback was answered 2xx, 99% of them within 1 s;
  - nothing is left behind: every call ended in our database as it did at the provider, one event recorded
    per callback, no callback still to send.
Printed for each rate: calls/s, callbacks/s and their p99, the cores used by each process; then the highest
rate that held (target 200 calls/s). Every rate is tried: on a shared machine one may fail and the next hold.
`--rates 1,10,100 --seconds 20` measures the dialer's accuracy at low rates (>= 95% is the target from 10/s on).
The server's ceilings are raised through the environment (SCFM_MAX_CALLS_PER_SECOND, SCFM_MAX_CALLS_IN_FLIGHT).
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import queue
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.common import CpuMeter, Result, guarded, percentile, progress, summary
from bench.dialing import Cluster, Figures, add_cluster_arguments, with_cluster
from scfm.domain.state_machines import REMOTE_STATUS_MAP, TERMINAL_PHONE_CALL_STATUSES
from tests.support.fake_provider import FakeProvider
from tests.support.provider_process import phone_call_id

TARGET, ANSWER_WITHIN = 200, 1.0  # calls/s; seconds for 99% of the callbacks
PROVIDER_THREADS = 16
# The provider sends its callbacks on kept-alive connections (one per sending thread), and answers the dialer's
# creates on kept-alive connections, as Twilio does (2.0 ms of the provider's CPU a call instead of 2.8 at 100
# calls/s, 1.8 instead of 3.0 at 200/s). It stamps each create with the kernel's arrival time: see docs/behaviour.md.
KEEP_ALIVE = True
OUTCOMES = {"completed": 70, "busy": 10, "no-answer": 15, "failed": 5}


def far_end(rng: random.Random) -> list[tuple[float, str, int | None]]:
    """A call's status callbacks, (seconds after its create, CallStatus, CallDuration): queued (initiated), ringing,
    then in-progress and completed (70%), busy or no-answer (25%), or failed without ringing (5%)."""
    outcome, ringing = rng.choices(list(OUTCOMES), list(OUTCOMES.values()))[0], rng.uniform(0.3, 1.0)
    steps = [(rng.uniform(0.05, 0.2), "queued", None)] + ([] if outcome == "failed" else [(ringing, "ringing", None)])
    if outcome == "completed":
        answered = ringing + rng.uniform(0.5, 1.5)
        return steps + [(answered, "in-progress", None), (answered + rng.uniform(1, 3), "completed", rng.randint(1, 60))]
    return steps + [(ringing + rng.uniform(0.5, 2.0), outcome, None)]


def serve_provider() -> None:
    """The provider process: tests/support's FakeProvider, every call it creates played out on schedule (a heap
    that one thread waits on until its first callback is due) by PROVIDER_THREADS sending threads; a GET on the
    report port answers its creates, the callbacks' (latency, status code), the calls' final statuses and how
    many callbacks (or calls not yet looked at) are still to send."""
    parser = argparse.ArgumentParser()
    for name, kind in [("port", int), ("report-port", int), ("account", str), ("rate", float)]:
        parser.add_argument(f"--{name}", type=kind, required=True)
    args = parser.parse_args()
    sid, token = args.account.split(":", 1)
    rng, due, answers, finals = random.Random(1), [], [], Counter()
    ready: queue.SimpleQueue = queue.SimpleQueue()  # callbacks due, for the sending threads
    schedule = threading.Condition()
    seen = scheduled = 0

    class FarEnd(FakeProvider):
        def _create_locked(self, account, auth, params, created):
            """A create (under the provider's lock), then its call's callbacks on the schedule."""
            nonlocal seen, scheduled
            answer = super()._create_locked(account, auth, params, created)
            with schedule:
                seen += 1
                first = due[0][0] if due else None
                for after, status, duration in (far_end(rng) if answer[0] == 201 else []):
                    heapq.heappush(due, (created["at"] + after, seen, created["sid"], status, duration))
                    finals.update([status] if status in OUTCOMES else [])
                    scheduled += 1
                if due and (first is None or due[0][0] < first):
                    schedule.notify()
            return answer

    provider = FarEnd({sid: token}, rate_limit_per_second=args.rate, port=args.port, keep_alive=KEEP_ALIVE,
                      callback_keep_alive=True).start()

    def send() -> None:
        while True:
            call_sid, status = ready.get()
            started = time.monotonic()
            try:
                code = provider.send_status_callback(call_sid, status)[0]
            except OSError:  # refused, reset or timed out
                code = 0
            answers.append((time.monotonic() - started, code))

    for _ in range(PROVIDER_THREADS):
        threading.Thread(target=send, daemon=True).start()

    reported: list[dict] = []
    reporting = threading.Lock()

    class Report(BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def do_GET(self):
            with schedule:
                done, looked_at, to_send, ended = list(answers), seen, scheduled, dict(finals)
            with reporting:  # each create's entry made once (its status code is known once it is listed)
                with provider._lock:
                    new = provider.created_calls[len(reported):]
                reported.extend({"at": c["at"], "status_code": c.get("status_code"),
                                 "phone_call_id": phone_call_id(c["params"])} for c in new)
                creates = list(reported)
            body = json.dumps({"creates": creates, "answers": done, "finals": ended,
                               "pending": to_send - len(done) + len(creates) - looked_at}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", args.report_port), Report)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with schedule:
        while True:
            now, on_time = time.monotonic(), []
            while due and due[0][0] <= now:
                on_time.append(heapq.heappop(due))
            if on_time:
                schedule.release()  # the calls' statuses are set as their callbacks fall due, not as they are sent
                try:
                    for _at, _seen, call_sid, status, duration in on_time:
                        provider.set_status(call_sid, status, duration)
                        ready.put((call_sid, status))
                finally:
                    schedule.acquire()
            else:
                schedule.wait(due[0][0] - now if due else None)


def run_rate(cluster: Cluster, rate: float, seconds: float) -> tuple[bool, list[Result]]:
    """One account at `rate`: whether it held (the rate, every callback answered in time, nothing left
    behind), and its figures."""
    calls = max(2, round(rate * seconds))
    progress(f"capacity {rate:g}/s: {calls} calls")
    provider = cluster.provider(rate, module="bench.capacity")
    tenant = cluster.account(calls, calls_per_second=rate, **provider.credentials())
    with CpuMeter(cluster.groups) as cpu:
        cluster.dial([tenant], seconds)
        deadline = time.monotonic() + 30  # the last calls' callbacks come up to 6 s after their create
        while (report := provider.report())["pending"] and time.monotonic() < deadline:
            time.sleep(0.5)
    tenant.api.post(f"/api/callouts/{tenant.callout_id}/callout_events", {"event": "stop"})  # what is left: held
    cluster.procs.stop(provider.process)
    latencies, codes = [latency for latency, _ in report["answers"]], [code for _, code in report["answers"]]
    refused, late = sum(code // 100 != 2 for code in codes), sum(latency > ANSWER_WITHIN for latency in latencies)
    p99 = percentile(latencies, 99)
    ours = dict(cluster.rows("SELECT status, count(*) FROM phone_calls WHERE account_id = %s GROUP BY 1",
                             (tenant.account_id,)))
    events = cluster.rows("SELECT count(*) FROM remote_phone_call_events WHERE account_id = %s",
                          (tenant.account_id,))[0][0]
    theirs = {REMOTE_STATUS_MAP[status].value: count for status, count in report["finals"].items()}
    behind = {status: count for status, count in ours.items() if status not in TERMINAL_PHONE_CALL_STATUSES}
    # CPU seconds a call of our processes (PostgreSQL's backends included), whatever else the machine ran
    per_call = sum(cores for name, cores in cpu.cores.items() if name not in ("other", "this process")) \
        * cpu.seconds / calls
    left = behind or ours != theirs or events != len(codes) - refused or report["pending"]
    print(f"capacity {rate:g}/s: {len(codes)} callbacks ({len(codes) / cpu.seconds:.0f}/s), {refused} not 2xx, "
          f"p99 {p99 * 1000:.0f} ms; calls here {ours}, at the provider {theirs}; {events} events, "
          f"{report['pending']} callbacks not sent\n  {cpu.line()}", flush=True)
    results = [
        Figures(rate, calls, report["creates"]).result(f"capacity {rate:g}/s"),
        Result(f"capacity {rate:g}/s: callbacks", f"{len(codes)} ({len(codes) / calls:.2f} a call), p99 "
               f"{p99 * 1000:.0f} ms", f"2xx, p99 <= {ANSWER_WITHIN:g} s", not refused and p99 <= ANSWER_WITHIN,
               f"not 2xx: {dict(Counter(code for code in codes if code // 100 != 2))}, {late} over "
               f"{ANSWER_WITHIN:g} s"),
        Result(f"capacity {rate:g}/s: left behind", f"{behind} open, {events} events" if left else "nothing",
               "nothing", not left, f"{sum(ours.values())} calls ended as at the provider: {ours == theirs}"),
        Result(f"capacity {rate:g}/s: CPU", f"{per_call * 1000:.1f} ms a call (ours)", note=f"the machine's "
               f"{os.cpu_count()} cores at that cost: {os.cpu_count() / per_call:.0f} calls/s; {cpu.shares()}")]
    return all(result.meets is not False for result in results), results


def main(args: argparse.Namespace) -> int:
    def measure(cluster: Cluster, _server: dict) -> list[Result]:
        steps = [run_rate(cluster, rate, args.seconds) for rate in args.rates]
        held = max([rate for rate, (holds, _results) in zip(args.rates, steps) if holds], default=0)
        return [Result("capacity: the highest rate that held", f"{held:g} calls/s", f">= {TARGET} calls/s",
                       held >= TARGET, f"of {', '.join(f'{rate:g}' for rate in args.rates)}"),
                *(each for _holds, results in steps for each in results)]

    return guarded(lambda: print("\n" + summary(
        f"end-to-end capacity ({args.api_workers} API workers x 4 threads, {args.workers} `scfm worker`s, one "
        f"`scfm dialer`, {args.seconds:g}s of calls per rate)",
        with_cluster("capacity", args, len(args.rates), max(args.rates), max(args.rates), measure)), flush=True))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", type=lambda text: [float(x) for x in text.split(",")], metavar="R,R,...",
                        default=[50.0, 100.0, 150.0, 200.0, 250.0], help="calls/s to try (default 50,100,150,200,250)")
    parser.add_argument("--seconds", type=float, default=60.0, help="calls = rate x this (default 60)")
    add_cluster_arguments(parser)


if __name__ == "__main__":
    serve_provider()
