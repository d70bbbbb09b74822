"""Webhook ingest: signed provider status callbacks per second through the real app under gunicorn.

Starts the API (`scfm serve --workers 2`, 4 threads each, PUBLIC_URL=http://127.0.0.1:PORT) on a throwaway
database and queue, with one account whose somleng_account_sid/somleng_auth_token are set and --calls phone
calls (remotely queued, remote_call_id set; inserted with SQL). Then --processes load-generator processes of
--threads threads each, every thread on its own kept-alive HTTP connection, POST status callbacks for
--seconds, signed as the provider signs them (RequestValidator(token).compute_signature over the public URL
with ?phone_call_id=ID and the form: CallSid, AccountSid, From, To, CallStatus, Direction=outbound-api, ...).
Each call gets ringing, then in-progress, then completed, then further completed ones if the run goes on.

Printed: `webhook ingest: X signed requests/s (target 500)` (201 answers per second), p50/p99 latency, the
status codes (every one should be 201), the events written (one row per 201), and where the CPU went.
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing
import threading
import time
import urllib.parse
from email.utils import formatdate

from bench.common import (
    BenchError, CpuMeter, Result, admin_api, free_port, new_account, percentile, processes, progress, summary,
    throwaway_env,
)

TARGET_PER_SECOND = 500
STATUSES = ("ringing", "in-progress", "completed")
PATH = "/api/remote_phone_call_events"


def load(worker: int, workers: int, port: int, sid: str, token: str, calls: list[tuple[int, str, str]],
         start_at: float, seconds: float, queue) -> None:
    """One load-generator thread's share of the requests: index worker, worker + workers, ... (run in a
    spawned process, see generate)."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(token)
    public = f"http://127.0.0.1:{port}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    index = worker
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    while time.time() < end:
        call_id, call_sid, msisdn = calls[index % len(calls)]
        status = STATUSES[min(index // len(calls), len(STATUSES) - 1)]
        params = {
            "CallSid": call_sid, "AccountSid": sid, "From": "1234", "To": msisdn, "Called": msisdn, "Caller": "1234",
            "CallStatus": status, "Direction": "outbound-api", "ApiVersion": "2010-04-01",
            "Timestamp": formatdate(usegmt=True), "CallbackSource": "call-progress-events",
            "SequenceNumber": str(index // len(calls)),
        }
        if status == "completed":
            params["CallDuration"] = "12"
        path = f"{PATH}?phone_call_id={call_id}"
        headers = {"X-Twilio-Signature": validator.compute_signature(public + path, params),
                   "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
        body = urllib.parse.urlencode(params)
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read()
            code = response.status
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            code, text = 0, repr(error).encode()
        latencies.append(time.perf_counter() - started)
        statuses[code] = statuses.get(code, 0) + 1
        if code != 201 and len(errors) < 3:
            errors.append(f"{code}: {text[:200]!r}")
        index += workers
    connection.close()
    queue.put((latencies, statuses, errors))


def generate(process: int, threads: int, total: int, port: int, sid: str, token: str, calls, start_at: float,
             seconds: float, queue) -> None:
    """A load-generator process: `threads` threads, each with its own connection; `total` threads in all.
    Sends its CPU seconds over the run (its start-up excluded) as one more item on the queue."""
    while time.time() < start_at:
        time.sleep(0.001)
    cpu = time.process_time()
    workers = [threading.Thread(target=load, args=(process * threads + thread, total, port, sid, token, calls,
                                                   start_at, seconds, queue))
               for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put(("cpu", time.process_time() - cpu))


def run(args: argparse.Namespace) -> list[Result]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with throwaway_env("webhook", keep=args.keep, extra_env={"PUBLIC_URL": public}) as env:
        with processes(env.child_env(PUBLIC_URL=public)) as procs:
            api = procs.api(port, workers=args.api_workers)
            groups = {api.popen.pid: "api (gunicorn)"}
            admin = admin_api(env.deps)
            sid, token = "AC" + "5" * 32, "bench-webhook-token"
            account_id, _token = new_account(admin, platform_provider_name="somleng", somleng_account_sid=sid,
                                             somleng_auth_token=token)
            raw = env.connect()
            try:
                with raw.cursor() as cur:
                    cur.execute("INSERT INTO contacts (account_id, msisdn) SELECT %s, '+85512' || lpad(n::text, 6, '0') "
                                "FROM generate_series(1, %s) AS n", (account_id, args.calls))
                    cur.execute(
                        "INSERT INTO phone_calls (account_id, contact_id, status, msisdn, remote_call_id, remote_status, "
                        "remote_direction, remotely_queued_at, queued_at) "
                        "SELECT account_id, id, 'remotely_queued', msisdn, 'CA' || md5(id::text), 'queued', 'outbound-api', "
                        "now(), now() FROM contacts WHERE account_id = %s ORDER BY id RETURNING id, remote_call_id, msisdn",
                        (account_id,))
                    calls = [tuple(row) for row in cur.fetchall()]
                    cur.execute("ANALYZE contacts; ANALYZE phone_calls")
                raw.commit()
                progress(f"api on :{port} ({args.api_workers} gunicorn workers x 4 threads), {len(calls)} remotely "
                         f"queued calls; {args.processes} load processes x {args.threads} threads for {args.seconds:g}s")

                context = multiprocessing.get_context("spawn")
                total = args.processes * args.threads
                queue = context.Queue()
                start_at = time.time() + 2.0 + 0.5 * args.processes  # once every process has started
                workers = [context.Process(target=generate, args=(p, args.threads, total, port, sid, token, calls, start_at,
                                                                   args.seconds, queue), daemon=True)
                           for p in range(args.processes)]
                for worker in workers:
                    worker.start()
                try:
                    while time.time() < start_at:
                        time.sleep(0.01)
                    with CpuMeter(groups) as cpu:
                        items = [queue.get(timeout=args.seconds + 60) for _ in range(total + args.processes)]
                        for worker in workers:
                            worker.join(30)
                finally:
                    for worker in workers:
                        if worker.is_alive():
                            worker.kill()
                            worker.join(5)
                procs.check_alive()
                outcomes = [item for item in items if item[0] != "cpu"]
                load_cpu = sum(item[1] for item in items if item[0] == "cpu")
                latencies = [value for outcome in outcomes for value in outcome[0]]
                statuses: dict[int, int] = {}
                for outcome in outcomes:
                    for code, count in outcome[1].items():
                        statuses[code] = statuses.get(code, 0) + count
                errors = [error for outcome in outcomes for error in outcome[2]][:5]
                with raw.cursor() as cur:
                    cur.execute("SELECT count(*), count(DISTINCT phone_call_id) FROM remote_phone_call_events "
                                "WHERE account_id = %s", (account_id,))
                    events, event_calls = cur.fetchone()
                    cur.execute("SELECT status, count(*) FROM phone_calls WHERE account_id = %s GROUP BY status "
                                "ORDER BY status", (account_id,))
                    call_statuses = dict(cur.fetchall())
                raw.commit()
            finally:
                raw.close()

    created = statuses.get(201, 0)
    per_second = created / args.seconds
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    print(f"webhook ingest: {per_second:.0f} signed requests/s (target {TARGET_PER_SECOND})", flush=True)
    print(f"  latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms over {len(latencies)} "
          f"requests from {total} connections ({args.processes} processes x {args.threads} threads)", flush=True)
    codes = ", ".join(f"{code or 'connection error'}: {count}" for code, count in sorted(statuses.items()))
    all_201 = statuses.get(201, 0) == len(latencies)
    print(f"  answers: {codes} ({'every request got 201' if all_201 else 'NOT every request got 201'})", flush=True)
    for error in errors:
        print(f"    {error}", flush=True)
    print(f"  events written: {events} rows for {event_calls} calls "
          f"({'one per 201' if events == created else f'expected {created}'}); call statuses now {call_statuses}",
          flush=True)
    print(f"  {cpu.line()}; load generator {load_cpu / args.seconds:.2f}", flush=True)
    return [
        Result("webhook ingest", f"{per_second:.0f} req/s", f">= {TARGET_PER_SECOND} req/s",
               per_second >= TARGET_PER_SECOND, f"{len(latencies)} requests in {args.seconds:g}s"),
        Result("webhook latency", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", "-", None,
               f"{total} concurrent connections"),
        Result("webhook correctness", f"{created}/{len(latencies)} x 201, {events} events", "all 201, one event each",
               all_201 and events == created),
    ]


def main(args: argparse.Namespace) -> int:
    try:
        results = run(args)
    except (KeyboardInterrupt, SystemExit):
        progress("interrupted")
        return 130
    except BenchError as error:
        progress(f"failed: {error}")
        return 1
    print()
    print(summary("webhook ingest through gunicorn", results), flush=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to send (default 15)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads (connections) per process (default 8)")
    parser.add_argument("--calls", type=int, default=5000, help="remotely queued phone calls to report on (default 5000)")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
