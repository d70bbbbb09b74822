"""The fake provider in a process of its own, with the far end simulated: calls ring, then end, and the
provider reports them (or drops the report). Its clock and threads are then not the test's.

    python -m tests.support.provider_process --port P --account SID:TOKEN [--rate R] [--fail-ratio F] ...

GET /_report answers what it saw: every create request with its time, status code and our phone call id.
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.support.fake_provider import FakeProvider


def simulate_calls(provider: FakeProvider, stop: threading.Event, rng: random.Random) -> None:
    progress: dict[str, tuple[int, float]] = {}
    while not stop.is_set():
        now = time.monotonic()
        # the sids alone: copying every call's resource under the provider's lock ten times a second held its
        # GIL for tens of ms at a time as calls piled up, and delayed the create stamps of its handler threads
        for sid in provider.call_sids():
            step, due = progress.get(sid, (0, 0.0))
            if step == 3:
                continue
            if step == 0:
                progress[sid] = (1, now + rng.uniform(0.2, 1.0))
            elif step == 1 and now >= due:
                provider.set_status(sid, "ringing")
                _callback(provider, sid)
                progress[sid] = (2, now + rng.uniform(0.3, 1.5))
            elif step == 2 and now >= due:
                final = rng.choices(["completed", "busy", "no-answer", "failed"], [70, 10, 15, 5])[0]
                provider.set_status(sid, final, duration=rng.randint(1, 60) if final == "completed" else None)
                _callback(provider, sid)
                progress[sid] = (3, 0.0)
        stop.wait(0.1)


def _callback(provider: FakeProvider, sid: str) -> None:
    try:
        provider.send_status_callback(sid)
    except (ValueError, OSError):
        pass  # no callback URL, or the API is restarting: our sweeper's fetch will find out


def phone_call_id(params: dict) -> int | None:
    callback = params.get("StatusCallback")
    values = parse_qs(urlparse(callback).query).get("phone_call_id") if callback else None
    return int(values[0]) if values else None


def report(provider: FakeProvider) -> dict:
    return {
        "creates": [{"at": r["at"], "status_code": r.get("status_code"), "sid": r["sid"],
                     "phone_call_id": phone_call_id(r["params"])} for r in list(provider.created_calls)],
        "fetches": len(provider.fetches),
        "callbacks": len(provider.callbacks),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--report-port", type=int, required=True)
    parser.add_argument("--account", required=True, help="SID:TOKEN")
    parser.add_argument("--rate", type=float)
    parser.add_argument("--fail-ratio", type=float, default=0.0)
    parser.add_argument("--drop-callbacks", type=float, default=0.0)
    parser.add_argument("--delay-seconds", type=float, default=0.0)
    parser.add_argument("--delay-ratio", type=float, default=1.0)
    parser.add_argument("--fail-after-create", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # the create timestamps are what the rate is judged by: a request must not wait behind the callback
    # thread for the interpreter lock (5 ms slices by default) before it is stamped
    sys.setswitchinterval(0.0005)
    sid, token = args.account.split(":", 1)
    provider = FakeProvider({sid: token}, rate_limit_per_second=args.rate, fail_ratio=args.fail_ratio,
                            seed=args.seed, drop_callbacks=args.drop_callbacks, delay_seconds=args.delay_seconds,
                            delay_ratio=args.delay_ratio, fail_after_create=args.fail_after_create, port=args.port)
    provider.start()
    stop = threading.Event()
    threading.Thread(target=simulate_calls, args=(provider, stop, random.Random(args.seed)), daemon=True).start()

    class Report(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(report(provider)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    reporter = ThreadingHTTPServer(("127.0.0.1", args.report_port), Report)
    threading.Thread(target=reporter.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    while not stop.wait(0.2):
        pass
    reporter.shutdown()
    provider.stop()


if __name__ == "__main__":
    main()
