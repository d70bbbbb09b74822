"""The sweeper during a callback outage: --calls silent calls, no worker to run the jobs.

Builds a throwaway database with one account and --calls phone calls `remotely_queued` an hour ago that never
heard from the provider again (the status callbacks are cut), on a Redis of its own (an embedded one, so
that its memory is the queue's alone). No worker runs: the jobs pile up as they would behind dead or slow
workers. Then it runs the sweeper (services/sweeper.py) --minutes times 6 sweeps back to back, 6 sweeps being
a minute at the default SCFM_SWEEP_INTERVAL of 10 s, with the default timings (a silent call is fetched after
10 minutes without news). Printed, per minute: the jobs the sweeper enqueued and the jobs waiting; at the end
Redis's used memory. When the code records when a fetch was queued (phone_calls.remote_fetch_queued_at), one
more minute is run with every fetch queued 11 minutes ago, when the sweeper finds all of them lost.

Runs against any version of the code (the figures come from the queue, not from what the sweeper answers),
so the same file gives the before and the after: copy it into a checkout of the older code and run
`python -m bench.sweeper` there.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BenchError, Result, progress, summary, throwaway_env

SWEEPS_PER_MINUTE = 6


def _waiting(deps) -> int:
    return deps.queue.count + deps.queue.scheduled_job_registry.count


def _minute(env, label: str, results: list, timings) -> None:
    from scfm.services import sweeper

    before, started = _waiting(env.deps), time.perf_counter()
    for _ in range(SWEEPS_PER_MINUTE):
        sweeper.sweep(env.deps.uow, env.deps.jobs, timings)
    waiting = _waiting(env.deps)
    seconds = (time.perf_counter() - started) / SWEEPS_PER_MINUTE
    progress(f"{label}: {waiting - before} jobs enqueued, {waiting} waiting")
    results.append(Result(f"{label}: jobs enqueued by {SWEEPS_PER_MINUTE} sweeps", f"{waiting - before:,}",
                          "bounded by the work", None, f"{waiting:,} waiting; {seconds:.2f} s per sweep"))


def run(env, args) -> list[Result]:
    results: list[Result] = []
    timings = env.deps.settings.timings
    with env.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO accounts (created_at, updated_at) VALUES (now(), now()) RETURNING id")
        account_id = cur.fetchone()[0]
        cur.execute("INSERT INTO contacts (account_id, msisdn) SELECT %s, '+85512' || lpad(n::text, 7, '0') "
                    "FROM generate_series(1, %s) AS n", (account_id, args.calls))
        cur.execute(
            "INSERT INTO phone_calls (account_id, contact_id, status, msisdn, remote_call_id, remote_status, "
            "remote_direction, remotely_queued_at, queued_at, dial_attempts, created_at, updated_at) "
            "SELECT account_id, id, 'remotely_queued', msisdn, 'CA' || md5(id::text), 'queued', 'outbound-api', "
            "now() - interval '1 hour', now() - interval '1 hour', 1, now() - interval '1 hour', "
            "now() - interval '1 hour' FROM contacts WHERE account_id = %s", (account_id,))
        cur.execute("SELECT count(*) FROM information_schema.columns "
                    "WHERE table_name = 'phone_calls' AND column_name = 'remote_fetch_queued_at'")
        records_fetches = cur.fetchone()[0] == 1
        conn.commit()
    progress(f"{args.calls:,} silent calls; sweeping")
    env.deps.redis.config_set("maxmemory", 0)
    memory_before = env.deps.redis.info("memory")["used_memory"]
    for minute in range(1, args.minutes + 1):
        _minute(env, f"minute {minute}", results, timings)
    if records_fetches:
        with env.connect() as conn, conn.cursor() as cur:
            cur.execute("UPDATE phone_calls SET remote_fetch_queued_at = remote_fetch_queued_at - interval '11 minutes', "
                        "updated_at = updated_at - interval '11 minutes'")
            conn.commit()
        _minute(env, "11 minutes on (every fetch lost)", results, timings)
    memory = env.deps.redis.info("memory")["used_memory"] - memory_before
    results.append(Result("Redis memory used by the queue", f"{memory / 2**20:.1f} MiB", "-", None,
                          f"{_waiting(env.deps):,} jobs waiting"))
    return results


def main(args: argparse.Namespace) -> int:
    from scfm.adapters import embedded

    folder = Path(tempfile.mkdtemp(prefix="scfm-bench-sweeper-"))
    saved = os.environ.get("REDIS_URL")
    redis = None
    try:
        redis, os.environ["REDIS_URL"] = embedded.start_redis(folder)
        with throwaway_env("sweeper") as env:
            results = run(env, args)
    except (KeyboardInterrupt, SystemExit):
        progress("interrupted")
        return 130
    except BenchError as error:
        progress(f"failed: {error}")
        return 1
    finally:
        if saved is None:
            os.environ.pop("REDIS_URL", None)
        else:
            os.environ["REDIS_URL"] = saved
        if redis is not None and hasattr(embedded, "stop_redis"):
            embedded.stop_redis(redis)
        elif redis is not None:  # the older code's embedded module
            redis.shutdown(nosave=True)
        shutil.rmtree(folder, ignore_errors=True)
    print()
    print(summary(f"the sweeper with {args.calls:,} silent calls and no worker", results), flush=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=100_000, metavar="N", help="silent calls (default 100,000)")
    parser.add_argument("--minutes", type=int, default=3, help="minutes of sweeps (6 each; default 3)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.sweeper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
