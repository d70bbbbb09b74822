"""List latency: GET /api/contacts?q[metadata][province]=<one of 5>&page=K (4 in 5 requests) or
?q[metadata][gender]=f&page=K through `scfm serve` on --contacts contacts, K cycling through --pages, each request
followed at once by the same as bare SQL on a kept psycopg2 connection (so both see the machine as it is): what
the repository runs, the count capped at EXACT_TOTAL_UP_TO + 1 rows, the planner's estimate past it, the page.
Every answer is checked: 25 items (fewer past the end), each matching, and Total: the number that match, or
(`Total-Estimated: true`) within a factor of 2 of it. Printed: p50 and p99 beside the bare SQL's; target: a p99
at most 3x the bare SQL's.
"""
from __future__ import annotations

import argparse
import random
import time
from contextlib import closing

from bench.common import (
    BenchError, CpuMeter, PROVINCES, admin_api, basic_auth, free_port, guarded, http_session, load_contacts,
    new_account, percentile, processes, progress, summary, throwaway_env, versus,
)
from scfm.adapters.postgres.repositories import EXACT_TOTAL_UP_TO as CAP

TARGET_RATIO = 3.0
DEFAULT_PAGES = (1, 2, 3, 4, 5, 10, 20, 50, 100, 400)
MATCHES = "FROM contacts WHERE account_id = %(account)s AND metadata @> %(filter)s::jsonb"


def expected_total(n: int, key: str, value: str) -> int:
    """How many of contacts 1..n match (gender f: i odd; province PROVINCES[i % 5])."""
    index = PROVINCES.index(value) if key == "province" else None
    return (n + 1) // 2 if index is None else (n - index) // 5 + 1 if index else n // 5


def through_api(session, base: str, n: int, key: str, value: str, page: int) -> float:
    path = f"/api/contacts?q[metadata][{key}]={value}&page={page}"
    started = time.perf_counter()
    response = session.get(base + path, timeout=60)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(f"{path}: {response.status_code} {response.text[:300]}")
    total, expected, items = int(response.headers["Total"]), expected_total(n, key, value), response.json()
    estimated = response.headers.get("Total-Estimated") == "true"
    total_ok = expected > CAP and 0.5 * expected <= total <= 2 * expected if estimated else total == expected
    wrong = any(item["metadata"].get(key) != value for item in items)
    if not total_ok or len(items) != max(0, min(25, expected - (page - 1) * 25)) or wrong:
        raise BenchError(f"{path}: Total {total}{' (estimated)' if estimated else ''} (expected {expected}), "
                         f"{len(items)} items{', one not matching the filter' if wrong else ''}")
    return seconds


def bare_sql(cur, account_id: int, key: str, value: str, page: int) -> float:
    params = {"account": account_id, "filter": f'{{"{key}": "{value}"}}', "offset": (page - 1) * 25}
    started = time.perf_counter()
    cur.execute(f"SELECT count(*) FROM (SELECT 1 {MATCHES} LIMIT {CAP + 1}) AS capped", params)
    if cur.fetchone()[0] > CAP:
        cur.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 {MATCHES}", params)
        cur.fetchone()
    cur.execute(f"SELECT * {MATCHES} ORDER BY id LIMIT 25 OFFSET %(offset)s", params)
    cur.fetchall()
    cur.connection.commit()
    return time.perf_counter() - started


def run(env, procs, args) -> list:
    port, session = free_port(), http_session()
    groups = {procs.api(port).popen.pid: "api (scfm serve)"}
    account_id, token = new_account(admin_api(env.deps))
    session.headers["Authorization"] = basic_auth(token)
    pages = args.pages  # the first ten requests warm up
    plan = [(*(("gender", "f") if i % 5 == 4 else ("province", PROVINCES[i % 5])), pages[(i // 5 + i) % len(pages)])
            for i in range(args.requests + 10)]
    random.Random(5).shuffle(plan)
    with closing(env.connect()) as raw, raw.cursor() as cur:
        load_contacts(raw, account_id, args.contacts)
        progress(f"{args.requests} requests through `scfm serve`, each then as bare SQL")
        with CpuMeter(groups) as cpu:
            timed = [(through_api(session, f"http://127.0.0.1:{port}", args.contacts, *request),
                      bare_sql(cur, account_id, *request)) for request in plan]
    print(f"  {cpu.line()}", flush=True)
    api, bare = [ours for ours, _ in timed[10:]], [by_hand for _, by_hand in timed[10:]]
    p99, bare_p99 = percentile(api, 99) * 1000, percentile(bare, 99) * 1000
    note = f"{args.requests} requests, {args.contacts:,} contacts"
    return [versus("lists p50", percentile(api, 50) * 1000, percentile(bare, 50) * 1000, "ms", digits=1, note=note),
            versus("lists p99", p99, bare_p99, "ms", f"<= {TARGET_RATIO:g}x", p99 <= TARGET_RATIO * bare_p99, digits=1,
                   note=note)]


def main(args: argparse.Namespace) -> int:
    def body():
        with throwaway_env("lists", keep=args.keep) as env, processes() as procs:
            results = run(env, procs, args)
        print("\n" + summary("contact list latency through `scfm serve` vs the bare SQL", results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=1_000_000, metavar="N", help="contacts (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=300, help="timed requests (default 300)")
    parser.add_argument("--pages", type=lambda text: [int(x) for x in text.split(",")], default=list(DEFAULT_PAGES),
                        metavar="K,K,...", help=f"pages to ask for (default {','.join(map(str, DEFAULT_PAGES))})")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
