"""The job queue on RQ: jobs are plain functions of ids, and safe to deliver twice, but delivered once per need.

Jobs are enqueued after the database commit. If Redis cannot take one, the work is still recorded in the
database and the sweeper delivers it later, so an enqueue failure is logged, not raised.

Each unit of work (an account's dispatcher, a call's fetch, a call's reconciliation, a batch operation's run)
has a pending marker in Redis naming the last job enqueued for it. A new job is enqueued only when that job
is no longer pending: it ran or failed, or vanished (a flushed Redis, a job lost with its worker). So the
sweeper may ask for the same work on every sweep, however slow the workers: the queue holds at most one job
per unit of work. Whether the job is pending is read from RQ's own record of it, so a killed worker leaves no
marker behind that blocks the work; a job that succeeds deletes its marker, the others expire.
"""
from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from redis.exceptions import RedisError
from rq import Callback, Queue, Retry
from rq.job import Job

from scfm.adapters.redis_limiter import RedisWakeUps

log = logging.getLogger(__name__)
JOBS = "scfm.entrypoints.jobs"

# Claim the markers KEYS[i] for new jobs ARGV[9 + i] (set to '~' .. id until the job is really enqueued, at
# most ARGV[9] ms). A marker is taken while its job is being enqueued, queued or scheduled (a delay, a retry);
# with ARGV[7] = '1', also while it runs on a worker whose heartbeat is alive (a killed worker's runs out).
# A queued job that a worker took but never started (killed in between: RQ leaves it in its intermediate
# list) is not pending. With ARGV[8] = '1' (the work is due now) a job scheduled for later gives way: it is
# taken out, unless RQ's scheduler is moving it to the queue right now. With ARGV[6] = '1' the claim replaces
# a waiting job in any case, taking it out of the queue if no worker has it yet. ARGV[1..4]: RQ's keys of the
# queue, of the jobs taken from it, of its scheduled jobs and of its running ones; ARGV[5]: a job's key, less
# its id. Answers, per key, 1 if claimed, else 0.
CLAIM = """
local queue_key, taken_key, scheduled_key, running_key, job_key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local replace, while_running, due_now, grace = ARGV[6] == '1', ARGV[7] == '1', ARGV[8] == '1', tonumber(ARGV[9])
local now = tonumber(redis.call('TIME')[1])

local function taken(id)
  for _, taken_id in ipairs(redis.call('LRANGE', taken_key, 0, -1)) do
    if taken_id == id then return true end
  end
  return false
end

local function running(id)
  for _, execution in ipairs(redis.call('ZRANGEBYSCORE', running_key, now, '+inf')) do
    if string.sub(execution, 1, #id + 1) == id .. ':' then return true end
  end
  return false
end

local claimed = {}
for i, key in ipairs(KEYS) do
  local current, status = redis.call('GET', key), false
  if current and string.sub(current, 1, 1) == '~' then
    status = 'enqueueing'
  elseif current then
    status = redis.call('HGET', job_key .. current, 'status')
  end
  local pending = status == 'enqueueing' or status == 'scheduled' or status == 'deferred'
    or (status == 'queued' and not taken(current)) or (status == 'started' and while_running and running(current))
  if status == 'scheduled' and (due_now or replace) then
    if redis.call('ZREM', scheduled_key, current) > 0 then
      redis.call('DEL', job_key .. current)
      pending = false
    end
  elseif status == 'queued' and replace then
    if redis.call('LREM', queue_key, 1, current) > 0 then redis.call('DEL', job_key .. current) end
  end
  if pending and not replace then
    claimed[i] = 0
  else
    redis.call('SET', key, '~' .. ARGV[9 + i], 'PX', grace)
    claimed[i] = 1
  end
end
return claimed
"""
# The job of marker KEYS[1] is enqueued: the marker names it (unless another claim replaced it meanwhile).
CONFIRM = """
if redis.call('GET', KEYS[1]) == '~' .. ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
"""
# A job that succeeded lets go of its marker (a job that failed keeps it until it expires: it may be retried).
FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
CLAIM_GRACE_MS = 30_000  # an enqueue that claimed and never confirmed (Redis went away) blocks no longer
MARKER_TTL_MS = 7 * 24 * 3600 * 1000  # a job stays pending at most this long in RQ's eyes (its failure_ttl)


class RqJobQueue:
    def __init__(self, queue: Queue, wake_ups: RedisWakeUps, timeout: int = 600, prefix: str | None = None):
        self.queue = queue
        self.wake_ups = wake_ups
        self.timeout = timeout
        self.prefix = prefix or queue.name
        self._claim = queue.connection.register_script(CLAIM)
        self._confirm = queue.connection.register_script(CONFIRM)

    def _options(self, marker: str, timeout: int | None = None) -> dict:
        return dict(timeout=timeout or self.timeout, result_ttl=3600, failure_ttl=7 * 24 * 3600,
                    retry=Retry(max=3, interval=[5, 30, 120]), meta={"pending": marker},
                    on_success=Callback(f"{__name__}.forget"))

    def marker(self, kind: str, unit: int) -> str:
        return f"{self.prefix}:pending:{kind}:{unit}"

    def _claimed(self, kind: str, units: list[int], replace: bool = False, while_running: bool = False,
                 due_now: bool = True) -> dict:
        """The units whose new job may be enqueued, each with the id that job must have."""
        job_ids = [uuid.uuid4().hex for _ in units]
        answers = self._claim(keys=[self.marker(kind, unit) for unit in units],
                              args=[self.queue.key, self.queue.intermediate_queue_key,
                                    self.queue.scheduled_job_registry.key,
                                    self.queue.started_job_registry.key, Job.redis_job_namespace_prefix,
                                    int(replace), int(while_running), int(due_now), CLAIM_GRACE_MS, *job_ids])
        return {unit: job_id for unit, job_id, claimed in zip(units, job_ids, answers) if claimed}

    def _enqueue(self, kind: str, function: str, unit: int, *args, delay: float | None = None,
                 timeout: int | None = None, replace: bool = False, while_running: bool = False) -> bool:
        options = self._options(self.marker(kind, unit), timeout)
        options["job_timeout"] = options.pop("timeout")
        try:
            claimed = self._claimed(kind, [unit], replace, while_running, due_now=not delay)
            if not claimed:
                return False
            job_id = claimed[unit]
            with self.queue.connection.pipeline() as pipe:
                if delay:
                    self.queue.enqueue_in(timedelta(seconds=delay), f"{JOBS}.{function}", unit, *args,
                                          job_id=job_id, pipeline=pipe, **options)
                else:
                    self.queue.enqueue(f"{JOBS}.{function}", unit, *args, job_id=job_id, pipeline=pipe, **options)
                self._confirm(keys=[self.marker(kind, unit)], args=[job_id, MARKER_TTL_MS], client=pipe)
                pipe.execute()
            return True
        except RedisError as error:
            log.warning("could not enqueue %s(%s) (the sweeper will): %s", function, unit, error)
            return False

    def _enqueue_many(self, kind: str, function: str, units, chunk: int = 1000,
                      while_running: bool = False) -> int:
        units, enqueued = sorted(set(units)), 0
        try:
            for start in range(0, len(units), chunk):
                claimed = self._claimed(kind, units[start:start + chunk], while_running=while_running)
                if not claimed:
                    continue
                with self.queue.connection.pipeline() as pipe:
                    self.queue.enqueue_many([
                        Queue.prepare_data(f"{JOBS}.{function}", (unit,), job_id=job_id,
                                           **self._options(self.marker(kind, unit)))
                        for unit, job_id in claimed.items()
                    ], pipeline=pipe)
                    for unit, job_id in claimed.items():
                        self._confirm(keys=[self.marker(kind, unit)], args=[job_id, MARKER_TTL_MS], client=pipe)
                    pipe.execute()
                enqueued += len(claimed)
        except RedisError as error:
            log.warning("could not enqueue %s for %d records (the sweeper will): %s", function, len(units), error)
        return enqueued

    def dial_due(self, account_id: int) -> bool:
        """Wake the dialers up for the account's newly queued calls (they would find them at their next scan)."""
        try:
            self.wake_ups.wake(account_id)
            return True
        except RedisError as error:
            log.warning("could not wake the dialers up for account %s (their next scan will): %s", account_id, error)
            return False

    def fetch_remote_call(self, phone_call_id: int) -> bool:
        return self._enqueue("fetch", "fetch_remote_call", phone_call_id)

    def fetch_remote_calls(self, phone_call_ids) -> int:
        return self._enqueue_many("fetch", "fetch_remote_call", phone_call_ids)

    def reconcile_unknown_outcomes(self, phone_call_ids) -> int:
        return self._enqueue_many("reconcile", "reconcile_unknown_outcome", phone_call_ids)

    def run_batch_operation(self, batch_operation_id: int) -> bool:
        """Not while a run of it is pending or still running (a second run would wait for the first's lock)."""
        return self._enqueue("batch_operation", "run_batch_operation", batch_operation_id, while_running=True)

    def run_contact_import(self, contact_import_id: int) -> bool:
        """Hours for a file of millions of rows; not while a run is pending or running (a killed run's
        successor resumes after its last chunk)."""
        return self._enqueue("contact_import", "run_contact_import", contact_import_id, timeout=4 * 3600,
                             while_running=True)

    def run_call_plan(self, callout_id: int) -> bool:
        """Once per callout pending (a run under way makes what it finds to make)."""
        return self._enqueue("call_plan", "run_call_plan", callout_id, timeout=300)

    def pending(self) -> int:
        """Jobs waiting for a worker, now or after a delay (a retry)."""
        return self.queue.count + self.queue.scheduled_job_registry.count


def forget(job: Job, connection, result) -> None:
    """RQ's success callback: the job's unit of work has no pending job any more."""
    marker = job.meta.get("pending")
    if marker:
        connection.eval(FORGET, 1, marker, job.id)
