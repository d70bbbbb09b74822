"""Batch operations at scale: the API and worker against the same SQL written by hand.

Builds a throwaway database (scfm_bench_<random>, migrated) and RQ queue, one account with N contacts
(metadata: gender f/m alternating, province among 5, age), then times, through the API (the Flask app)
and the worker (an RQ SimpleWorker in this process, i.e. the real job code path):

  population_half   a CalloutPopulation filtered on metadata gender=f: from the queue request to finished
  population_all    a CalloutPopulation of every contact, into a second callout
  phone_call_create a PhoneCallCreate under that second callout (one call per participation)
  phone_call_create_post   creating that PhoneCallCreate (its preview-presence check)
  preview_population       the first page of /preview/contacts of a fresh population over every contact
  preview_phone_call_create the first page of /preview/callout_participations of a fresh PhoneCallCreate

and the same work as hand-written SQL with psycopg2 on the same database (INSERT ... SELECT ... ON CONFLICT
DO NOTHING into a fresh callout; INSERT INTO phone_calls ... SELECT; count(*) plus the first 25 rows).
Each figure is printed as `name: ours X.XXs, raw Y.YYs, ratio Z.ZZ` (ratio = ours / raw), then a summary
table; progress and the app's slow SQL go to stderr. The database and the queue are removed at the end,
also on Ctrl-C or an error (unless --keep).

DATABASE_URL and REDIS_URL name the servers (default postgresql://postgres@127.0.0.1:5432/postgres and
redis://127.0.0.1:6379/0); the benchmark creates its own database next to DATABASE_URL's.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Cambodia, Smart mobile: +855 96 xxx xxxx. Every one of the 10^7 numbers is valid for phonenumbers.
MSISDN_PREFIX = "+85596"
MSISDN_DIGITS = 7
MAX_CONTACTS = 10**MSISDN_DIGITS - 1
PROVINCES = ("phnom_penh", "siem_reap", "battambang", "kampot", "kandal")

POPULATION = "BatchOperation::CalloutPopulation"
PHONE_CALL_CREATE = "BatchOperation::PhoneCallCreate"
REMOTE_REQUEST_PARAMS = {"from": "1234", "url": "https://demo.twilio.com/docs/voice.xml"}
PER_PAGE = 25

EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS) "
BULK_DML = re.compile(r"\s*INSERT INTO (callout_participations|phone_calls)\b.*\bSELECT\b", re.S | re.I)
SLOW_SECONDS = 0.05  # app statements at least this slow are listed on stderr

_started = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------- figures

@dataclass
class Figure:
    name: str
    ours: float
    raw: float
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.raw if self.raw > 0 else float("inf")

    def line(self) -> str:
        text = f"{self.name}: ours {self.ours:.2f}s, raw {self.raw:.2f}s, ratio {self.ratio:.2f}"
        return f"{text} ({self.note})" if self.note else text


def table(figures: list[Figure]) -> str:
    rows = [("benchmark", "ours (s)", "raw (s)", "ratio", "notes")]
    rows += [(f.name, f"{f.ours:.3f}", f"{f.raw:.3f}", f"{f.ratio:.2f}", f.note) for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:4], widths[1:])]
        lines.append("  ".join(cells + [row[4]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -----")
    return "\n".join(lines)


# ---------------------------------------------------------------- the app's SQL, as it runs

@dataclass
class Statement:
    sql: str
    parameters: object
    seconds: float
    plan: str | None = None


@dataclass
class SqlLog:
    """Every statement the app's engine runs, timed; with `explain`, the plans of its bulk and slow ones.

    With `explain`, the bulk INSERT ... SELECT statements run as EXPLAIN ANALYZE (which runs them), and slow
    SELECTs run a second time under EXPLAIN ANALYZE: timings then include that overhead.
    """

    explain: bool = False
    entries: list[Statement] = field(default_factory=list)

    def attach(self, engine) -> None:
        from sqlalchemy import event

        event.listen(engine, "before_cursor_execute", self._before, retval=True)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        if self.explain and BULK_DML.match(statement):
            statement = EXPLAIN + statement
        conn.info.setdefault("bench_started", []).append(time.perf_counter())
        return statement, parameters

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        seconds = time.perf_counter() - conn.info["bench_started"].pop()
        plan = None
        if statement.startswith(EXPLAIN):
            plan = "\n".join(row[0] for row in cursor.fetchall())
            statement = statement[len(EXPLAIN):]
        elif self.explain and seconds >= SLOW_SECONDS and statement.lstrip()[:6].upper() == "SELECT":
            with cursor.connection.cursor() as again:
                again.execute(EXPLAIN + statement, parameters)
                plan = "\n".join(row[0] for row in again.fetchall())
        self.entries.append(Statement(statement, parameters, seconds, plan))

    def mark(self) -> int:
        return len(self.entries)

    def report(self, label: str, since: int) -> None:
        slow = [s for s in self.entries[since:] if s.seconds >= SLOW_SECONDS or s.plan]
        for s in slow:
            sql = " ".join(s.sql.split())
            progress(f"  {label} SQL {s.seconds:.3f}s: {sql if s.plan else sql[:160]}")
            if s.plan:
                progress(f"  parameters: {s.parameters}")
                print(s.plan, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the API, as a client uses it

class Api:
    """The Flask test client with an access token, bodies form-encoded like curl -d."""

    def __init__(self, client, token: str):
        self.client = client
        self.headers = {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}

    def _check(self, response, method: str, path: str, status: int):
        if response.status_code != status:
            raise BenchError(f"{method} {path}: {response.status_code} {response.get_data(as_text=True)[:500]}")
        return response

    def get(self, path: str, status: int = 200):
        return self._check(self.client.get(path, headers=self.headers), "GET", path, status)

    def post(self, path: str, data: dict | None = None, status: int = 201):
        return self._check(self.client.post(path, data=data or {}, headers=self.headers), "POST", path, status)


def form(prefix: str, values: dict) -> dict:
    return {f"{prefix}[{key}]": value for key, value in values.items()}


# ---------------------------------------------------------------- the benchmark

PARTICIPATION_COLUMNS = "account_id, callout_id, contact_id, callout_population_id, msisdn, created_at, updated_at"
PHONE_CALL_COLUMNS = ("account_id, callout_participation_id, contact_id, create_batch_operation_id, status, msisdn, "
                      "remote_request_params, created_at, updated_at")


class Bench:
    def __init__(self, deps, raw, sql: SqlLog, contacts: int):
        self.deps = deps
        self.raw = raw  # a psycopg2 connection of our own, for the hand-written SQL
        self.sql = sql
        self.n = contacts
        self.figures: list[Figure] = []
        self.api: Api | None = None
        self.account_id: int | None = None
        self.worker_keys: list[str] = []  # what the burst workers leave in Redis (it would expire in a minute)

    # -- helpers
    def record(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(figure.line(), flush=True)

    def scalar(self, query: str, params=None):
        with self.raw.cursor() as cur:
            cur.execute(query, params)
            value = cur.fetchone()[0]
        self.raw.commit()
        return value

    def returning(self, query: str, params=None) -> int:
        return self.scalar(query, params)

    def raw_write(self, label: str, query: str, params: dict) -> float:
        """Run one hand-written statement in its own transaction; seconds including the commit."""
        explain = self.sql.explain
        with self.raw.cursor() as cur:
            started = time.perf_counter()
            cur.execute(EXPLAIN + query if explain else query, params)
            plan = "\n".join(row[0] for row in cur.fetchall()) if explain else None
            self.raw.commit()
            seconds = time.perf_counter() - started
        if plan:
            progress(f"  {label} raw SQL plan:")
            print(plan, file=sys.stderr, flush=True)
        return seconds

    def raw_page(self, label: str, count_query: str, page_query: str, params: dict) -> tuple[float, int, list[int]]:
        """count(*) and the first page, as one read transaction: (seconds, total, ids of the page)."""
        with self.raw.cursor() as cur:
            started = time.perf_counter()
            cur.execute(count_query, params)
            total = cur.fetchone()[0]
            cur.execute(page_query, params)
            rows = cur.fetchall()
            self.raw.commit()
            seconds = time.perf_counter() - started
            if self.sql.explain:
                for query in (count_query, page_query):
                    cur.execute(EXPLAIN + query, params)
                    progress(f"  {label} raw SQL plan:")
                    print("\n".join(row[0] for row in cur.fetchall()), file=sys.stderr, flush=True)
                self.raw.commit()
        return seconds, total, [row[0] for row in rows]

    def run_worker(self) -> None:
        """Every queued job, by a real RQ worker in this process (burst: it stops when the queue is empty)."""
        from rq import SimpleWorker

        saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        worker = SimpleWorker([self.deps.queue], connection=self.deps.redis)
        self.worker_keys.append(worker.key)
        try:
            worker.work(burst=True, logging_level="WARNING")
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)
        if getattr(worker, "_stop_requested", False):  # Ctrl-C during a job: RQ finished it (a second one would not)
            raise KeyboardInterrupt("stop requested while the worker ran")

    def raw_callout(self, type_: str, parameters: dict) -> tuple[int, int]:
        """A fresh callout and an operation row for the hand-written SQL to mark rows with."""
        callout_id = self.returning("INSERT INTO callouts (account_id) VALUES (%s) RETURNING id", (self.account_id,))
        operation_id = self.returning(
            "INSERT INTO batch_operations (account_id, callout_id, type, parameters, status) "
            "VALUES (%s, %s, %s, %s::jsonb, 'finished') RETURNING id",
            (self.account_id, callout_id, type_, json.dumps(parameters)))
        return callout_id, operation_id

    # -- set-up
    def setup(self) -> None:
        from scfm.entrypoints.app import create_app
        from scfm.services import accounts

        _account, token = accounts.create_super_admin(self.deps.uow())
        app = create_app(self.deps)
        admin = Api(app.test_client(), token.token)
        account = admin.post("/api/accounts", {"metadata[name]": "bench"}).get_json()
        user_token = admin.post("/api/access_tokens", {"account_sid": account["id"]}).get_json()["token"]
        self.api = Api(app.test_client(), user_token)
        self.account_id = account["id"]
        self.load_contacts()

    def load_contacts(self) -> None:
        from scfm.domain.values import normalize_msisdn

        samples = {1, self.n, *random.Random(4).sample(range(1, self.n + 1), min(self.n, 1000))}
        for i in sorted(samples):
            msisdn = f"{MSISDN_PREFIX}{i:0{MSISDN_DIGITS}d}"
            if normalize_msisdn(msisdn) != msisdn:
                raise BenchError(f"{msisdn} is not a valid E.164 number")
        progress(f"loading {self.n:,} contacts (msisdns {MSISDN_PREFIX}{1:0{MSISDN_DIGITS}d}.."
                 f"{MSISDN_PREFIX}{self.n:0{MSISDN_DIGITS}d})")
        started = time.perf_counter()
        provinces = "ARRAY[" + ", ".join(f"'{p}'" for p in PROVINCES) + "]"
        with self.raw.cursor() as cur:
            cur.execute(
                f"""
                INSERT INTO contacts (account_id, msisdn, metadata, created_at, updated_at)
                SELECT %(account)s, %(prefix)s || lpad(i::text, %(digits)s, '0'),
                       jsonb_build_object('gender', CASE WHEN i %% 2 = 1 THEN 'f' ELSE 'm' END,
                                          'province', ({provinces})[1 + i %% {len(PROVINCES)}],
                                          'age', 18 + i %% 63),
                       now(), now()
                FROM generate_series(1, %(n)s) AS i
                """,
                {"account": self.account_id, "prefix": MSISDN_PREFIX, "digits": MSISDN_DIGITS, "n": self.n},
            )
        self.raw.commit()
        loaded = time.perf_counter() - started
        self.raw.autocommit = True
        try:
            with self.raw.cursor() as cur:
                cur.execute("VACUUM ANALYZE contacts")
        finally:
            self.raw.autocommit = False
        progress(f"loaded in {loaded:.1f}s, vacuumed and analyzed in {time.perf_counter() - started - loaded:.1f}s")

    # -- through the API and the worker
    def ours_run(self, label: str, operation_id: int) -> tuple[float, float]:
        """Queue an operation and run the worker until it is finished: (seconds from the queue request, of the worker)."""
        mark = self.sql.mark()
        started = time.perf_counter()
        self.api.post(f"/api/batch_operations/{operation_id}/batch_operation_events", {"event": "queue"})
        worker_started = time.perf_counter()
        self.run_worker()
        worker = time.perf_counter() - worker_started
        operation = self.api.get(f"/api/batch_operations/{operation_id}").get_json()
        seconds = time.perf_counter() - started
        if operation["status"] != "finished":
            raise BenchError(f"{label}: operation {operation_id} is {operation['status']}: {operation['error_message']}")
        self.sql.report(label, mark)
        return seconds, worker

    def new_callout(self) -> int:
        return self.api.post("/api/callouts").get_json()["id"]

    def new_operation(self, callout_id: int, type_: str, parameters: dict) -> int:
        data = {"type": type_}
        for name, values in parameters.items():
            for key, value in values.items():
                if isinstance(value, dict):
                    data.update(form(f"parameters[{name}][{key}]", value))
                else:
                    data[f"parameters[{name}][{key}]"] = value
        return self.api.post(f"/api/callouts/{callout_id}/batch_operations", data).get_json()["id"]

    def participations(self, callout_id: int) -> int:
        return self.scalar("SELECT count(*) FROM callout_participations WHERE callout_id = %s", (callout_id,))

    # -- the benchmarks
    def population(self, name: str, gender: str | None, expected: int) -> tuple[int, int]:
        """Ours, then raw, into fresh callouts; the two callouts' ids."""
        parameters = {"contact_filter_params": {"metadata": {"gender": gender}}} if gender else {}
        progress(f"{name}: through the API and the worker")
        callout_id = self.new_callout()
        operation_id = self.new_operation(callout_id, POPULATION, parameters)
        ours, worker = self.ours_run(name, operation_id)
        made = self.participations(callout_id)
        progress(f"{name}: ours {ours:.2f}s (worker {worker:.2f}s), {made:,} participations")

        progress(f"{name}: hand-written SQL")
        raw_callout, raw_operation = self.raw_callout(POPULATION, parameters)
        where = "metadata @> %(filter)s::jsonb" if gender else "TRUE"
        raw = self.raw_write(name, f"""
            INSERT INTO callout_participations ({PARTICIPATION_COLUMNS})
            SELECT %(account)s, %(callout)s, id, %(operation)s, msisdn, now(), now()
            FROM contacts WHERE account_id = %(account)s AND {where}
            ON CONFLICT DO NOTHING
            """, {"account": self.account_id, "callout": raw_callout, "operation": raw_operation,
                  "filter": json.dumps({"gender": gender})})
        raw_made = self.participations(raw_callout)
        if not made == raw_made == expected:
            raise BenchError(f"{name}: ours made {made}, raw {raw_made}, expected {expected}")
        self.record(Figure(name, ours, raw, f"{made:,} participations; worker {worker:.2f}s"))
        return callout_id, raw_callout

    def phone_call_create(self, callout_id: int, raw_callout: int) -> None:
        name = "phone_call_create"
        parameters = {"remote_request_params": REMOTE_REQUEST_PARAMS}
        progress(f"{name}: through the API and the worker")
        mark = self.sql.mark()
        started = time.perf_counter()
        operation_id = self.new_operation(callout_id, PHONE_CALL_CREATE, parameters)
        post = time.perf_counter() - started
        self.sql.report(f"{name}_post", mark)
        ours, worker = self.ours_run(name, operation_id)
        made = self.scalar("SELECT count(*) FROM phone_calls WHERE create_batch_operation_id = %s", (operation_id,))
        progress(f"{name}: ours {ours:.2f}s (worker {worker:.2f}s), {made:,} phone calls")

        progress(f"{name}: hand-written SQL")
        _unused, raw_operation = self.raw_callout(PHONE_CALL_CREATE, parameters)
        params = {"account": self.account_id, "callout": raw_callout, "operation": raw_operation,
                  "params": json.dumps(REMOTE_REQUEST_PARAMS)}
        presence = self.raw_write(f"{name}_post", "SELECT EXISTS (SELECT 1 FROM callout_participations "
                                                  "WHERE account_id = %(account)s AND callout_id = %(callout)s)", params)
        raw = self.raw_write(name, f"""
            INSERT INTO phone_calls ({PHONE_CALL_COLUMNS})
            SELECT %(account)s, id, contact_id, %(operation)s, 'created', msisdn, %(params)s::jsonb, now(), now()
            FROM callout_participations WHERE account_id = %(account)s AND callout_id = %(callout)s
            """, params)
        raw_made = self.scalar("SELECT count(*) FROM phone_calls WHERE create_batch_operation_id = %s", (raw_operation,))
        if not made == raw_made == self.n:
            raise BenchError(f"{name}: ours made {made}, raw {raw_made}, expected {self.n}")
        self.record(Figure(name, ours, raw, f"{made:,} phone calls; worker {worker:.2f}s"))
        self.record(Figure(f"{name}_post", post, presence,
                           "creating it: the preview-presence check; raw is SELECT EXISTS"))

    def ours_preview(self, label: str, path: str) -> tuple[float, int, list[int]]:
        mark = self.sql.mark()
        started = time.perf_counter()
        response = self.api.get(path, status=200)
        seconds = time.perf_counter() - started
        self.sql.report(label, mark)
        return seconds, int(response.headers["Total"]), [item["id"] for item in response.get_json()]

    def preview_population(self) -> None:
        name = "preview_population"
        progress(f"{name}: first page of /preview/contacts of a fresh population over every contact")
        callout_id = self.new_callout()
        operation_id = self.new_operation(callout_id, POPULATION, {})
        ours, total, ids = self.ours_preview(name, f"/api/batch_operations/{operation_id}/preview/contacts")
        where = """
            FROM contacts c WHERE c.account_id = %(account)s
              AND NOT EXISTS (SELECT 1 FROM callout_participations p WHERE p.callout_id = %(callout)s AND p.contact_id = c.id)
              AND NOT EXISTS (SELECT 1 FROM callout_participations p WHERE p.callout_id = %(callout)s AND p.msisdn = c.msisdn)
        """
        raw, raw_total, raw_ids = self.raw_page(
            name, f"SELECT count(*) {where}", f"SELECT c.* {where} ORDER BY c.id LIMIT {PER_PAGE}",
            {"account": self.account_id, "callout": callout_id})
        if total != raw_total or ids != raw_ids or total != self.n:
            raise BenchError(f"{name}: ours Total {total} {ids[:3]}.., raw {raw_total} {raw_ids[:3]}..")
        self.record(Figure(name, ours, raw, f"Total {total:,}"))

    def preview_phone_call_create(self, callout_id: int) -> None:
        name = "preview_phone_call_create"
        progress(f"{name}: first page of /preview/callout_participations of a fresh PhoneCallCreate")
        operation_id = self.new_operation(callout_id, PHONE_CALL_CREATE, {"remote_request_params": REMOTE_REQUEST_PARAMS})
        ours, total, ids = self.ours_preview(
            name, f"/api/batch_operations/{operation_id}/preview/callout_participations")
        where = """
            FROM callout_participations p JOIN callouts co ON co.id = p.callout_id
            WHERE p.account_id = %(account)s AND p.callout_id = %(callout)s
              AND NOT EXISTS (SELECT 1 FROM phone_calls pc
                              WHERE pc.callout_participation_id = p.id AND pc.create_batch_operation_id = %(operation)s)
        """
        raw, raw_total, raw_ids = self.raw_page(
            name, f"SELECT count(*) {where}",
            f"SELECT p.*, co.call_flow_logic AS callout_call_flow_logic {where} ORDER BY p.id LIMIT {PER_PAGE}",
            {"account": self.account_id, "callout": callout_id, "operation": operation_id})
        if total != raw_total or ids != raw_ids or total != self.n:
            raise BenchError(f"{name}: ours Total {total} {ids[:3]}.., raw {raw_total} {raw_ids[:3]}..")
        self.record(Figure(name, ours, raw, f"Total {total:,}"))

    def run(self) -> None:
        self.setup()
        self.population("population_half", "f", (self.n + 1) // 2)
        callout_id, raw_callout = self.population("population_all", None, self.n)
        self.phone_call_create(callout_id, raw_callout)
        self.preview_population()
        self.preview_phone_call_create(callout_id)


# ---------------------------------------------------------------- set-up and clean-up

def libpq_url(sqlalchemy_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


def clean_redis(deps, extra_keys=()) -> None:
    queue = deps.queue
    job_ids = set(queue.get_job_ids())
    for registry in (queue.started_job_registry, queue.finished_job_registry, queue.failed_job_registry,
                     queue.deferred_job_registry, queue.scheduled_job_registry, queue.canceled_job_registry):
        job_ids.update(registry.get_job_ids())
    keys = [f"rq:job:{job_id}" for job_id in job_ids] + [f"rq:results:{job_id}" for job_id in job_ids]
    keys += list(extra_keys) + list(deps.redis.scan_iter(f"*{queue.name}*"))
    if keys:
        deps.redis.delete(*keys)


def _interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(args: argparse.Namespace) -> int:
    from scfm import bootstrap as bootstrap_module
    from scfm.adapters.postgres import db

    n = args.contacts
    if not 1 <= n <= MAX_CONTACTS:
        print(f"--contacts must be between 1 and {MAX_CONTACTS:,}", file=sys.stderr)
        return 2
    server_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    name = f"scfm_bench_{uuid.uuid4().hex[:10]}"
    saved_env = dict(os.environ)
    previous_term = signal.signal(signal.SIGTERM, _interrupted)
    created = False
    deps = raw = bench = None
    code = 1
    try:
        import psycopg2

        database_url = db.create_database(server_url, name)
        created = True
        progress(f"database {name}, queue {name}, {n:,} contacts")
        os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, SCFM_QUEUE=name)
        bootstrap_module._deps = None
        deps = bootstrap_module.bootstrap()  # what the jobs in this process use, too
        db.upgrade(deps.engine)
        deps.redis.ping()
        sql = SqlLog(explain=args.explain)
        sql.attach(deps.engine)
        raw = psycopg2.connect(libpq_url(database_url))
        with raw.cursor() as cur:  # what shapes the plans: stale statistics without autovacuum, small work_mem
            cur.execute("SELECT current_setting('server_version'), current_setting('autovacuum'), "
                        "current_setting('work_mem'), current_setting('shared_buffers')")
            version, autovacuum, work_mem, shared_buffers = cur.fetchone()
        raw.rollback()
        progress(f"PostgreSQL {version}: autovacuum {autovacuum}, work_mem {work_mem}, shared_buffers {shared_buffers}")
        bench = Bench(deps, raw, sql, n)
        bench.run()
        print(f"\nbatch operations, {n:,} contacts (ratio = ours / raw; ours through the API and the worker)")
        print(table(bench.figures), flush=True)
        code = 0
    except (KeyboardInterrupt, SystemExit):  # SystemExit: RQ's cold shutdown on a second Ctrl-C
        progress("interrupted")
        code = 130
    except BenchError as error:
        progress(f"failed: {error}")
    finally:
        if raw is not None:
            raw.close()
        if deps is not None:
            try:
                clean_redis(deps, bench.worker_keys if bench else ())
            except Exception as error:  # noqa: BLE001 - report, and go on cleaning
                progress(f"could not clean the queue {name}: {error}")
            deps.engine.dispose()
        if created:
            if args.keep:
                progress(f"kept database {name}: {libpq_url(database_url)}")
            else:
                db.drop_database(server_url, name)
                progress(f"dropped database {name}")
        os.environ.clear()
        os.environ.update(saved_env)
        bootstrap_module._deps = None
        signal.signal(signal.SIGTERM, previous_term)
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=1_000_000, metavar="N",
                        help="contacts in the account (default 1,000,000)")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN ANALYZE of the app's bulk and slow statements and of the raw ones "
                             "(timings then include that overhead)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
