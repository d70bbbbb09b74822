"""Batch operations at scale: the API and the worker against the same SQL written by hand.

One account with --contacts contacts (gender f/m alternating, province among 5, age), then each of these
through the API and an RQ worker in this process (the real job code path), from the queue request to
`finished`, and as hand-written SQL with psycopg2 on the same database:

  populate half         a CalloutPopulation filtered on metadata gender=f (by hand: INSERT ... SELECT ...
                        ON CONFLICT DO NOTHING into a fresh callout)
  populate all          a CalloutPopulation of every contact, into a second callout
  create calls          a PhoneCallCreate of that callout (by hand: INSERT INTO phone_calls ... SELECT)
  preview population    the first page of /preview/contacts of a fresh population of every contact, with its
                        Total (by hand: count(*) and the first 25 rows)
  preview create calls  the first page of /preview/callout_participations of a fresh PhoneCallCreate

Each is printed as `ratio (ours, by hand)`; the rows made and the pages shown must be the same.
"""
from __future__ import annotations

import argparse
import time

from bench.common import (
    Api, BenchError, admin_api, guarded, load_contacts, new_account, progress, run_jobs, summary, throwaway_env,
    versus,
)

POPULATION = "BatchOperation::CalloutPopulation"
PHONE_CALL_CREATE = "BatchOperation::PhoneCallCreate"
CREATE_PARAMETERS = {"parameters[remote_request_params][from]": "1234",
                     "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml"}
PREVIEW_TARGET_SECONDS = 1.0


class Bench:
    def __init__(self, env, contacts: int):
        self.env, self.n, self.results = env, contacts, []
        self.raw = env.connect()  # for the hand-written SQL
        admin = admin_api(env.deps)
        self.account_id, token = new_account(admin)
        self.api = Api(admin.client, token)
        load_contacts(self.raw, self.account_id, contacts)

    def by_hand(self, *queries: str, **params) -> tuple[float, list]:
        """Seconds of the queries in one transaction, commit included, and the last one's rows."""
        started = time.perf_counter()
        with self.raw.cursor() as cur:
            for query in queries:
                cur.execute(query, {"account": self.account_id, **params})
            rows = cur.fetchall() if cur.description else []
        self.raw.commit()
        return time.perf_counter() - started, rows

    def value(self, query: str, **params):
        """The first column of the first row."""
        return self.by_hand(query, **params)[1][0][0]

    def hand_callout(self, type_: str) -> tuple[int, int]:
        """A fresh callout and an operation row for the hand-written SQL to mark its rows with."""
        callout = self.value("INSERT INTO callouts (account_id) VALUES (%(account)s) RETURNING id")
        return callout, self.value("INSERT INTO batch_operations (account_id, callout_id, type, parameters, status) "
                                   "VALUES (%(account)s, %(callout)s, %(type)s, '{}', 'finished') RETURNING id",
                                   callout=callout, type=type_)

    def new_operation(self, callout_id: int, type_: str, parameters: dict) -> int:
        data = {"type": type_, **parameters}
        return self.api.post(f"/api/callouts/{callout_id}/batch_operations", data).get_json()["id"]

    def ours(self, operation_id: int) -> float:
        """Seconds from queueing the operation until it is finished, the worker running its jobs."""
        started = time.perf_counter()
        self.api.post(f"/api/batch_operations/{operation_id}/batch_operation_events", {"event": "queue"})
        run_jobs(self.env.deps)
        operation = self.api.get(f"/api/batch_operations/{operation_id}").get_json()
        if operation["status"] != "finished":
            raise BenchError(f"operation {operation_id} is {operation['status']}: {operation['error_message']}")
        return time.perf_counter() - started

    def compare(self, name: str, ours: float, by_hand: float, made: int, hand_made: int, expected: int) -> None:
        if not made == hand_made == expected:
            raise BenchError(f"{name}: ours made {made}, by hand {hand_made}, expected {expected}")
        self.results.append(versus(name, ours, by_hand, note=f"{made:,} rows"))

    def populate(self, name: str, gender: str | None, expected: int) -> tuple[int, int]:
        """Ours, then by hand, into fresh callouts; the two callouts' ids."""
        progress(name)
        callout = self.api.post("/api/callouts").get_json()["id"]
        parameters = {"parameters[contact_filter_params][metadata][gender]": gender} if gender else {}
        ours = self.ours(self.new_operation(callout, POPULATION, parameters))
        hand_callout, hand_operation = self.hand_callout(POPULATION)
        by_hand, _rows = self.by_hand(f"""
            INSERT INTO callout_participations (account_id, callout_id, contact_id, callout_population_id, msisdn,
                                                created_at, updated_at)
            SELECT %(account)s, %(callout)s, id, %(operation)s, msisdn, now(), now() FROM contacts
            WHERE account_id = %(account)s AND {"metadata @> %(filter)s::jsonb" if gender else "TRUE"}
            ON CONFLICT DO NOTHING""", callout=hand_callout, operation=hand_operation, filter=f'{{"gender": "{gender}"}}')
        made = "SELECT count(*) FROM callout_participations WHERE callout_id = %(callout)s"
        self.compare(name, ours, by_hand, self.value(made, callout=callout), self.value(made, callout=hand_callout),
                     expected)
        return callout, hand_callout

    def create_calls(self, callout: int, hand_callout: int) -> None:
        progress("create calls")
        operation = self.new_operation(callout, PHONE_CALL_CREATE, CREATE_PARAMETERS)
        ours = self.ours(operation)
        _unused, hand_operation = self.hand_callout(PHONE_CALL_CREATE)
        by_hand, _rows = self.by_hand("""
            INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, create_batch_operation_id,
                                     status, msisdn, remote_request_params, created_at, updated_at)
            SELECT %(account)s, id, contact_id, %(operation)s, 'created', msisdn, %(params)s::jsonb, now(), now()
            FROM callout_participations WHERE account_id = %(account)s AND callout_id = %(callout)s""",
            callout=hand_callout, operation=hand_operation,
            params='{"from": "1234", "url": "https://demo.twilio.com/docs/voice.xml"}')
        made = "SELECT count(*) FROM phone_calls WHERE create_batch_operation_id = %(operation)s"
        self.compare("create calls", ours, by_hand, self.value(made, operation=operation),
                     self.value(made, operation=hand_operation), self.n)

    def preview(self, name: str, path: str, where: str, columns: str, **params) -> None:
        """The first page through the API against count(*) and the same page by hand."""
        progress(name)
        started = time.perf_counter()
        response = self.api.get(path)
        ours = time.perf_counter() - started
        total, ids = int(response.headers["Total"]), [item["id"] for item in response.get_json()]
        counting, counted = self.by_hand(f"SELECT count(*) {where}", **params)
        paging, rows = self.by_hand(f"SELECT {columns} {where} ORDER BY 1 LIMIT 25", **params)
        hand_total, hand_ids = counted[0][0], [row[0] for row in rows]
        if not total == hand_total == self.n or ids != hand_ids:
            raise BenchError(f"{name}: ours Total {total} {ids[:3]}.., by hand {hand_total} {hand_ids[:3]}..")
        self.results.append(versus(name, ours, counting + paging, target=f"< {PREVIEW_TARGET_SECONDS:g} s",
                                   meets=ours < PREVIEW_TARGET_SECONDS, note=f"Total {total:,}", digits=3))

    def run(self) -> None:
        self.populate("populate half", "f", (self.n + 1) // 2)
        callout, hand_callout = self.populate("populate all", None, self.n)
        self.create_calls(callout, hand_callout)
        fresh = self.api.post("/api/callouts").get_json()["id"]
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
        with throwaway_env("batch", keep=args.keep) as env:
            bench = Bench(env, args.contacts)
            try:
                bench.run()
            finally:
                bench.raw.close()
        print("\n" + summary(f"batch operations, {args.contacts:,} contacts (ours through the API and the worker)",
                             bench.results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=1_000_000, metavar="N",
                        help="contacts in the account (default 1,000,000; at most 9,999,999)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
