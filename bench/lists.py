"""List latency: GET /api/contacts with a metadata filter on 1,000,000 contacts, through gunicorn.

Builds a throwaway database with one account of --contacts contacts, loaded the way bench/batch.py loads them
(one set-based INSERT; metadata gender f/m alternating, province among 5, age; then VACUUM ANALYZE), starts
the API under gunicorn (`scfm serve --workers 2`), and times --requests sequential requests with `requests`
(after a few untimed ones that warm the workers up):

  GET /api/contacts?q[metadata][province]=<one of 5>&page=K   (4 in 5 requests; 1/5 of the contacts match)
  GET /api/contacts?q[metadata][gender]=f&page=K              (1 in 5; half of them match)

K cycles through --pages. Every answer is checked: 25 items (fewer past the end), Per-Page 25, every item
matching the filter, and Total: the number that match when it is exact; with `Total-Estimated: true` (the app
counts up to 10,000 matches, EXACT_TOTAL_UP_TO, and gives the planner's estimate beyond) more than 10,000
matches and Total within a factor of 2 of their number. Printed: `lists: p50 X ms, p99 Y ms (target p99 <
50 ms)`, the same by filter and by page depth, and how far the estimated Totals were off.

Then (when p99 >= 50 ms, or with --explain) the why: the statements the app runs for one request of each
filter (Repository.list: the count capped at 10,001 rows, the planner's estimate when there are more, the
page), captured from the app in this process, timed and shown under EXPLAIN (ANALYZE, BUFFERS), with the
exact count(*) that the estimate spares for comparison.
"""
from __future__ import annotations

import argparse
import random
import re
import time

from bench.common import (
    Api, BenchError, CpuMeter, PROVINCES, Result, admin_api, basic_auth, free_port, new_account, percentile,
    processes, progress, summary, throwaway_env,
)
from scfm.adapters.postgres.repositories import EXACT_TOTAL_UP_TO as CAP

TARGET_MS = 50.0
PER_PAGE = 25
DEFAULT_PAGES = (1, 2, 3, 4, 5, 10, 20, 50, 100, 400)
EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS) "


def expected_total(n: int, key: str, value: str) -> int:
    """How many of bench/batch.py's contacts 1..n match (gender f: i odd; province PROVINCES[i % 5])."""
    if key == "gender":
        return (n + 1) // 2 if value == "f" else n // 2
    index = PROVINCES.index(value)
    return n // 5 + sum(1 for i in range(n - n % 5 + 1, n + 1) if i % 5 == index)


def requests_plan(count: int, pages: tuple[int, ...], seed: int = 5) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    plan = []
    for i in range(count):
        key, value = ("gender", "f") if i % 5 == 4 else ("province", PROVINCES[i % 5])
        plan.append((key, value, pages[(i // 5 + i) % len(pages)]))
    rng.shuffle(plan)
    return plan


def path(key: str, value: str, page: int) -> str:
    return f"/api/contacts?q[metadata][{key}]={value}&page={page}"


class Bench:
    def __init__(self, env, procs, args):
        self.env = env
        self.procs = procs
        self.args = args
        self.results: list[Result] = []

    def setup(self) -> None:
        from bench import batch

        port = free_port()
        api = self.procs.api(port)
        self.groups = {api.popen.pid: "api (gunicorn)"}
        self.base = f"http://127.0.0.1:{port}"
        admin = admin_api(self.env.deps)
        self.account_id, self.token = new_account(admin)
        self.app_api = Api(admin.client, self.token)
        self.raw = self.env.connect()
        loader = batch.Bench(self.env.deps, self.raw, batch.SqlLog(), self.args.contacts)
        loader.account_id = self.account_id
        loader.load_contacts()  # one INSERT ... SELECT generate_series, then VACUUM ANALYZE contacts

    def timed_requests(self, base: str, groups: dict | None = None):
        """The plan of requests, one after the other: [(filter key, page, seconds)], and the CPU meter.
        Total must be the count, or (with Total-Estimated: true) within a factor of 2 of it above CAP."""
        import requests

        session = requests.Session()
        session.trust_env = False
        session.headers["Authorization"] = basic_auth(self.token)
        n = self.args.contacts
        self.total_errors = []  # of the estimated Totals

        def get(key, value, page):
            started = time.perf_counter()
            response = session.get(base + path(key, value, page), timeout=60)
            seconds = time.perf_counter() - started
            if response.status_code != 200:
                raise BenchError(f"{path(key, value, page)}: {response.status_code} {response.text[:300]}")
            total, per_page = int(response.headers["Total"]), int(response.headers["Per-Page"])
            expected = expected_total(n, key, value)
            items = response.json()
            want_items = max(0, min(PER_PAGE, expected - (page - 1) * PER_PAGE))
            estimated = response.headers.get("Total-Estimated") == "true"
            if estimated:
                self.total_errors.append(abs(total - expected) / expected)
                total_ok = expected > CAP and 0.5 * expected <= total <= 2 * expected
            else:
                total_ok = total == expected
            if not total_ok or per_page != PER_PAGE or len(items) != want_items:
                raise BenchError(f"{path(key, value, page)}: Total {total}{' (estimated)' if estimated else ''} "
                                 f"(expected {expected}), Per-Page {per_page}, {len(items)} items "
                                 f"(expected {want_items})")
            if any(item["metadata"].get(key) != value for item in items):
                raise BenchError(f"{path(key, value, page)}: an item does not match the filter")
            return seconds

        for i in range(10):  # warm-up: both gunicorn workers, both filters
            get(*(("gender", "f") if i % 2 else ("province", PROVINCES[i % 5])), 1)
        self.total_errors = []  # the timed requests' only
        timings = []
        plan = requests_plan(self.args.requests, tuple(self.args.pages))
        progress(f"{len(plan)} sequential requests through gunicorn at {base}")
        with CpuMeter(groups or self.groups) as cpu:
            for key, value, page in plan:
                timings.append((key, page, get(key, value, page)))
        return timings, cpu

    def report(self, timings, cpu, label: str = "lists", result_name: str = "lists p50/p99", note: str = "") -> float:
        def line(label, seconds):
            return (f"{label}: p50 {percentile(seconds, 50) * 1000:.1f} ms, p99 {percentile(seconds, 99) * 1000:.1f} ms, "
                    f"max {max(seconds) * 1000:.1f} ms over {len(seconds)} requests")

        everything = [s for _k, _p, s in timings]
        p99 = percentile(everything, 99) * 1000
        print(f"{label} on {self.args.contacts:,} contacts: p50 {percentile(everything, 50) * 1000:.1f} ms, "
              f"p99 {p99:.1f} ms (target p99 < {TARGET_MS:.0f} ms)", flush=True)
        for key, label in (("province", "q[metadata][province]=<one of 5> (Total 1/5)"),
                           ("gender", "q[metadata][gender]=f (Total 1/2)")):
            print("  " + line(label, [s for k, _p, s in timings if k == key]), flush=True)
        for low, high in ((1, 5), (6, 50), (51, 10**9)):
            chosen = [s for _k, p, s in timings if low <= p <= high]
            if chosen:
                print("  " + line(f"pages {low}..{high if high < 10**9 else ''}", chosen), flush=True)
        if self.total_errors:
            print(f"  Total estimated (Total-Estimated: true) in {len(self.total_errors)} answers, off by up to "
                  f"{max(self.total_errors) * 100:.1f}% (exact up to {CAP:,} matches)", flush=True)
        print(f"  {cpu.line()}", flush=True)
        self.results.append(Result(
            result_name, f"{percentile(everything, 50) * 1000:.1f} / {p99:.1f} ms", f"p99 < {TARGET_MS:.0f} ms",
            p99 < TARGET_MS, note or f"{len(everything)} requests, {self.args.contacts:,} contacts"))
        return p99

    # -- the why
    def app_statements(self, key: str, value: str, page: int) -> list:
        """The statements the app runs for one request (the Flask app in this process, same code)."""
        from bench.batch import SqlLog

        sql = SqlLog()
        sql.attach(self.env.deps.engine)
        try:
            self.app_api.get(path(key, value, page))
        finally:
            from sqlalchemy import event

            event.remove(self.env.deps.engine, "before_cursor_execute", sql._before)
            event.remove(self.env.deps.engine, "after_cursor_execute", sql._after)
        return [s for s in sql.entries if "FROM contacts" in s.sql]

    def timed(self, query: str, params, repeat: int = 5) -> tuple[float, object]:
        """Median seconds of `repeat` runs of a query on our connection, and its first row."""
        seconds, row = [], None
        with self.raw.cursor() as cur:
            for _ in range(repeat):
                started = time.perf_counter()
                cur.execute(query, params)
                rows = cur.fetchall()
                seconds.append(time.perf_counter() - started)
                row = rows[0] if rows else None
        self.raw.commit()
        return sorted(seconds)[len(seconds) // 2], row

    def explain(self, query: str, params) -> str:
        with self.raw.cursor() as cur:
            cur.execute(EXPLAIN + query, params)
            plan = "\n".join("      " + row[0] for row in cur.fetchall())
        self.raw.commit()
        return plan

    def why(self) -> None:
        print("\nwhy: the statements of one request, as the app runs them (median of 5 runs each)", flush=True)
        cases = [("province", PROVINCES[0], 1), ("province", PROVINCES[0], 100), ("gender", "f", 1)]
        for key, value, page in cases:
            statements = self.app_statements(key, value, page)
            if page != 1:  # the Total is the same as on page 1: the page query alone
                statements = statements[-1:]
            for statement in statements:
                text = " ".join(statement.sql.split())
                kind = ("planner's estimate" if text.startswith("EXPLAIN") else
                        "capped count" if "count(" in text else "page")
                seconds, row = self.timed(statement.sql, statement.parameters)
                shown = f" ({row[0]:,})" if kind == "capped count" and row else ""
                print(f"  {kind} query, {key}={value}, page {page}: {seconds * 1000:.1f} ms{shown}", flush=True)
                print(f"    {text}", flush=True)
                print(f"    parameters {statement.parameters}", flush=True)
                if kind != "planner's estimate":
                    print(self.explain(statement.sql, statement.parameters), flush=True)

        print("\nfor comparison, the exact count(*) that the estimate spares, on the same data:", flush=True)
        for key, value in (("province", PROVINCES[0]), ("gender", "f")):
            capped = next(s for s in self.app_statements(key, value, 1) if "count(" in s.sql)
            where = re.split(r"\sWHERE\s", capped.sql, maxsplit=1)[1]
            where = re.split(r"\s+LIMIT\s", where, maxsplit=1)[0]
            exact, row = self.timed(f"SELECT count(*) FROM contacts WHERE {where}", capped.parameters)
            print(f"  count(*) for {key}={value}: {exact * 1000:.1f} ms ({row[0]:,})", flush=True)

    def run(self) -> None:
        self.setup()
        p99 = self.report(*self.timed_requests(self.base))
        if p99 >= TARGET_MS or self.args.explain:
            self.why()

    def close(self) -> None:
        raw = getattr(self, "raw", None)
        if raw is not None:
            raw.close()


def main(args: argparse.Namespace) -> int:
    bench = None
    try:
        with throwaway_env("lists", keep=args.keep) as env:
            with processes(env.child_env()) as procs:
                bench = Bench(env, procs, args)
                try:
                    bench.run()
                finally:
                    bench.close()
    except (KeyboardInterrupt, SystemExit):
        progress("interrupted")
        return 130
    except BenchError as error:
        progress(f"failed: {error}")
        return 1
    print()
    print(summary("contact list latency through gunicorn", bench.results), flush=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=1_000_000, metavar="N", help="contacts (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=300, help="timed requests (default 300)")
    parser.add_argument("--pages", type=lambda text: [int(x) for x in text.split(",")], default=list(DEFAULT_PAGES),
                        metavar="K,K,...", help=f"pages to ask for (default {','.join(map(str, DEFAULT_PAGES))})")
    parser.add_argument("--explain", action="store_true",
                        help="show the statements and their plans even when p99 < 50 ms")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
