"""The composition root: builds the real dependencies from the settings."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from functools import cached_property

from redis import Redis
from rq import Queue

from scfm.adapters.call_flow_plugins import build_registry
from scfm.adapters.postgres.db import make_engine
from scfm.adapters.postgres.uow import SqlUnitOfWork
from scfm.adapters.provider import TwilioProvider
from scfm.adapters.redis_limiter import RedisLocks, RedisRateLimiter, RedisWakeUps
from scfm.adapters.rq_jobs import RqJobQueue
from scfm.config import Settings
from scfm.services.dispatcher import Dispatcher, DispatcherSettings


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass
class Deps:
    settings: Settings
    _cache: dict = field(default_factory=dict)

    @cached_property
    def engine(self):
        if not self.settings.database_url:
            raise RuntimeError("DATABASE_URL is not set (run `scfm` to start the embedded servers)")
        return make_engine(self.settings.database_url)

    @cached_property
    def redis(self) -> Redis:
        if not self.settings.redis_url:
            raise RuntimeError("REDIS_URL is not set (run `scfm` to start the embedded servers)")
        return Redis.from_url(self.settings.redis_url, socket_timeout=10, socket_connect_timeout=5)

    @cached_property
    def queue(self) -> Queue:
        return Queue(self.settings.queue_name, connection=self.redis, default_timeout=self.settings.job_timeout_seconds)

    @cached_property
    def call_flows(self):
        return build_registry(self.settings.registered_call_flow_logic, self.settings.default_call_flow_logic)

    @cached_property
    def jobs(self):
        return RqJobQueue(self.queue, self.wake_ups, timeout=self.settings.job_timeout_seconds)

    @cached_property
    def wake_ups(self) -> RedisWakeUps:
        return RedisWakeUps(self.redis, prefix=self.settings.queue_name)

    @cached_property
    def limiter(self):
        return RedisRateLimiter(self.redis, prefix=self.settings.queue_name)

    @cached_property
    def locks(self):
        return RedisLocks(self.redis, prefix=self.settings.queue_name)

    @cached_property
    def provider(self):
        return TwilioProvider(timeout=self.settings.provider_timeout_seconds)

    def dispatcher(self, max_accounts: int = 100) -> Dispatcher:
        """A dialer process's dispatcher (a new one each time: it holds the accounts it dials for)."""
        settings = DispatcherSettings(self.settings.provider, self.settings.public_url, self.settings.timings,
                                      lease_prefix=self.settings.queue_name, max_accounts=max_accounts)
        return Dispatcher(lambda: self.uow(None), self.provider, self.limiter, self.locks, SystemClock(), settings,
                          self.wake_ups)

    def uow(self, account_id: int | None = None) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, account_id)


_deps: Deps | None = None


def bootstrap(settings: Settings | None = None) -> Deps:
    """The process's dependencies, built once (jobs call this; tests pass their own settings)."""
    global _deps
    if settings is not None:
        return Deps(settings)
    if _deps is None:
        _deps = Deps(Settings.from_env())
    return _deps
