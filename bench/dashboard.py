"""Dashboard pages: how long each takes on an account with --contacts contacts, and how big it is.

One account with --contacts contacts (loaded by SQL, as `lists` does), --callouts callouts of which one, "the
big callout", has the first --participations contacts (PROVINCES cycle through them) and --calls phone calls
among them in every status, with three provider events on one call; a population in preview over one
province (a fifth of the contacts). The dashboard runs under `scfm serve --workers 2`; a signed-in
browser (`requests`, the session cookie) asks for each page --requests times in turn after two untimed
rounds. The time is the request's round trip over the loopback interface, an upper bound on the server's time.

Every answer is checked: 200, HTML, and for lists past EXACT_TOTAL_UP_TO rows the API's estimated total
("about ..."), never a count of every row. Printed per page: p50 and p99 (target: under 200 ms) and the page's
size (target: under 100 KB; the style sheet and the script are cached assets, printed apart).
"""
from __future__ import annotations

import argparse
import re
import secrets
import time
from contextlib import closing

from bench.common import (
    BenchError, CpuMeter, PROVINCES, Api, Result, admin_api, free_port, guarded, http_session, load_contacts,
    new_account, percentile, processes, progress, summary, throwaway_env,
)
from scfm.adapters.postgres.repositories import EXACT_TOTAL_UP_TO as CAP

TARGET_MS, TARGET_KB = 200.0, 100.0
CALL_STATUSES = ("completed", "busy", "not_answered", "failed", "remotely_queued", "queued", "created",
                 "in_progress", "canceled", "errored")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ASSETS = ("/assets/dashboard.css", "/assets/dashboard.js")


def load_callouts(conn, api: Api, account_id: int, args) -> dict:
    """The callouts (through the API), the big callout's participations and calls (SQL), a call's events and
    a population in preview; the ids the pages need."""
    callouts = [api.post("/api/callouts", {"metadata[name]": f"Callout {n}"}).get_json()["id"]
                for n in range(args.callouts)]
    big = callouts[-1]  # the newest: first in the list
    started = time.perf_counter()
    statuses = "ARRAY[" + ", ".join(f"'{status}'" for status in CALL_STATUSES) + "]"
    with conn.cursor() as cur:
        cur.execute("""
            INSERT INTO callout_participations (account_id, callout_id, contact_id, msisdn, metadata)
            SELECT account_id, %s, id, msisdn, metadata FROM contacts WHERE account_id = %s ORDER BY id LIMIT %s""",
                    (big, account_id, args.participations))
        cur.execute(f"""
            INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, msisdn, status, duration,
                                     created_at, updated_at)
            SELECT account_id, id, contact_id, msisdn, ({statuses})[1 + (id %% {len(CALL_STATUSES)})::int],
                   CASE WHEN id %% {len(CALL_STATUSES)} = 0 THEN 10 + id %% 50 END,
                   now() - make_interval(secs => id %% 3600), now()
            FROM callout_participations WHERE callout_id = %s ORDER BY id LIMIT %s""", (big, args.calls))
        cur.execute("SELECT id, contact_id FROM phone_calls WHERE account_id = %s ORDER BY id LIMIT 1", (account_id,))
        call_id, contact_id = cur.fetchone()
        cur.execute("""
            INSERT INTO remote_phone_call_events (account_id, phone_call_id, details, remote_call_id)
            SELECT %s, %s, jsonb_build_object('CallStatus', status), 'CA' || md5(%s::text)
            FROM unnest(ARRAY['queued', 'ringing', 'completed']) AS status""", (account_id, call_id, call_id))
    conn.commit()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE callout_participations")
            cur.execute("VACUUM ANALYZE phone_calls")
    finally:
        conn.autocommit = False
    progress(f"{args.callouts} callouts, {args.participations:,} participations and {args.calls:,} calls in the "
             f"big one, in {time.perf_counter() - started:.1f}s")
    population = api.post(f"/api/callouts/{big}/batch_operations", {
        "type": "BatchOperation::CalloutPopulation",
        "parameters[contact_filter_params][metadata][province]": PROVINCES[1]}).get_json()["id"]
    return {"big": big, "call": call_id, "contact": contact_id, "population": population}


def pages(ids: dict, args) -> list[tuple[str, str, int]]:
    """(name, path, rows the list behind it holds: past CAP, the page must show an estimate)."""
    fifth, calls_fifth = args.contacts // 5, args.calls // len(CALL_STATUSES)
    return [
        ("callouts", "/callouts", 0),
        ("callout: contacts", f"/callouts/{ids['big']}", args.participations),
        ("callout: calls", f"/callouts/{ids['big']}?show=calls", args.calls),
        ("callout: busy calls", f"/callouts/{ids['big']}?show=calls&status=busy&page=3", calls_fifth),
        ("callout: live statistics", f"/callouts/{ids['big']}/live", 0),
        ("contacts", "/contacts", args.contacts),
        ("contacts: province", f"/contacts?key=province&value={PROVINCES[2]}&page=40", fifth),
        ("contacts: number", "/contacts?msisdn=%2B855960000123", 0),
        ("contacts: page 400", "/contacts?page=400", args.contacts),
        ("a contact", f"/contacts/{ids['contact']}", 0),
        ("phone calls", "/phone_calls", args.calls),
        ("phone calls: completed", "/phone_calls?status=completed", calls_fifth),
        ("a phone call", f"/phone_calls/{ids['call']}", 0),
        ("population preview", f"/batch_operations/{ids['population']}", 0),  # the API's preview counts exactly
        ("account", "/account", 0),
    ]


def sign_in(base: str, token: str):
    session = http_session()
    form = session.get(f"{base}/sign_in", timeout=30)
    form_fields = {"access_token": token, "csrf_token": CSRF.search(form.text).group(1)}
    answer = session.post(f"{base}/sign_in", data=form_fields, allow_redirects=False, timeout=30)
    if answer.status_code != 302:
        raise BenchError(f"sign-in: {answer.status_code} {answer.text[:300]}")
    return session


def check(path: str, response, rows: int) -> None:
    if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith("text/html"):
        raise BenchError(f"{path}: {response.status_code} {response.text[:300]}")
    if rows > CAP and "about " not in response.text:
        raise BenchError(f"{path}: {rows:,} rows but no estimated total on the page")


def measure(base: str, session, targets: list, rounds: int) -> dict[str, tuple[list[float], int]]:
    """Each page in turn, `rounds` times: {name: (seconds of each request, bytes of the last answer)}."""
    found: dict[str, tuple[list[float], int]] = {name: ([], 0) for name, _path, _rows in targets}
    for _ in range(rounds):
        for name, path, rows in targets:
            started = time.perf_counter()
            response = session.get(base + path, timeout=60)
            found[name][0].append(time.perf_counter() - started)
            check(path, response, rows)
            found[name] = (found[name][0], len(response.content))
    return found


def run(env, procs, args) -> list[Result]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    groups = {procs.api(port).popen.pid: "api (scfm serve)"}
    admin = admin_api(env.deps)
    account_id, token = new_account(admin)
    api = Api(admin.client, token)
    with closing(env.connect()) as raw:
        load_contacts(raw, account_id, args.contacts)
        ids = load_callouts(raw, api, account_id, args)
    targets = pages(ids, args)
    session = sign_in(base, token)
    measure(base, session, targets, 2)  # warm-up: connections, caches, the planner's statistics
    progress(f"{len(targets)} pages, {args.requests} times each, through `scfm serve`")
    with CpuMeter(groups) as cpu:
        found = measure(base, session, targets, args.requests)
    print(f"  {cpu.line()}", flush=True)
    results = []
    for name, (seconds, size) in found.items():
        p50, p99, kb = percentile(seconds, 50) * 1000, percentile(seconds, 99) * 1000, size / 1024
        value = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {kb:.1f} KB"
        print(f"{name}: {value}", flush=True)
        results.append(Result(name, value, f"< {TARGET_MS:g} ms; < {TARGET_KB:g} KB",
                              p99 < TARGET_MS and kb < TARGET_KB))
    assets = sum(len(session.get(base + path, timeout=30).content) for path in ASSETS) / 1024
    results.append(Result("style sheet and script", f"{assets:.1f} KB", "cached", None))
    return results


def main(args: argparse.Namespace) -> int:
    def body():
        # a key of this run for the server's workers (else the app keeps one in ./.scfm/)
        key = {"SCFM_SECRET_KEY": secrets.token_urlsafe(32)}
        with throwaway_env("dashboard", keep=args.keep, extra_env=key) as env, \
                processes(env.child_env()) as procs:
            results = run(env, procs, args)
        print("\n" + summary(f"dashboard pages through `scfm serve`, {args.contacts:,} contacts, {args.requests} "
                             "requests each", results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=1_000_000, metavar="N", help="contacts (default 1,000,000)")
    parser.add_argument("--participations", type=int, default=500_000, metavar="N",
                        help="contacts in the big callout (default 500,000)")
    parser.add_argument("--calls", type=int, default=100_000, metavar="N",
                        help="phone calls of the big callout (default 100,000)")
    parser.add_argument("--callouts", type=int, default=30, metavar="N", help="callouts (default 30)")
    parser.add_argument("--requests", type=int, default=30, metavar="N", help="timed requests per page (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
