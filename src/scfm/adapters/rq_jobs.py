"""The job queue on RQ: jobs are plain functions of ids, and safe to deliver twice."""
from __future__ import annotations

from datetime import timedelta

from rq import Queue, Retry

JOBS = "scfm.entrypoints.jobs"


class RqJobQueue:
    def __init__(self, queue: Queue, timeout: int = 600):
        self.queue = queue
        self.timeout = timeout

    def _options(self) -> dict:
        return dict(timeout=self.timeout, result_ttl=3600, failure_ttl=7 * 24 * 3600,
                    retry=Retry(max=3, interval=[5, 30, 120]))

    def _enqueue(self, function: str, *args, delay: float | None = None) -> None:
        options = self._options()
        options["job_timeout"] = options.pop("timeout")
        if delay:
            self.queue.enqueue_in(timedelta(seconds=delay), f"{JOBS}.{function}", *args, **options)
        else:
            self.queue.enqueue(f"{JOBS}.{function}", *args, **options)

    def dial(self, phone_call_id: int, delay: float | None = None) -> None:
        self._enqueue("dial", phone_call_id, delay=delay)

    def _enqueue_many(self, function: str, ids, chunk: int = 1000) -> None:
        ids = list(ids)
        for start in range(0, len(ids), chunk):
            self.queue.enqueue_many([
                Queue.prepare_data(f"{JOBS}.{function}", (phone_call_id,), **self._options())
                for phone_call_id in ids[start:start + chunk]
            ])

    def dial_many(self, phone_call_ids) -> None:
        self._enqueue_many("dial", phone_call_ids)

    def fetch_remote_calls(self, phone_call_ids) -> None:
        self._enqueue_many("fetch_remote_call", phone_call_ids)

    def fetch_remote_call(self, phone_call_id: int, delay: float | None = None) -> None:
        self._enqueue("fetch_remote_call", phone_call_id, delay=delay)

    def give_up_unknown_outcome(self, phone_call_id: int, delay: float) -> None:
        self._enqueue("give_up_unknown_outcome", phone_call_id, delay=delay)

    def run_batch_operation(self, batch_operation_id: int) -> None:
        self._enqueue("run_batch_operation", batch_operation_id)
