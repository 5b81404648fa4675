"""The Limiter port on Redis: one atomic Lua script per request, on the server's clock.

Every API process charges the same bucket through the same script, and the script reads
the time from Redis (`TIME`), so processes whose clocks disagree still agree on limits.
A bucket's key expires when the bucket is full again: idle clients cost no memory.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from charpente.design.limits import LimitRule
from charpente.runtime.ratelimit import Decision, bounded_key, decision_at, gcra_params

__all__ = ["GCRA_SCRIPT", "RedisLimiter", "redis_limiter_from_url"]

# KEYS[1]: the bucket; ARGV[1]: emission interval T, ARGV[2]: tolerance tau (microseconds).
# Returns {allowed (1|0), TAT after the request, now}, in microseconds. Times stay below
# 2^53, so Lua's doubles hold them exactly; they are written with %.0f because Lua's
# default number formatting keeps only 14 digits.
GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
if tat + interval - tolerance > now then
  return {0, string.format('%.0f', tat), string.format('%.0f', now)}
end
tat = tat + interval
local ttl = math.ceil((tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', ttl)
return {1, string.format('%.0f', tat), string.format('%.0f', now)}
"""
_SHA = hashlib.sha1(GCRA_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class RedisLimiter:
    """The Limiter on a Redis server, shared by every process that uses the same `prefix`.

    `client` should have short timeouts (`redis_limiter_from_url` sets them): a slow
    Redis must fail fast so that a FallbackLimiter can decide instead.
    """

    def __init__(self, client: Redis, prefix: str = "charpente:rl:") -> None:
        self._client = client
        self._prefix = prefix

    async def hit(self, key: str, rule: LimitRule) -> Decision:
        interval, tolerance = gcra_params(rule)
        args = (self._prefix + bounded_key(key), interval, tolerance)
        try:
            reply = await self._client.evalsha(_SHA, 1, *args)
        except NoScriptError:  # a restarted or flushed server: EVAL also caches it again
            reply = await self._client.eval(GCRA_SCRIPT, 1, *args)
        allowed, tat, now = reply
        return decision_at(int(allowed) == 1, int(tat), int(now), rule)

    async def ping(self) -> None:
        """Ask the server to answer (raises when it cannot be reached in time)."""
        await self._client.ping()

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()


def redis_limiter_from_url(
    url: str, timeout: float = 0.1, prefix: str = "charpente:rl:"
) -> RedisLimiter:
    """A RedisLimiter on a new client for `url` (`redis://`, `rediss://` or `unix://`).

    Connecting and every command give up after `timeout` seconds, without retries: a
    rate limit decision that waits longer costs more than a per-process one.
    """
    client = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return RedisLimiter(client, prefix)
