"""A rate limiter shared by every worker, in Redis: it hands out evenly spaced time slots."""
from __future__ import annotations

from redis import Redis

# Reserve the next slot of `key` at `interval` microseconds after the previous one (or now, if later);
# answer how long to wait for it. Redis's clock is the one clock every worker shares.
RESERVE = """
local interval = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
redis.call('SET', KEYS[1], string.format('%.0f', slot + interval), 'PX', math.floor((slot + interval - now) / 1000) + 60000)
return string.format('%.0f', slot - now)
"""
# Push the next slot to at least `delay` microseconds from now (after a 429).
PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
local later = now + tonumber(ARGV[1])
if slot < later then redis.call('SET', KEYS[1], string.format('%.0f', later), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 60000) end
return 1
"""
# Take lock KEYS[1] for ARGV[1] (a token) for ARGV[2] ms, or renew it if the token already holds it.
LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisRateLimiter:
    def __init__(self, redis: Redis, prefix: str = "scfm"):
        self.redis = redis
        self.prefix = prefix
        self._reserve = redis.register_script(RESERVE)
        self._penalize = redis.register_script(PENALIZE)

    def _key(self, name: str) -> str:
        return f"{self.prefix}:rate:{name}"

    def reserve(self, name: str, per_second: float) -> float:
        """Seconds to wait before the next call of `name` may start."""
        interval = int(1_000_000 / per_second)
        return int(self._reserve(keys=[self._key(name)], args=[interval])) / 1_000_000

    def penalize(self, name: str, seconds: float) -> None:
        self._penalize(keys=[self._key(name)], args=[int(seconds * 1_000_000)])


class RedisLocks:
    """Short leases that a holder renews while it works; a killed holder's lease simply runs out."""

    def __init__(self, redis: Redis, prefix: str = "scfm"):
        self.redis = redis
        self.prefix = prefix
        self._lock = redis.register_script(LOCK)
        self._unlock = redis.register_script(UNLOCK)

    def acquire(self, name: str, token: str, seconds: float) -> bool:
        return bool(self._lock(keys=[f"{self.prefix}:lock:{name}"], args=[token, int(seconds * 1000)]))

    def release(self, name: str, token: str) -> None:
        self._unlock(keys=[f"{self.prefix}:lock:{name}"], args=[token])
