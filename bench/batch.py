"""Batch operations on --contacts contacts through the API and a `scfm worker` (from the queue request to
`finished`) against the same SQL written by hand, with psycopg2; the rows made and pages shown must be the same:

  populate half / all   a CalloutPopulation filtered on metadata gender=f, then of every contact (by hand:
                        INSERT ... SELECT ... ON CONFLICT DO NOTHING into a fresh callout)
  create calls          a PhoneCallCreate of the second callout (by hand: INSERT INTO phone_calls ... SELECT ...
                        ORDER BY id: calls are made in the order of their participations)
  preview population    the first page of /preview/contacts of a fresh population of every contact, with its
                        Total (by hand: count(*) and the first 25 rows)
  preview create calls  the first page of /preview/callout_participations of a fresh PhoneCallCreate
"""
from __future__ import annotations

import argparse
import time
from contextlib import closing

from rq import Worker

from bench.common import (
    Api, BenchError, admin_api, guarded, load_contacts, new_account, processes, progress, summary, throwaway_env,
    versus, wait_finished,
)
from scfm.domain.state_machines import BatchOperationStatus, PhoneCallStatus

POPULATION, PHONE_CALL_CREATE = "BatchOperation::CalloutPopulation", "BatchOperation::PhoneCallCreate"
CREATE_PARAMETERS = {"parameters[remote_request_params][from]": "1234",
                     "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml"}
PREVIEW_TARGET_SECONDS = 1.0  # the first page of a preview
EXACT_TOTAL_UP_TO = 10_000  # a preview's Total is counted up to this, estimated beyond (docs/behaviour.md)


class Bench:
    def __init__(self, env, procs, contacts: int, raw):
        self.env, self.procs, self.n, self.raw, self.results = env, procs, contacts, raw, []
        admin = admin_api(env.deps)
        self.account_id, token = new_account(admin)
        self.api = Api(admin.client, token)
        load_contacts(self.raw, self.account_id, contacts)

    def by_hand(self, query: str, **params) -> tuple[float, list]:
        """Seconds of the query, commit included, and its rows."""
        started = time.perf_counter()
        with self.raw.cursor() as cur:
            cur.execute(query, {"account": self.account_id, **params})
            rows = cur.fetchall() if cur.description else []
        self.raw.commit()
        return time.perf_counter() - started, rows

    def value(self, query: str, **params):
        return self.by_hand(query, **params)[1][0][0]

    def new_operation(self, callout_id: int, type_: str, parameters: dict) -> int:
        return self.api.post(f"/api/callouts/{callout_id}/batch_operations", {"type": type_, **parameters}).json["id"]

    def measure(self, name: str, callout: int, type_: str, parameters: dict, by_hand: str, made: str,
                expected: int, **params) -> None:
        """The operation through the API and the worker (queue request to `finished`), then by hand into a fresh
        callout and an operation row that marks its rows; both must make `expected` rows."""
        progress(name)
        operation, started = self.new_operation(callout, type_, parameters), time.perf_counter()
        self.api.post(f"/api/batch_operations/{operation}/batch_operation_events", {"event": "queue"})
        wait_finished(self.api, operation, self.procs)
        ours = time.perf_counter() - started
        params["callout"] = self.value("INSERT INTO callouts (account_id) VALUES (%(account)s) RETURNING id")
        params["operation"] = self.value(
            "INSERT INTO batch_operations (account_id, callout_id, type, parameters, status) "
            "VALUES (%(account)s, %(callout)s, %(type)s, '{}', %(status)s) RETURNING id",
            callout=params["callout"], type=type_, status=BatchOperationStatus.FINISHED.value)
        seconds, _rows = self.by_hand(by_hand, **params)
        counts = [self.value(made, operation=each) for each in (operation, params["operation"])]
        if not counts[0] == counts[1] == expected:
            raise BenchError(f"{name}: ours made {counts[0]}, by hand {counts[1]}, expected {expected}")
        self.results.append(versus(name, ours, seconds, note=f"{expected:,} rows"))

    def preview(self, name: str, path: str, where: str, columns: str, **params) -> None:
        """The first page through the API against count(*) and the same page by hand."""
        progress(name)
        started = time.perf_counter()
        response = self.api.get(path)
        ours = time.perf_counter() - started
        total, ids = int(response.headers["Total"]), [item["id"] for item in response.json]
        estimated = response.headers.get("Total-Estimated") == "true"  # past 10,000: PostgreSQL's estimate
        counting, counted = self.by_hand(f"SELECT count(*) {where}", **params)
        paging, rows = self.by_hand(f"SELECT {columns} {where} ORDER BY 1 LIMIT 25", **params)
        if (counted[0][0] != self.n or ids != [row[0] for row in rows]
                or not (total > EXACT_TOTAL_UP_TO if estimated else total == self.n)):
            raise BenchError(f"{name}: ours Total {total} {ids[:3]}.., by hand {counted[0][0]} {rows[:3]}..")
        note = f"Total {total:,}" + (f" (estimated; counted {counted[0][0]:,})" if estimated else "")
        self.results.append(versus(name, ours, counting + paging, target=f"< {PREVIEW_TARGET_SECONDS:g} s",
                                   meets=ours < PREVIEW_TARGET_SECONDS, note=note, digits=3))

    def run(self) -> None:
        for name, gender in [("populate half", "f"), ("populate all", None)]:
            callout = self.api.post("/api/callouts").json["id"]
            self.measure(name, callout, POPULATION,
                         {"parameters[contact_filter_params][metadata][gender]": gender} if gender else {}, f"""
                INSERT INTO callout_participations (account_id, callout_id, contact_id, callout_population_id,
                                                    msisdn, created_at, updated_at)
                SELECT %(account)s, %(callout)s, id, %(operation)s, msisdn, now(), now() FROM contacts
                WHERE account_id = %(account)s AND {"metadata @> %(filter)s::jsonb" if gender else "TRUE"}
                ON CONFLICT DO NOTHING""",
                         "SELECT count(*) FROM callout_participations WHERE callout_population_id = %(operation)s",
                         (self.n + 1) // 2 if gender else self.n, filter=f'{{"gender": "{gender}"}}')
        # of the callout populated with every contact; by hand, of its participations too (into fresh calls)
        self.measure("create calls", callout, PHONE_CALL_CREATE, CREATE_PARAMETERS, """
            INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, create_batch_operation_id,
                                     status, msisdn, remote_request_params, created_at, updated_at)
            SELECT %(account)s, id, contact_id, %(operation)s, %(status)s, msisdn, %(params)s::jsonb, now(), now()
            FROM callout_participations WHERE account_id = %(account)s AND callout_id = %(source)s ORDER BY id""",
                     "SELECT count(*) FROM phone_calls WHERE create_batch_operation_id = %(operation)s", self.n,
                     source=callout, status=PhoneCallStatus.CREATED.value,
                     params='{"from": "1234", "url": "https://demo.twilio.com/docs/voice.xml"}')
        fresh = self.api.post("/api/callouts").json["id"]
        operation = self.new_operation(fresh, POPULATION, {})
        self.preview("preview population", f"/api/batch_operations/{operation}/preview/contacts", """
            FROM contacts c WHERE c.account_id = %(account)s
              AND NOT EXISTS (SELECT 1 FROM callout_participations p WHERE p.callout_id = %(callout)s AND p.contact_id = c.id)
              AND NOT EXISTS (SELECT 1 FROM callout_participations p WHERE p.callout_id = %(callout)s AND p.msisdn = c.msisdn)
            """, "c.*", callout=fresh)
        operation = self.new_operation(callout, PHONE_CALL_CREATE, CREATE_PARAMETERS)
        self.preview("preview create calls", f"/api/batch_operations/{operation}/preview/callout_participations", """
            FROM callout_participations p JOIN callouts co ON co.id = p.callout_id
            WHERE p.account_id = %(account)s AND p.callout_id = %(callout)s
              AND NOT EXISTS (SELECT 1 FROM phone_calls pc
                              WHERE pc.callout_participation_id = p.id AND pc.create_batch_operation_id = %(operation)s)
            """, "p.*, co.call_flow_logic", callout=callout, operation=operation)


def main(args: argparse.Namespace) -> int:
    def body():
        with throwaway_env("batch", keep=args.keep) as env, closing(env.connect()) as raw, \
                processes(env.child_env()) as procs:
            procs.scfm("worker", "worker")
            while not Worker.count(queue=env.deps.queue):  # ready: its start is not the first operation's time
                procs.check_alive()
                time.sleep(0.1)
            bench = Bench(env, procs, args.contacts, raw)
            bench.run()
        print("\n" + summary(f"batch operations, {args.contacts:,} contacts (ours through the API and a `scfm worker`)",
                             bench.results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=1_000_000, metavar="N",
                        help="contacts in the account (default 1,000,000; at most 9,999,999)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
