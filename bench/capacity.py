"""End-to-end capacity: the highest rate at which one machine dials with every status callback ingested.

The cluster and the fake provider of `dialing` (the far end of each call sends 2 to 4 signed status callbacks,
3.65 on average). For each of --rates (default 50 to 250 calls/s): an account at that rate with rate x --seconds
calls queued by a PhoneCallQueue. A rate holds when
  - the steady rate at the provider is >= 95% of it, and no second (any sliding 1-second window) above it;
  - every callback was answered 2xx, 99% of them within 1 s;
  - nothing is left behind: every call ended in our database as it did at the provider, one event recorded
    per callback, no callback still to send.
Printed for each rate: calls/s, callbacks/s and their p99, the cores used by each process; then the highest
rate that held (target 200 calls/s). Every rate is tried: on a shared machine one may fail and the next hold.
`--rates 1,10,100 --seconds 20` measures the dialer's accuracy at low rates (>= 95% is the target from 10/s on).
The server's ceilings are raised through the environment (SCFM_MAX_CALLS_PER_SECOND, SCFM_MAX_CALLS_IN_FLIGHT).
"""
from __future__ import annotations

import argparse

from bench.common import Result, guarded, summary
from bench.dialing import Cluster, add_cluster_arguments, with_cluster

TARGET = 200


def main(args: argparse.Namespace) -> int:
    def measure(cluster: Cluster, _server: dict) -> list[Result]:
        steps = [cluster.run_rate(rate, args.seconds, "capacity") for rate in args.rates]
        held = max([rate for rate, (holds, _results) in zip(args.rates, steps) if holds], default=0)
        return [Result("capacity: the highest rate that held", f"{held:g} calls/s", f">= {TARGET} calls/s",
                       held >= TARGET, f"of {', '.join(f'{rate:g}' for rate in args.rates)}"),
                *(each for _holds, results in steps for each in results)]

    return guarded(lambda: print("\n" + summary(
        f"end-to-end capacity ({args.api_workers} gunicorn workers x 4 threads, {args.workers} `scfm worker`s, one "
        f"`scfm dialer`, {args.seconds:g}s of calls per rate)",
        with_cluster("capacity", args, len(args.rates), max(args.rates), max(args.rates), measure)), flush=True))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", type=lambda text: [float(x) for x in text.split(",")], metavar="R,R,...",
                        default=[50.0, 100.0, 150.0, 200.0, 250.0], help="calls/s to try (default 50,100,150,200,250)")
    parser.add_argument("--seconds", type=float, default=60.0, help="calls = rate x this (default 60)")
    add_cluster_arguments(parser)
