"""The job queue on RQ: jobs are plain functions of ids, and safe to deliver twice."""
from __future__ import annotations

from datetime import timedelta

from rq import Queue, Retry

JOBS = "scfm.entrypoints.jobs"


class RqJobQueue:
    def __init__(self, queue: Queue, timeout: int = 600):
        self.queue = queue
        self.timeout = timeout

    def _enqueue(self, function: str, *args, delay: float | None = None, job_id: str | None = None) -> None:
        options = dict(job_timeout=self.timeout, result_ttl=3600, failure_ttl=7 * 24 * 3600,
                       retry=Retry(max=3, interval=[5, 30, 120]))
        if job_id:
            options["job_id"] = f"{self.queue.name}:{job_id}"
        if delay:
            self.queue.enqueue_in(timedelta(seconds=delay), f"{JOBS}.{function}", *args, **options)
        else:
            self.queue.enqueue(f"{JOBS}.{function}", *args, **options)

    def dial(self, phone_call_id: int, delay: float | None = None) -> None:
        self._enqueue("dial", phone_call_id, delay=delay)

    def fetch_remote_call(self, phone_call_id: int, delay: float | None = None) -> None:
        self._enqueue("fetch_remote_call", phone_call_id, delay=delay)

    def give_up_unknown_outcome(self, phone_call_id: int, delay: float) -> None:
        self._enqueue("give_up_unknown_outcome", phone_call_id, delay=delay)

    def run_batch_operation(self, batch_operation_id: int) -> None:
        self._enqueue("run_batch_operation", batch_operation_id)
