"""A signed status callback through the app against the same work by hand.

One account with somleng credentials and --requests remotely queued calls (inserted by SQL). A ringing callback
of each, signed as the provider signs them, through the Flask app in this process, one at a time: CPU, wall
time and statements per request; then the same work by hand with psycopg2: the signature checked, the account
found, the call updated and the event inserted in one transaction. Target: the CPU at most 2x by hand. (How
many callbacks one machine ingests through gunicorn, while it dials, is the `capacity` benchmark's.)
"""
from __future__ import annotations

import argparse
import json
import time
from contextlib import closing
from email.utils import formatdate

from sqlalchemy import event
from twilio.request_validator import RequestValidator

from bench.common import (
    BenchError, Result, admin_api, guarded, new_account, progress, remotely_queued_calls, summary, throwaway_env, versus,
)
from scfm.domain.state_machines import PhoneCallStatus
from scfm.entrypoints.app import create_app

CPU_TARGET = 2.0
SID, TOKEN = "AC" + "5" * 32, "bench-webhook-token"


def callback(public: str, call: tuple, status: str) -> tuple[str, dict, str]:
    """(path, form, signature) of one status callback of `call` (id, sid, msisdn) as the provider sends it."""
    call_id, call_sid, msisdn = call
    params = {"CallSid": call_sid, "AccountSid": SID, "From": "1234", "To": msisdn, "Called": msisdn,
              "Caller": "1234", "CallStatus": status, "Direction": "outbound-api", "ApiVersion": "2010-04-01",
              "Timestamp": formatdate(usegmt=True), "CallbackSource": "call-progress-events",
              "SequenceNumber": "0", **({"CallDuration": "12"} if status == "completed" else {})}
    path = f"/api/remote_phone_call_events?phone_call_id={call_id}"
    return path, params, RequestValidator(TOKEN).compute_signature(public + path, params)


def in_process(env, public: str, calls: list) -> tuple[float, float, float]:
    """Ringing callbacks through the Flask app in this process, one at a time, after ten to warm up:
    (wall seconds, CPU seconds, statements) per request."""
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


def run(env, args) -> list[Result]:
    public = "http://127.0.0.1:3000"  # PUBLIC_URL, which the signature covers
    account_id, _token = new_account(admin_api(env.deps), platform_provider_name="somleng",
                                     somleng_account_sid=SID, somleng_auth_token=TOKEN)
    with closing(env.connect()) as raw:
        calls = remotely_queued_calls(raw, account_id, args.requests + 10)
        progress(f"{args.requests} callbacks through the app, one at a time, then by hand")
        wall, cpu, statements = in_process(env, public, calls)
        hand_wall, hand_cpu = by_hand(raw, public, calls[10:])
    return [versus("webhook CPU per request", cpu * 1000, hand_cpu * 1000, "ms", f"<= {CPU_TARGET:g}x",
                   cpu <= CPU_TARGET * hand_cpu, f"{statements:.1f} statements per request; by hand 3"),
            versus("webhook wall time per request", wall * 1000, hand_wall * 1000, "ms")]


def main(args: argparse.Namespace) -> int:
    def body():
        with throwaway_env("webhook", keep=args.keep, extra_env={"PUBLIC_URL": "http://127.0.0.1:3000"}) as env:
            results = run(env, args)
        print("\n" + summary("a status callback through the app vs the same work by hand", results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=500, metavar="N",
                        help="callbacks through the app, and by hand, after ten to warm up (default 500)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end, to look into it")
