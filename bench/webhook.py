"""A signed status callback through the app against the same work by hand.

One account with somleng credentials and remotely queued calls (inserted by SQL). A ringing callback of each,
signed as the provider signs them. Ours: the bytes of the request, as a WSGI server hands them over (a
prebuilt environ), given to the app in this process, one at a time. By hand, with psycopg2: the body parsed,
the signature checked, and exactly the statements ours runs (the same SQL text and parameters, taken from
ours while it warms up), then the commit. The two alternate in batches of --batch, so load shifting on the
machine falls on both alike. Target: the CPU at most 2x by hand. (How many callbacks one machine ingests
through `scfm serve`, while it dials, is the `capacity` benchmark's.)
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import time
from contextlib import closing
from datetime import datetime, timezone
from email.utils import formatdate
from urllib.parse import parse_qsl, urlencode

from psycopg2.extras import Json
from sqlalchemy import event
from twilio.request_validator import RequestValidator

from bench.common import (
    BenchError, Result, admin_api, guarded, new_account, progress, remotely_queued_calls, summary, throwaway_env, versus,
)
from scfm.domain.state_machines import PhoneCallStatus
from scfm.entrypoints.app import create_app

CPU_TARGET = 2.0
SID, TOKEN = "AC" + "5" * 32, "bench-webhook-token"
PUBLIC = "http://127.0.0.1:3000"  # PUBLIC_URL, which the signature covers


def callback(call: tuple) -> tuple[str, bytes, str]:
    """(query string, body, signature) of a ringing callback of `call` (id, sid, msisdn) as the provider sends it."""
    call_id, call_sid, msisdn = call
    params = {"CallSid": call_sid, "AccountSid": SID, "From": "1234", "To": msisdn, "Called": msisdn,
              "Caller": "1234", "CallStatus": "ringing", "Direction": "outbound-api", "ApiVersion": "2010-04-01",
              "Timestamp": formatdate(usegmt=True), "CallbackSource": "call-progress-events", "SequenceNumber": "0"}
    query = f"phone_call_id={call_id}"
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/api/remote_phone_call_events?{query}", params)
    return query, urlencode(params).encode(), signature


def environ(query: str, body: bytes, signature: str) -> dict:
    """The request as a WSGI server hands it to the app."""
    return {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/api/remote_phone_call_events",
            "QUERY_STRING": query, "RAW_URI": f"/api/remote_phone_call_events?{query}", "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "3000", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000",
            "HTTP_HOST": "127.0.0.1:3000", "HTTP_USER_AGENT": "TwilioProxy/1.1", "HTTP_ACCEPT": "*/*",
            "HTTP_X_TWILIO_SIGNATURE": signature, "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
            "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False}


class Ours:
    def __init__(self, env, calls: list):
        self.app = create_app(env.deps)
        self.environs = [environ(*callback(call)) for call in calls]

    def run(self, count: int) -> None:
        def start_response(status, _headers):
            statuses.append(status)

        for _ in range(count):
            statuses: list[str] = []
            body = b"".join(self.app(self.environs.pop(), start_response))
            if statuses != ["201 CREATED"]:
                raise BenchError(f"in-process webhook: {statuses} {body[:200]!r}")


class ByHand:
    """The signature and our statements, written plainly with psycopg2 on a connection of its own."""

    def __init__(self, raw, calls: list, statements: list[tuple[str, dict]]):
        prepares = [sql for sql, _params in statements if sql.startswith("PREPARE")]
        executes = [(sql, params) for sql, params in statements if sql.startswith("EXECUTE")]
        if len(prepares) != 2 or len(executes) != 2:
            raise BenchError(f"ours ran {[sql[:40] for sql, _ in statements]}, not the two prepared statements")
        (self.find, _), (self.record, record_params) = executes
        self.raw, self.requests = raw, [callback(call) for call in calls]
        # what ours changes of a ringing call, and what it leaves as it is
        self.changed = sorted(record_params["changed"])
        self.unchanged = {name: None for name in record_params if name.startswith("call_")
                          and name[len("call_"):] not in self.changed}
        with raw.cursor() as cur:
            for sql in prepares:
                cur.execute(sql)
            cur.execute(self.find, {"account_sid": SID, "call_sid": ""})
            names = [column.name for column in cur.description]
        raw.commit()
        self.token_at, self.call_at = names.index("somleng_auth_token"), names.index("id", 1)
        self.status_at = names.index("status")

    def run(self, count: int) -> None:
        with self.raw.cursor() as cur:
            for _ in range(count):
                query, body, signature = self.requests.pop()
                url = f"{PUBLIC}/api/remote_phone_call_events?{query}"
                pairs = parse_qsl(body.decode(), keep_blank_values=True)
                form = dict(pairs)
                cur.execute(self.find, {"account_sid": form["AccountSid"], "call_sid": form["CallSid"]})
                row = cur.fetchone()
                signed = url + "".join(name + value for name, value in sorted(pairs))
                expected = base64.b64encode(hmac.digest(row[self.token_at].encode(), signed.encode(), "sha1"))
                if not hmac.compare_digest(expected, signature.encode()):
                    raise BenchError("by hand: bad signature")
                cur.execute(self.record, {
                    **self.unchanged, "call_status": PhoneCallStatus.IN_PROGRESS.value, "call_remote_status": form["CallStatus"],
                    "call_remote_status_updated_at": datetime.now(timezone.utc), "changed": self.changed, "call_id": row[self.call_at],
                    "account_id": row[0], "details": Json(form), "remote_call_id": form["CallSid"],
                    "remote_direction": form["Direction"], "call_flow_logic": "CallFlowLogic::HelloWorld",
                    "metadata": Json({}), "request_digest": hashlib.sha256(url.encode() + body).digest()})
                if cur.fetchone() is None:
                    raise BenchError("by hand: nothing recorded")
                self.raw.commit()


def warm_up(env, ours: Ours, count: int) -> list[tuple[str, dict]]:
    """Ours' first requests, with the statements each ran (SQL text, parameters); a listener makes the
    statements dearer, so none is attached while ours is timed."""
    seen: list[tuple[str, dict]] = []

    def record(_conn, _cursor, statement, parameters, *_args):
        seen.append((statement, parameters))

    event.listen(env.deps.engine, "before_cursor_execute", record)
    try:
        ours.run(count)
    finally:
        event.remove(env.deps.engine, "before_cursor_execute", record)
    return seen


def run(env, args) -> list[Result]:
    account_id, _token = new_account(admin_api(env.deps), platform_provider_name="somleng",
                                     somleng_account_sid=SID, somleng_auth_token=TOKEN)
    warm = 10
    with closing(env.connect()) as raw:
        calls = remotely_queued_calls(raw, account_id, 2 * args.requests + 2 * warm)
        ours = Ours(env, calls[:args.requests + warm])
        statements = warm_up(env, ours, 1)
        ours.run(warm - 1)
        hand = ByHand(raw, calls[args.requests + warm:], statements)
        hand.run(warm)
        progress(f"{args.requests} callbacks through the app and {args.requests} by hand, alternating in batches "
                 f"of {args.batch}")
        spent = {ours: [0.0, 0.0], hand: [0.0, 0.0]}  # wall, CPU seconds
        for start in range(0, args.requests, args.batch):
            for side in (ours, hand) if start // args.batch % 2 == 0 else (hand, ours):
                wall, cpu = time.perf_counter(), time.process_time()
                side.run(min(args.batch, args.requests - start))
                spent[side][0] += time.perf_counter() - wall
                spent[side][1] += time.process_time() - cpu
    (wall, cpu), (hand_wall, hand_cpu) = ([1000 * s / args.requests for s in spent[side]] for side in (ours, hand))
    note = f"{sum(sql.startswith('EXECUTE') for sql, _ in statements)} statements per request, by hand the same"
    return [versus("webhook CPU per request", cpu, hand_cpu, "ms", f"<= {CPU_TARGET:g}x", cpu <= CPU_TARGET * hand_cpu,
                   note, digits=3),
            versus("webhook wall time per request", wall, hand_wall, "ms", digits=3)]


def main(args: argparse.Namespace) -> int:
    def body():
        with throwaway_env("webhook", keep=args.keep, extra_env={"PUBLIC_URL": PUBLIC}) as env:
            results = run(env, args)
        print("\n" + summary("a status callback through the app vs the same work by hand", results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=1000, metavar="N",
                        help="callbacks through the app, and as many by hand, after ten each to warm up (default 1000)")
    parser.add_argument("--batch", type=int, default=50, metavar="N",
                        help="callbacks in a row on one side before the other takes its turn (default 50)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
