"""The response cache's Cache port on Redis, shared by every process of a design.

Generations are counters (`INCR`); an entry is stored by one Lua script that first checks
that the generations the reader saw before querying have not moved, so a slow reader
never stores an answer older than a write that finished meanwhile. Every failure of Redis
becomes a CacheError: the request then goes on without the cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from charpente.runtime.caching import CacheError

__all__ = ["FILL_SCRIPT", "RedisCache", "redis_cache_from_url"]

# KEYS[1]: the entry; KEYS[2..]: the generations. ARGV[1]: the value, ARGV[2]: the TTL in
# milliseconds, ARGV[3..]: the generations seen, in the order of KEYS[2..].
FILL_SCRIPT = """
for i = 2, #KEYS do
  if (redis.call('GET', KEYS[i]) or '0') ~= ARGV[i + 1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_SHA = hashlib.sha1(FILL_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class RedisCache:
    """The Cache port on a Redis server, under `prefix`."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _generation(self, name: str) -> str:
        return f"{self._prefix}gen:{name}"

    async def generations(self, names: Sequence[str]) -> tuple[int, ...]:
        try:
            found = await self._client.mget([self._generation(n) for n in names])
        except (RedisError, OSError) as exc:
            raise CacheError(str(exc)) from exc
        return tuple(int(v) if v is not None else 0 for v in found)

    async def get(self, key: str) -> bytes | None:
        try:
            found = await self._client.get(f"{self._prefix}entry:{key}")
        except (RedisError, OSError) as exc:
            raise CacheError(str(exc)) from exc
        if found is None:
            return None
        return found if isinstance(found, bytes) else str(found).encode("latin-1")

    async def fill(
        self, key: str, value: bytes, ttl: float, names: Sequence[str], seen: Sequence[int]
    ) -> bool:
        keys = [f"{self._prefix}entry:{key}", *(self._generation(n) for n in names)]
        args: list[bytes | str | int] = [value, max(1, int(ttl * 1000)), *(str(g) for g in seen)]
        try:
            try:
                stored = await self._client.evalsha(_SHA, len(keys), *keys, *args)
            except NoScriptError:  # a restarted or flushed server: EVAL caches it again
                stored = await self._client.eval(FILL_SCRIPT, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            raise CacheError(str(exc)) from exc
        return int(stored) == 1

    async def bump(self, names: Sequence[str]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.incr(self._generation(name))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheError(str(exc)) from exc

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()


def redis_cache_from_url(url: str, prefix: str, timeout: float = 0.1) -> RedisCache:
    """A RedisCache on a new client for `url`; every command gives up after `timeout`
    seconds, without retries: a slow cache must not slow the request down."""
    client = Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    return RedisCache(client, prefix)
