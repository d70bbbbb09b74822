"""The sweeper during a callback outage: --calls calls `remotely_queued` an hour ago that never heard from the
provider again, on an embedded Redis of its own (its memory is the queue's alone), and no worker: the jobs pile
up as behind dead workers. --minutes times 6 sweeps back to back (a minute at SCFM_SWEEP_INTERVAL=10), then a
minute with every fetch queued 11 minutes ago (all lost). Printed: jobs enqueued and waiting per minute, and
the queue's Redis memory at the end.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import closing
from pathlib import Path

from bench.common import Result, guarded, progress, remotely_queued_calls, summary, throwaway_env
from scfm.adapters import embedded
from scfm.services import sweeper

SWEEPS_PER_MINUTE = 6


def minute(env, label: str) -> Result:
    queue = env.deps.queue
    before, started = queue.count + queue.scheduled_job_registry.count, time.perf_counter()
    for _ in range(SWEEPS_PER_MINUTE):
        sweeper.sweep(env.deps.uow, env.deps.jobs, env.deps.settings.timings)
    after, seconds = queue.count + queue.scheduled_job_registry.count, time.perf_counter() - started
    progress(f"{label}: {after - before} jobs enqueued, {after} waiting")
    return Result(f"{label}: jobs enqueued by {SWEEPS_PER_MINUTE} sweeps", f"{after - before:,}", "bounded by the work",
                  None, f"{after:,} waiting; {seconds / SWEEPS_PER_MINUTE:.2f} s per sweep")


def run(env, args) -> list[Result]:
    with closing(env.connect()) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO accounts (created_at, updated_at) VALUES (now(), now()) RETURNING id")
        account_id = cur.fetchone()[0]
        remotely_queued_calls(conn, account_id, args.calls, ago="1 hour")
        progress(f"{args.calls:,} silent calls; sweeping")
        memory = env.deps.redis.info("memory")["used_memory"]
        results = [minute(env, f"minute {number}") for number in range(1, args.minutes + 1)]
        cur.execute("UPDATE phone_calls SET remote_fetch_queued_at = remote_fetch_queued_at - interval '11 minutes', "
                    "updated_at = updated_at - interval '11 minutes'")
        conn.commit()
    results.append(minute(env, "11 minutes on (every fetch lost)"))
    memory = (env.deps.redis.info("memory")["used_memory"] - memory) / 2**20
    waiting = env.deps.queue.count + env.deps.queue.scheduled_job_registry.count
    print(f"Redis memory used by the queue: {memory:.1f} MiB, {waiting:,} jobs waiting", flush=True)
    return results + [Result("Redis memory used by the queue", f"{memory:.1f} MiB", note=f"{waiting:,} jobs waiting")]


def main(args: argparse.Namespace) -> int:
    def body():
        with tempfile.TemporaryDirectory(prefix="scfm-bench-sweeper-") as folder:
            redis, url = embedded.start_redis(Path(folder))
            try:
                with throwaway_env("sweeper", extra_env={"REDIS_URL": url}) as env:
                    env.deps.redis.config_set("maxmemory", 0)
                    results = run(env, args)
            finally:
                embedded.stop_redis(redis)
        print("\n" + summary(f"the sweeper with {args.calls:,} silent calls and no worker", results), flush=True)

    return guarded(body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=100_000, metavar="N", help="silent calls (default 100,000)")
    parser.add_argument("--minutes", type=int, default=3, help="minutes of sweeps (6 each; default 3)")
