"""Webhook ingest: signed status callbacks through the app under gunicorn, and their CPU against the same work
by hand.

One account with somleng credentials and --calls remotely queued calls (inserted by SQL). --processes load
generators of --threads threads, each on a kept-alive connection, POST callbacks for --seconds, signed as the
provider signs them: ringing, in-progress, then completed ones. Printed: signed requests/s (target 500),
p50/p99 latency, whether each answer was 201 with one event, and where the CPU went. Then --in-process
callbacks of other calls through the Flask app in this process, one at a time: CPU, wall time and statements
per request, against the same work by hand (the signature checked, then the account found, the call updated
and the event inserted in one transaction, with psycopg2). Target: CPU <= 2x by hand.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from email.utils import formatdate

from bench.common import (
    BenchError, CpuMeter, Result, admin_api, free_port, guarded, new_account, percentile, processes, progress,
    summary, throwaway_env, versus,
)
from scfm.domain.state_machines import CalloutStatus, PhoneCallStatus

TARGET_PER_SECOND, CPU_TARGET = 500, 2.0
STATUSES = ("ringing", "in-progress", "completed")
SID, TOKEN = "AC" + "5" * 32, "bench-webhook-token"


def callback(public: str, call: tuple, status: str, sequence: int = 0) -> tuple[str, dict, str]:
    """(path, form, signature) of one status callback of `call` (id, sid, msisdn) as the provider sends it."""
    from twilio.request_validator import RequestValidator

    call_id, call_sid, msisdn = call
    params = {"CallSid": call_sid, "AccountSid": SID, "From": "1234", "To": msisdn, "Called": msisdn,
              "Caller": "1234", "CallStatus": status, "Direction": "outbound-api", "ApiVersion": "2010-04-01",
              "Timestamp": formatdate(usegmt=True), "CallbackSource": "call-progress-events",
              "SequenceNumber": str(sequence), **({"CallDuration": "12"} if status == "completed" else {})}
    path = f"/api/remote_phone_call_events?phone_call_id={call_id}"
    return path, params, RequestValidator(TOKEN).compute_signature(public + path, params)


def send(index: int, step: int, port: int, calls: list, until: float) -> tuple:
    """One load-generator thread: the callbacks index, index + step, ... on one connection until `until`:
    (latencies, status codes, errors)."""
    connection, latencies, codes, errors = http.client.HTTPConnection("127.0.0.1", port, timeout=30), [], Counter(), []
    while time.time() < until:
        rounds = index // len(calls)
        path, params, signature = callback(f"http://127.0.0.1:{port}", calls[index % len(calls)],
                                           STATUSES[min(rounds, len(STATUSES) - 1)], rounds)
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=urllib.parse.urlencode(params), headers={
                "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
            response = connection.getresponse()
            code, text = response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            code, text = 0, repr(error).encode()
        latencies.append(time.perf_counter() - started)
        codes[code] += 1
        if code != 201 and len(errors) < 3:
            errors.append(f"{code}: {text[:200]!r}")
        index += step
    connection.close()
    return latencies, codes, errors


def generate(process: int, threads: int, step: int, port: int, calls: list, start_at: float, seconds: float):
    """A load-generator process: `threads` threads from `start_at`; their outcomes, merged, and its CPU."""
    time.sleep(max(0.0, start_at - time.time()))
    cpu = time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(lambda thread: send(process * threads + thread, step, port, calls,
                                                     start_at + seconds), range(threads)))
    return ([x for o in outcomes for x in o[0]], sum((o[1] for o in outcomes), Counter()),
            [x for o in outcomes for x in o[2]], time.process_time() - cpu)


def in_process(env, public: str, calls: list) -> tuple[float, float, float]:
    """Ringing callbacks through the Flask app in this process, one at a time, after ten to warm up:
    (wall seconds, CPU seconds, statements) per request."""
    from sqlalchemy import event

    from scfm.entrypoints.app import create_app

    client, seen = create_app(env.deps).test_client(), []
    requests_ = [callback(public, call, "ringing") for call in calls]

    def post(batch):
        for path, params, signature in batch:
            response = client.post(path, data=params, headers={"X-Twilio-Signature": signature})
            if response.status_code != 201:
                raise BenchError(f"in-process webhook: {response.status_code} {response.get_data(as_text=True)[:200]}")

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    post(requests_[:10])
    event.listen(env.deps.engine, "before_cursor_execute", record)
    started, cpu = time.perf_counter(), time.process_time()
    post(requests_[10:])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    event.remove(env.deps.engine, "before_cursor_execute", record)
    return wall / (len(calls) - 10), cpu / (len(calls) - 10), len(seen) / (len(calls) - 10)


def by_hand(raw, public: str, calls: list) -> tuple[float, float]:
    """The same work by hand, completed callbacks of the same calls: (wall, CPU seconds) per request."""
    from twilio.request_validator import RequestValidator

    requests_ = [callback(public, call, "completed") for call in calls]
    started, cpu = time.perf_counter(), time.process_time()
    with raw.cursor() as cur:
        for path, params, signature in requests_:
            cur.execute("SELECT id, somleng_auth_token FROM accounts WHERE somleng_account_sid = %s "
                        "OR twilio_account_sid = %s", (params["AccountSid"], params["AccountSid"]))
            account_id, token = cur.fetchone()
            if not RequestValidator(token).validate(public + path, params, signature):
                raise BenchError("by hand: bad signature")
            cur.execute("UPDATE phone_calls SET status = %s, remote_status = %s, duration = %s, "
                        "remote_status_updated_at = now(), updated_at = now() "
                        "WHERE account_id = %s AND remote_call_id = %s RETURNING id",
                        (PhoneCallStatus.COMPLETED.value, params["CallStatus"], int(params["CallDuration"]),
                         account_id, params["CallSid"]))
            cur.execute("INSERT INTO remote_phone_call_events (account_id, phone_call_id, details, remote_call_id, "
                        "remote_direction, call_flow_logic) VALUES (%s, %s, %s::jsonb, %s, %s, %s) RETURNING id",
                        (account_id, cur.fetchone()[0], json.dumps(params), params["CallSid"], params["Direction"],
                         "CallFlowLogic::HelloWorld"))
            cur.fetchone()
            raw.commit()
    return (time.perf_counter() - started) / len(requests_), (time.process_time() - cpu) / len(requests_)


def insert_calls(raw, account_id: int, n: int) -> list[tuple]:
    """n calls of a running callout, remotely queued, as the dialer leaves them: [(id, remote sid, msisdn)]."""
    with raw.cursor() as cur:
        cur.execute("INSERT INTO contacts (account_id, msisdn) SELECT %s, '+85512' || lpad(n::text, 6, '0') "
                    "FROM generate_series(1, %s) AS n", (account_id, n))
        cur.execute("INSERT INTO callouts (account_id, status) VALUES (%s, %s) RETURNING id",
                    (account_id, CalloutStatus.RUNNING.value))
        cur.execute("INSERT INTO callout_participations (account_id, callout_id, contact_id, msisdn) "
                    "SELECT account_id, %s, id, msisdn FROM contacts WHERE account_id = %s",
                    (cur.fetchone()[0], account_id))
        cur.execute(
            "INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, status, msisdn, "
            "remote_call_id, remote_status, remote_direction, remotely_queued_at, queued_at, dial_attempts) "
            "SELECT account_id, id, contact_id, %s, msisdn, 'CA' || md5(id::text), 'queued', "
            "'outbound-api', now(), now(), 1 FROM callout_participations WHERE account_id = %s "
            "RETURNING id, remote_call_id, msisdn", (PhoneCallStatus.REMOTELY_QUEUED.value, account_id))
        calls = sorted(tuple(row) for row in cur.fetchall())
        cur.execute("ANALYZE contacts; ANALYZE callout_participations; ANALYZE phone_calls")
    raw.commit()
    return calls


def run(env, procs, args, port: int) -> list[Result]:
    public = f"http://127.0.0.1:{port}"
    groups = {procs.api(port, workers=args.api_workers).popen.pid: "api (gunicorn)"}
    account_id, _token = new_account(admin_api(env.deps), platform_provider_name="somleng",
                                     somleng_account_sid=SID, somleng_auth_token=TOKEN)
    with closing(env.connect()) as raw:
        calls = insert_calls(raw, account_id, args.calls + args.in_process)
        progress(f"api on :{port} ({args.api_workers} gunicorn workers x 4 threads), {args.calls} remotely queued "
                 f"calls; {args.processes} load processes x {args.threads} threads for {args.seconds:g}s")
        start_at = time.time() + 2.0 + 0.5 * args.processes  # once every process has started
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:  # its end terminates them
            pending = [pool.apply_async(generate, (p, args.threads, args.processes * args.threads, port,
                                                   calls[:args.calls], start_at, args.seconds))
                       for p in range(args.processes)]
            time.sleep(max(0.0, start_at - time.time()))
            with CpuMeter(groups) as cpu:
                outcomes = [each.get(timeout=args.seconds + 60) for each in pending]
        procs.check_alive()
        latencies = [x for o in outcomes for x in o[0]]
        codes, errors = sum((o[1] for o in outcomes), Counter()), [x for o in outcomes for x in o[2]][:5]
        with raw.cursor() as cur:
            cur.execute("SELECT count(*) FROM remote_phone_call_events WHERE account_id = %s", (account_id,))
            events = cur.fetchone()[0]
        raw.commit()
        created, p50, p99 = codes.get(201, 0), percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        per_second = created / cpu.seconds
        print(f"webhook ingest: {per_second:.0f} signed requests/s (target {TARGET_PER_SECOND}), p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms over {len(latencies)} requests; answers "
              + ", ".join(f"{code or 'connection error'}: {count}" for code, count in sorted(codes.items()))
              + f"; {events} events written", *errors, sep="\n    " if errors else "", flush=True)
        print(f"  {cpu.line()}; load generators {sum(o[3] for o in outcomes) / cpu.seconds:.2f}", flush=True)
        spare = calls[args.calls:]
        wall, cpu_per_request, statements = in_process(env, public, spare)
        hand_wall, hand_cpu = by_hand(raw, public, spare[10:])
    return [
        Result("webhook ingest through gunicorn", f"{per_second:.0f} req/s (p50 {p50:.1f} ms, p99 {p99:.1f} ms)",
               f">= {TARGET_PER_SECOND} req/s", per_second >= TARGET_PER_SECOND,
               f"{args.processes * args.threads} connections"),
        Result("webhook answers", f"{created}/{len(latencies)} x 201, {events} events", "all 201, one event each",
               created == len(latencies) == events),
        versus("webhook CPU per request (in process)", cpu_per_request * 1000, hand_cpu * 1000, "ms",
               f"<= {CPU_TARGET:g}x", cpu_per_request <= CPU_TARGET * hand_cpu,
               f"{statements:.1f} statements per request; by hand 3"),
        versus("webhook wall time per request (in process)", wall * 1000, hand_wall * 1000, "ms")]


def main(args: argparse.Namespace) -> int:
    port = free_port()
    if args.in_process < 11:
        raise SystemExit("--in-process must be at least 11 (ten warm up)")

    def body():
        public = {"PUBLIC_URL": f"http://127.0.0.1:{port}"}
        with throwaway_env("webhook", keep=args.keep, extra_env=public) as env, processes(env.child_env()) as procs:
            results = run(env, procs, args, port)
        print("\n" + summary("webhook ingest", results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to send (default 15)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads (connections) per process (default 8)")
    parser.add_argument("--calls", type=int, default=5000, help="remotely queued calls for the load (default 5000)")
    parser.add_argument("--in-process", type=int, default=300, metavar="N",
                        help="callbacks through the app in this process and by hand (default 300)")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
