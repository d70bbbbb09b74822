"""A rate limiter shared by every dialer, in Redis: it hands out evenly spaced time slots; leases; wake-ups."""
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
# A tenant's slot on a provider account shared with other tenants: the tenant KEYS[1] (ARGV[1]) asks for ARGV[2]
# calls/s of a provider account allowing ARGV[3]; KEYS[2] (a sorted set: tenant -> until when it counts, ms) and
# KEYS[3] (a hash: tenant -> rate asked) are the tenants dialing on it. When together they ask for more than
# the account allows, each gets its share in proportion to what it asked. Reserves the tenant's next slot at
# its share; answers how long to wait for it (microseconds), and the share.
RESERVE_SHARE = """
local tenant, asked, allowed = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms)) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('HDEL', KEYS[3], gone)
end
redis.call('HSET', KEYS[3], tenant, ARGV[2])
redis.call('ZADD', KEYS[2], now_ms + 3000, tenant)
local total = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  total = total + tonumber(redis.call('HGET', KEYS[3], member) or '0')
end
local share = asked
if total > allowed then share = allowed * asked / total end
local interval = math.floor(1000000 / share)
-- a tenant counts until three of its slots went by unused (at least three seconds)
redis.call('ZADD', KEYS[2], now_ms + math.max(3000, math.floor(3 * interval / 1000)), tenant)
redis.call('PEXPIRE', KEYS[2], 60000)
redis.call('PEXPIRE', KEYS[3], 60000)
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
redis.call('SET', KEYS[1], string.format('%.0f', slot + interval), 'PX', math.floor((slot + interval - now) / 1000) + 60000)
return {string.format('%.0f', slot - now), tostring(share)}
"""
LEAVE_SHARE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
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
        self._reserve_share = redis.register_script(RESERVE_SHARE)
        self._leave_share = redis.register_script(LEAVE_SHARE)

    def _key(self, name: str) -> str:
        return f"{self.prefix}:rate:{name}"

    def reserve(self, name: str, per_second: float) -> float:
        """Seconds to wait before the next call of `name` may start."""
        interval = int(1_000_000 / per_second)
        return int(self._reserve(keys=[self._key(name)], args=[interval])) / 1_000_000

    def penalize(self, name: str, seconds: float) -> None:
        self._penalize(keys=[self._key(name)], args=[int(seconds * 1_000_000)])

    def reserve_share(self, name: str, tenant: str, asked_per_second: float, allowed_per_second: float) -> float:
        """Seconds to wait for the tenant's next slot of its share of `name` (then `reserve` a slot of `name`)."""
        wait, _share = self._reserve_share(keys=self._share_keys(name, tenant),
                                           args=[tenant, repr(asked_per_second), repr(allowed_per_second)])
        return int(wait) / 1_000_000

    def leave_share(self, name: str, tenant: str) -> None:
        """The tenant stops dialing on `name`: the others' shares grow at once."""
        self._leave_share(keys=self._share_keys(name, tenant)[1:], args=[tenant])

    def _share_keys(self, name: str, tenant: str) -> list[str]:
        return [f"{self._key(name)}:tenant:{tenant}", f"{self._key(name)}:tenants", f"{self._key(name)}:asked"]


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


class RedisWakeUps:
    """Accounts whose calls were just queued, for the dialers to look at before their next scan of the
    database (which finds them anyway: a lost wake-up only delays)."""

    def __init__(self, redis: Redis, prefix: str = "scfm"):
        self.redis = redis
        self.key = f"{prefix}:dialer:wake"

    def wake(self, account_id: int) -> None:
        self.redis.sadd(self.key, account_id)

    def take(self) -> list[int]:
        return [int(account_id) for account_id in self.redis.spop(self.key, 1000) or []]
