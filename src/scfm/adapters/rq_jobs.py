"""The job queue on RQ: jobs are plain functions of ids, and safe to deliver twice.

Jobs are enqueued after the database commit. If Redis cannot take one, the work is still recorded in the
database and the sweeper delivers it later, so an enqueue failure is logged, not raised.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from redis.exceptions import RedisError
from rq import Queue, Retry

log = logging.getLogger(__name__)
JOBS = "scfm.entrypoints.jobs"


class RqJobQueue:
    def __init__(self, queue: Queue, timeout: int = 600, dispatcher_timeout: float = 90):
        self.queue = queue
        self.timeout = timeout
        self.dispatcher_timeout = dispatcher_timeout

    def _options(self, timeout: int | None = None) -> dict:
        return dict(timeout=timeout or self.timeout, result_ttl=3600, failure_ttl=7 * 24 * 3600,
                    retry=Retry(max=3, interval=[5, 30, 120]))

    def _enqueue(self, function: str, *args, delay: float | None = None, timeout: int | None = None) -> None:
        options = self._options(timeout)
        options["job_timeout"] = options.pop("timeout")
        try:
            if delay:
                self.queue.enqueue_in(timedelta(seconds=delay), f"{JOBS}.{function}", *args, **options)
            else:
                self.queue.enqueue(f"{JOBS}.{function}", *args, **options)
        except RedisError as error:
            log.warning("could not enqueue %s%s (the sweeper will): %s", function, args, error)

    def _enqueue_many(self, function: str, ids, chunk: int = 1000) -> None:
        ids = list(ids)
        try:
            for start in range(0, len(ids), chunk):
                self.queue.enqueue_many([
                    Queue.prepare_data(f"{JOBS}.{function}", (id_,), **self._options())
                    for id_ in ids[start:start + chunk]
                ])
        except RedisError as error:
            log.warning("could not enqueue %s for %d records (the sweeper will): %s", function, len(ids), error)

    def dial_due(self, account_id: int, delay: float | None = None, wait_for_lease: float = 0.0) -> None:
        """Kick the account's dispatcher (a second one finds the lease taken and returns, at once or after
        waiting `wait_for_lease` seconds for it)."""
        args = (account_id, wait_for_lease) if wait_for_lease else (account_id,)
        self._enqueue("dial_due", *args, delay=delay, timeout=int(self.dispatcher_timeout + wait_for_lease))

    def fetch_remote_call(self, phone_call_id: int) -> None:
        self._enqueue("fetch_remote_call", phone_call_id)

    def fetch_remote_calls(self, phone_call_ids) -> None:
        self._enqueue_many("fetch_remote_call", phone_call_ids)

    def reconcile_unknown_outcomes(self, phone_call_ids) -> None:
        self._enqueue_many("reconcile_unknown_outcome", phone_call_ids)

    def run_batch_operation(self, batch_operation_id: int) -> None:
        self._enqueue("run_batch_operation", batch_operation_id)

    def run_contact_import(self, contact_import_id: int) -> None:
        # hours for a file of millions of rows; a killed job's successor resumes after the last chunk
        self._enqueue("run_contact_import", contact_import_id, timeout=4 * 3600)
