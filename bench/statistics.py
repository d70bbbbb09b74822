"""Callout statistics latency: GET /api/callouts/:id/statistics on a callout of --participations
participations through `scfm serve`, against a bare `count(*)` of its participations.

One account, one callout made through the API; --participations contacts and participations loaded by SQL
(one INSERT ... SELECT each), then phone calls and their statuses set by a few set-based statements, as batch
operations, the dialer and the provider would leave them, so that the participations are in every state: no
call, created, queued, waiting for its window, at the provider, answered (with durations), busy, not answered,
and with an outcome (as a call plan's runner writes it). Each bulk statement's time is printed: the statement
triggers that keep the counters run inside them.

Then --requests sequential requests to the statistics route (after ten untimed ones), each answer checked (the
states add up to the participations, and match a GROUP BY over the participations made once at the start),
and the same number of `SELECT count(*) FROM callout_participations WHERE callout_id = ...` with psycopg2 on
one kept connection. Printed: the p50 and p99 of both; issue 12's target is a p99 under 100 ms.
"""
from __future__ import annotations

import argparse
import time
from contextlib import closing

from bench.common import (
    Api, BenchError, CpuMeter, admin_api, basic_auth, free_port, guarded, load_contacts, new_account, percentile,
    processes, progress, summary, throwaway_env, versus,
)

TARGET_MS = 100.0
# (share of the participations, SQL that sets their calls); run in this order, each on the participations whose
# id modulo 20 falls in the range
STEPS = [
    ("phone calls for 19 in 20", "INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, msisdn) "
     "SELECT account_id, id, contact_id, msisdn FROM callout_participations WHERE callout_id = %(c)s AND id %% 20 <> 0"),
    ("queued, 17 in 20", "UPDATE phone_calls SET status = 'queued', queued_at = now(), next_attempt_at = now() "
     "WHERE account_id = %(a)s AND callout_participation_id %% 20 > 2"),
    ("waiting for the window, 1 in 20", "UPDATE phone_calls SET waiting_for_window = true "
     "WHERE account_id = %(a)s AND callout_participation_id %% 20 = 3"),
    ("dialed, 15 in 20", "UPDATE phone_calls SET status = 'remotely_queued', remote_call_id = 'CA' || id, "
     "remotely_queued_at = now() WHERE account_id = %(a)s AND callout_participation_id %% 20 > 4"),
    ("answered, 8 in 20", "UPDATE phone_calls SET status = 'completed', duration = 5 + callout_participation_id %% 97 "
     "WHERE account_id = %(a)s AND callout_participation_id %% 20 > 11"),
    ("busy, 3 in 20", "UPDATE phone_calls SET status = 'busy' "
     "WHERE account_id = %(a)s AND callout_participation_id %% 20 BETWEEN 7 AND 9"),
    ("not answered, 2 in 20", "UPDATE phone_calls SET status = 'not_answered' "
     "WHERE account_id = %(a)s AND callout_participation_id %% 20 BETWEEN 10 AND 11"),
    ("outcome written, 2 in 20", "UPDATE callout_participations SET outcome = last_phone_call_status, "
     "finished_at = now() WHERE callout_id = %(c)s AND id %% 20 BETWEEN 9 AND 10"),
]
RAW_STATES = ("SELECT callout_participation_state(outcome, last_phone_call_status, last_phone_call_waiting_for_window), "
              "count(*) FROM callout_participations WHERE callout_id = %(c)s GROUP BY 1")


def load(raw, account_id: int, callout_id: int, n: int) -> dict[str, int]:
    """Contacts and participations, then calls in every state; the raw states as the participations have them."""
    load_contacts(raw, account_id, n)
    with raw.cursor() as cur:
        started = time.perf_counter()
        cur.execute("INSERT INTO callout_participations (account_id, callout_id, contact_id, msisdn) "
                    "SELECT account_id, %(c)s, id, msisdn FROM contacts WHERE account_id = %(a)s",
                    {"a": account_id, "c": callout_id})
        raw.commit()
        progress(f"{n:,} participations in {time.perf_counter() - started:.1f}s")
        for label, sql in STEPS:
            started = time.perf_counter()
            cur.execute(sql, {"a": account_id, "c": callout_id})
            raw.commit()
            progress(f"{label}: {cur.rowcount:,} rows in {time.perf_counter() - started:.1f}s")
        cur.execute(RAW_STATES, {"c": callout_id})
        states = dict(cur.fetchall())
    raw.commit()
    raw.autocommit = True
    try:
        with raw.cursor() as cur:
            cur.execute("VACUUM ANALYZE callout_participations")
            cur.execute("VACUUM ANALYZE phone_calls")
    finally:
        raw.autocommit = False
    return states


def through_api(base: str, token: str, callout_id: int, expected: int, count: int) -> list[float]:
    import requests

    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = basic_auth(token)
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(f"{base}/api/callouts/{callout_id}/statistics", timeout=60)
        seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise BenchError(f"statistics: {response.status_code} {response.text[:300]}")
        body = response.json()
        if body["participations"] != expected or sum(body["states"].values()) != expected:
            raise BenchError(f"statistics do not add up to {expected:,}: {body}")
    return seconds


def bare_count(raw, callout_id: int, count: int) -> list[float]:
    seconds = []
    with raw.cursor() as cur:
        for _ in range(count):
            started = time.perf_counter()
            cur.execute("SELECT count(*) FROM callout_participations WHERE callout_id = %s", (callout_id,))
            cur.fetchone()
            raw.commit()
            seconds.append(time.perf_counter() - started)
    return seconds


def check_states(raw, callout_id: int, states: dict[str, int]) -> None:
    with raw.cursor() as cur:
        cur.execute("SELECT state, sum(participations) FROM callout_participation_counters WHERE callout_id = %s "
                    "GROUP BY state HAVING sum(participations) <> 0", (callout_id,))
        counted = {state: int(total) for state, total in cur.fetchall()}
    raw.commit()
    if counted != states:
        raise BenchError(f"the counters {counted} are not the participations' states {states}")
    progress(f"counters match the participations: {', '.join(f'{k} {v:,}' for k, v in sorted(states.items()))}")


def run(env, procs, args) -> list:
    port = free_port()
    groups = {procs.api(port).popen.pid: "api (scfm serve)"}
    admin = admin_api(env.deps)
    account_id, token = new_account(admin)
    callout_id = Api(admin.client, token).post("/api/callouts").get_json()["id"]
    base = f"http://127.0.0.1:{port}"
    with closing(env.connect()) as raw:
        states = load(raw, account_id, callout_id, args.participations)
        check_states(raw, callout_id, states)
        through_api(base, token, callout_id, args.participations, 10)  # warm-up
        bare_count(raw, callout_id, 3)
        progress(f"{args.requests} sequential statistics requests through `scfm serve`, then bare count(*)")
        with CpuMeter(groups) as cpu:
            ours = through_api(base, token, callout_id, args.participations, args.requests)
        bare = bare_count(raw, callout_id, args.requests)
    print(f"  {cpu.line()}", flush=True)
    p99 = percentile(ours, 99) * 1000
    note = f"{args.requests} requests, {args.participations:,} participations"
    return [versus("statistics p50", percentile(ours, 50) * 1000, percentile(bare, 50) * 1000, "ms", digits=1,
                   note=note),
            versus("statistics p99", p99, percentile(bare, 99) * 1000, "ms", f"< {TARGET_MS:g} ms", p99 < TARGET_MS,
                   digits=1, note=note)]


def main(args: argparse.Namespace) -> int:
    def body():
        with throwaway_env("statistics", keep=args.keep) as env, processes(env.child_env()) as procs:
            results = run(env, procs, args)
        print("\n" + summary("callout statistics through `scfm serve` vs a bare count(*)", results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--participations", type=int, default=1_000_000, metavar="N",
                        help="participations of the callout (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=300, help="timed requests (default 300)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
