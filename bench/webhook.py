"""Webhook ingest: signed provider status callbacks per second through the real app under gunicorn.

Starts the API (`scfm serve --workers 2`, 4 threads each, PUBLIC_URL=http://127.0.0.1:PORT) on a throwaway
database and queue, with one account whose somleng_account_sid/somleng_auth_token are set and --calls phone
calls (remotely queued, remote_call_id set; inserted with SQL). Then --processes load-generator processes of
--threads threads each, every thread on its own kept-alive HTTP connection, POST status callbacks for
--seconds, signed as the provider signs them (RequestValidator(token).compute_signature over the public URL
with ?phone_call_id=ID and the form: CallSid, AccountSid, From, To, CallStatus, Direction=outbound-api, ...).
Each call gets ringing, then in-progress, then completed, then further completed ones if the run goes on.

Printed: `webhook ingest: X signed requests/s (target 500)` (201 answers per second, from the start until the
last answer), p50/p99 latency, the status codes (every one should be 201), the events written (one row per
201), and where the CPU went.

Then (below the target, or with --explain) the why: the same requests through the Flask app in this process,
one at a time, with the statements each one runs and a cProfile of where its time goes by package; and the
same work written by hand (signature check and three statements in one transaction) as a floor.
"""
from __future__ import annotations

import argparse
import http.client
import json
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
    queue.put((latencies, statuses, errors, time.time() - start_at))


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


class Bench:
    def __init__(self, env, procs, args):
        self.env = env
        self.procs = procs
        self.args = args
        self.port = self.public = None
        self.results: list[Result] = []

    def setup(self, port: int) -> None:
        args = self.args
        self.port, self.public = port, f"http://127.0.0.1:{port}"
        api = self.procs.api(port, workers=args.api_workers)
        self.groups = {api.popen.pid: "api (gunicorn)"}
        admin = admin_api(self.env.deps)
        self.sid, self.token = "AC" + "5" * 32, "bench-webhook-token"
        self.account_id, _token = new_account(admin, platform_provider_name="somleng", somleng_account_sid=self.sid,
                                              somleng_auth_token=self.token)
        self.raw = self.env.connect()
        with self.raw.cursor() as cur:  # calls of a running callout, as the dialer leaves them
            cur.execute("INSERT INTO contacts (account_id, msisdn) SELECT %s, '+85512' || lpad(n::text, 6, '0') "
                        "FROM generate_series(1, %s) AS n", (self.account_id, args.calls))
            cur.execute("INSERT INTO callouts (account_id, status) VALUES (%s, 'running') RETURNING id",
                        (self.account_id,))
            callout_id = cur.fetchone()[0]
            cur.execute("INSERT INTO callout_participations (account_id, callout_id, contact_id, msisdn) "
                        "SELECT account_id, %s, id, msisdn FROM contacts WHERE account_id = %s",
                        (callout_id, self.account_id))
            cur.execute(
                "INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, status, msisdn, "
                "remote_call_id, remote_status, remote_direction, remotely_queued_at, queued_at, dial_attempts) "
                "SELECT account_id, id, contact_id, 'remotely_queued', msisdn, 'CA' || md5(id::text), 'queued', "
                "'outbound-api', now(), now(), 1 FROM callout_participations WHERE callout_id = %s ORDER BY id "
                "RETURNING id, remote_call_id, msisdn", (callout_id,))
            self.calls = [tuple(row) for row in cur.fetchall()]
            cur.execute("ANALYZE contacts; ANALYZE callout_participations; ANALYZE phone_calls")
        self.raw.commit()
        # the load uses the first calls; the diagnosis (in this process) the last ones
        self.load_calls, self.spare_calls = self.calls[:-DIAGNOSIS_REQUESTS], self.calls[-DIAGNOSIS_REQUESTS:]

    def load(self, port: int, groups: dict) -> None:
        args = self.args
        progress(f"api on :{port} ({args.api_workers} gunicorn workers x 4 threads), {len(self.calls)} remotely "
                 f"queued calls; {args.processes} load processes x {args.threads} threads for {args.seconds:g}s")
        context = multiprocessing.get_context("spawn")
        self.connections = total = args.processes * args.threads
        queue = context.Queue()
        start_at = time.time() + 2.0 + 0.5 * args.processes  # once every process has started
        workers = [context.Process(target=generate, args=(p, args.threads, total, port, self.sid, self.token,
                                                          self.load_calls, start_at, args.seconds, queue), daemon=True)
                   for p in range(args.processes)]
        for worker in workers:
            worker.start()
        try:
            while time.time() < start_at:
                time.sleep(0.01)
            with CpuMeter(groups) as self.cpu:
                items = [queue.get(timeout=args.seconds + 60) for _ in range(total + args.processes)]
                for worker in workers:
                    worker.join(30)
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.kill()
                    worker.join(5)
        self.procs.check_alive()
        outcomes = [item for item in items if item[0] != "cpu"]
        self.load_cpu = sum(item[1] for item in items if item[0] == "cpu")
        self.latencies = [value for outcome in outcomes for value in outcome[0]]
        self.statuses: dict[int, int] = {}
        for outcome in outcomes:
            for code, count in outcome[1].items():
                self.statuses[code] = self.statuses.get(code, 0) + count
        self.errors = [error for outcome in outcomes for error in outcome[2]][:5]
        self.window = max(outcome[3] for outcome in outcomes)  # until the last answer came

    def report(self, label: str = "webhook ingest", result_name: str = "webhook ingest", note: str = "") -> float:
        args, latencies, statuses = self.args, self.latencies, self.statuses
        with self.raw.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT phone_call_id) FROM remote_phone_call_events "
                        "WHERE account_id = %s", (self.account_id,))
            events, event_calls = cur.fetchone()
            cur.execute("SELECT status, count(*) FROM phone_calls WHERE account_id = %s GROUP BY status "
                        "ORDER BY status", (self.account_id,))
            call_statuses = dict(cur.fetchall())
        self.raw.commit()
        created = statuses.get(201, 0)
        per_second = created / self.window
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        print(f"{label}: {per_second:.0f} signed requests/s (target {TARGET_PER_SECOND})", flush=True)
        print(f"  latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms over "
              f"{len(latencies)} requests from {self.connections} connections ({args.processes} processes x "
              f"{args.threads} threads)", flush=True)
        codes = ", ".join(f"{code or 'connection error'}: {count}" for code, count in sorted(statuses.items()))
        all_201 = created == len(latencies)
        print(f"  answers: {codes} ({'every request got 201' if all_201 else 'NOT every request got 201'})",
              flush=True)
        for error in self.errors:
            print(f"    {error}", flush=True)
        print(f"  events written: {events} rows for {event_calls} calls "
              f"({'one per 201' if events == created else f'expected {created}'}); call statuses now "
              f"{call_statuses}", flush=True)
        print(f"  {self.cpu.line()}; load generator {self.load_cpu / self.window:.2f}", flush=True)
        self.results += [
            Result(result_name, f"{per_second:.0f} req/s", f">= {TARGET_PER_SECOND} req/s",
                   per_second >= TARGET_PER_SECOND, note or f"{len(latencies)} requests in {self.window:.1f}s"),
            Result(f"{result_name}: latency", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", "-", None,
                   f"{self.connections} concurrent connections"),
            Result(f"{result_name}: correctness", f"{created}/{len(latencies)} x 201, {events} events",
                   "all 201, one event each", all_201 and events == created),
        ]
        return per_second

    def why(self) -> None:
        """The same requests through the Flask app in this process, one at a time: the statements each one
        runs, and where its time goes (cProfile, by package)."""
        import cProfile
        import pstats

        from twilio.request_validator import RequestValidator

        from bench.batch import SqlLog
        from scfm.entrypoints.app import create_app

        client = create_app(self.env.deps).test_client()
        validator = RequestValidator(self.token)
        requests_ = []
        for call_id, call_sid, msisdn in self.spare_calls:
            params = {"CallSid": call_sid, "AccountSid": self.sid, "From": "1234", "To": msisdn, "Called": msisdn,
                      "Caller": "1234", "CallStatus": "ringing", "Direction": "outbound-api",
                      "ApiVersion": "2010-04-01", "Timestamp": formatdate(usegmt=True),
                      "CallbackSource": "call-progress-events", "SequenceNumber": "0"}
            path = f"{PATH}?phone_call_id={call_id}"
            requests_.append((path, params, validator.compute_signature(self.public + path, params)))
        half = len(requests_) // 2

        def send(batch):
            for path, params, signature in batch:
                response = client.post(path, data=params, headers={"X-Twilio-Signature": signature})
                if response.status_code != 201:
                    raise BenchError(f"in-process webhook: {response.status_code} {response.get_data(as_text=True)[:200]}")

        sql = SqlLog()
        sql.attach(self.env.deps.engine)
        try:
            started = time.perf_counter()
            send(requests_[:half - 1])
            mark = sql.mark()
            send(requests_[half - 1:half])
            wall = (time.perf_counter() - started) / half
        finally:
            from sqlalchemy import event

            event.remove(self.env.deps.engine, "before_cursor_execute", sql._before)
            event.remove(self.env.deps.engine, "after_cursor_execute", sql._after)
        per_request = len(sql.entries) / half
        sql_seconds = sum(s.seconds for s in sql.entries) / half
        last = sql.entries[mark:]
        profile = cProfile.Profile()
        cpu_started = time.process_time()
        profile.enable()
        send(requests_[half:])
        profile.disable()
        profiled = len(requests_) - half
        cpu = (time.process_time() - cpu_started) / profiled
        stats = pstats.Stats(profile)
        buckets: dict[str, float] = {}
        for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in stats.stats.items():
            label = _package(filename, function)
            buckets[label] = buckets.get(label, 0.0) + own
        total = sum(buckets.values())
        print("\nwhy: the same signed requests through the Flask app in this process, one at a time", flush=True)
        print(f"  {wall * 1000:.1f} ms per request ({1 / wall:.0f}/s for one process at best); {per_request:.1f} SQL "
              f"statements per request (and a ping of a connection idle in the pool for over a second), "
              f"{sql_seconds * 1000:.1f} ms of it in them (round trips included)", flush=True)
        print("  the statements of one request (ms):", flush=True)
        for statement in last:
            print(f"    {statement.seconds * 1000:5.2f}  {' '.join(statement.sql.split())[:150]}", flush=True)
        print(f"  CPU of this process per request under cProfile: {cpu * 1000:.1f} ms; its own time by package:",
              flush=True)
        for label, seconds in sorted(buckets.items(), key=lambda item: -item[1])[:10]:
            print(f"    {seconds / total * 100:5.1f}%  {label}", flush=True)
        print("  the functions with the most own time:", flush=True)
        top = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:12]
        for (filename, line, function), (_cc, calls, own, cumulative, _callers) in top:
            print(f"    {own / total * 100:5.1f}%  {calls // profiled:4d} calls/request  {_short(filename)}:{line}"
                  f"({function})", flush=True)

        self.raw_floor()

    def raw_floor(self) -> None:
        """The same work by hand: the signature checked, then one transaction of three statements (the account
        by its sid, the call updated by its sid with RETURNING, the event inserted), on one kept connection."""
        from twilio.request_validator import RequestValidator

        requests_ = []
        for call_id, call_sid, msisdn in self.spare_calls:
            params = {"CallSid": call_sid, "AccountSid": self.sid, "From": "1234", "To": msisdn,
                      "CallStatus": "completed", "Direction": "outbound-api", "CallDuration": "12"}
            url = f"{self.public}{PATH}?phone_call_id={call_id}"
            requests_.append((url, params, RequestValidator(self.token).compute_signature(url, params)))
        started, cpu_started = time.perf_counter(), time.process_time()
        with self.raw.cursor() as cur:
            for url, params, signature in requests_:
                cur.execute("SELECT id, somleng_auth_token FROM accounts WHERE somleng_account_sid = %s "
                            "OR twilio_account_sid = %s", (params["AccountSid"], params["AccountSid"]))
                account_id, token = cur.fetchone()
                if not RequestValidator(token).validate(url, params, signature):
                    raise BenchError("raw floor: bad signature")
                cur.execute("UPDATE phone_calls SET status = 'completed', remote_status = %s, duration = %s, "
                            "remote_status_updated_at = now(), updated_at = now() "
                            "WHERE account_id = %s AND remote_call_id = %s RETURNING id",
                            (params["CallStatus"], int(params["CallDuration"]), account_id, params["CallSid"]))
                phone_call_id = cur.fetchone()[0]
                cur.execute("INSERT INTO remote_phone_call_events (account_id, phone_call_id, details, remote_call_id, "
                            "remote_direction, call_flow_logic) VALUES (%s, %s, %s::jsonb, %s, %s, %s) RETURNING id",
                            (account_id, phone_call_id, json.dumps(params), params["CallSid"], params["Direction"],
                             "CallFlowLogic::HelloWorld"))
                cur.fetchone()
                self.raw.commit()
        wall = (time.perf_counter() - started) / len(requests_)
        cpu = (time.process_time() - cpu_started) / len(requests_)
        print(f"  the same work by hand (signature check + 3 statements in one transaction, psycopg2, no HTTP): "
              f"{wall * 1000:.2f} ms per request, {cpu * 1000:.2f} ms of it this process's CPU", flush=True)

    def close(self) -> None:
        raw = getattr(self, "raw", None)
        if raw is not None:
            raw.close()


DIAGNOSIS_REQUESTS = 301


def _package(filename: str, function: str) -> str:
    if filename == "~":  # a built-in: name it by what it belongs to
        for name in ("psycopg2", "hmac", "hashlib", "json", "socket", "select", "_io", "re."):
            if name in function:
                return f"built-in {name.rstrip('.')} ({'waiting on PostgreSQL' if name == 'psycopg2' else 'C'})"
        return "built-in (other)"
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1].split("/", 1)[0].split(".")[0]
    if "/src/scfm/" in filename:
        return "scfm"
    if "/lib/python3" in filename:
        return "python stdlib"
    return "other"


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main(args: argparse.Namespace) -> int:
    bench = None
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    try:
        with throwaway_env("webhook", keep=args.keep, extra_env={"PUBLIC_URL": public}) as env:
            with processes(env.child_env(PUBLIC_URL=public)) as procs:
                bench = Bench(env, procs, args)
                try:
                    bench.setup(port)
                    bench.load(port, bench.groups)
                    per_second = bench.report()
                    if per_second < TARGET_PER_SECOND or args.explain:
                        bench.why()
                finally:
                    bench.close()
    except (KeyboardInterrupt, SystemExit):
        progress("interrupted")
        return 130
    except BenchError as error:
        progress(f"failed: {error}")
        return 1
    print()
    print(summary("webhook ingest through gunicorn", bench.results), flush=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to send (default 15)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads (connections) per process (default 8)")
    parser.add_argument("--calls", type=int, default=5000, help="remotely queued phone calls to report on (default 5000)")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--explain", action="store_true",
                        help="show the per-request diagnosis even when the target is met")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
