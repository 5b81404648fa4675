"""The Redis limiter against a real server: atomic, shared, expiring, and safe when Redis goes.

Redis comes from CHARPENTE_TEST_REDIS_URL (default: the local server). Each test uses its
own key prefix and deletes its keys afterwards. Without a server the tests that need one
skip, unless CHARPENTE_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
import redis
from redis.asyncio import Redis
from tests.conftest import service_missing

import charpente.cache.redis as redis_module
from charpente.cache.redis import RedisLimiter, redis_limiter_from_url
from charpente.design.limits import parse_limit
from charpente.runtime.ratelimit import FallbackLimiter, MemoryLimiter

REDIS_URL = os.environ.get("CHARPENTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def redis_url() -> str:
    """The test server's URL, after checking it answers."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"charpente:test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextlib.asynccontextmanager
async def limiter_on(url: str, prefix: str, timeout: float = 1.0) -> AsyncIterator[RedisLimiter]:
    limiter = redis_limiter_from_url(url, timeout=timeout, prefix=prefix)
    try:
        yield limiter
    finally:
        await limiter.close()


@pytest.mark.anyio
async def test_fifty_concurrent_hits_on_ten_per_minute_allow_exactly_ten(
    anyio_backend, redis_url, prefix
):
    rule = parse_limit("10/minute")
    async with limiter_on(redis_url, prefix) as limiter:
        decisions = await asyncio.gather(*(limiter.hit("race", rule) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))
    refused = [d for d in decisions if not d.allowed]
    assert all(5.0 < d.retry_after <= 6.0 for d in refused)  # T = 6 s


@pytest.mark.anyio
async def test_two_separate_clients_share_one_bucket(anyio_backend, redis_url, prefix):
    rule = parse_limit("4/minute per account")
    async with limiter_on(redis_url, prefix) as one, limiter_on(redis_url, prefix) as two:
        allowed = [(await limiter.hit("acct", rule)).allowed for limiter in (one, two) * 3]
    assert allowed == [True, True, True, True, False, False]


@pytest.mark.anyio
async def test_a_bucket_key_expires_when_the_bucket_is_full_again(anyio_backend, redis_url, prefix):
    rule = parse_limit("10/minute")  # one request takes 6 s to refill
    async with limiter_on(redis_url, prefix) as limiter:
        await limiter.hit("idle", rule)
        await limiter.hit("idle", rule)
    client = Redis.from_url(redis_url)
    try:
        ttl = await client.pttl(f"{prefix}idle")
    finally:
        await client.aclose()
    assert 11_000 < ttl <= 12_000


@pytest.mark.anyio
async def test_a_long_client_key_is_stored_under_a_short_digest(anyio_backend, redis_url, prefix):
    rule = parse_limit("1/minute")
    async with limiter_on(redis_url, prefix) as limiter:
        assert (await limiter.hit("ip:" + "9" * 100_000, rule)).allowed
        assert not (await limiter.hit("ip:" + "9" * 100_000, rule)).allowed
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
    finally:
        client.close()
    assert len(keys) == 1
    assert len(keys[0]) == len(prefix) + 33


@pytest.mark.anyio
async def test_an_unknown_script_is_sent_whole(anyio_backend, redis_url, prefix, monkeypatch):
    monkeypatch.setattr(redis_module, "_SHA", "0" * 40)  # as after SCRIPT FLUSH or a restart
    async with limiter_on(redis_url, prefix) as limiter:
        assert (await limiter.hit("k", parse_limit("1/minute"))).allowed
        assert not (await limiter.hit("k", parse_limit("1/minute"))).allowed


@pytest.mark.anyio
async def test_a_closed_port_fails_fast(anyio_backend):
    started = time.monotonic()
    async with limiter_on(CLOSED_PORT_URL, "charpente:test:", timeout=0.1) as limiter:
        with pytest.raises(redis.ConnectionError):
            await limiter.hit("k", parse_limit("1/minute"))
    assert time.monotonic() - started < 1.0


@pytest.mark.anyio
async def test_the_fallback_limits_per_process_when_redis_is_unreachable(anyio_backend, caplog):
    rule = parse_limit("2/minute")
    async with limiter_on(CLOSED_PORT_URL, "charpente:test:", timeout=0.1) as primary:
        limiter = FallbackLimiter(primary, MemoryLimiter())
        allowed = [(await limiter.hit("k", rule)).allowed for _ in range(3)]
    assert allowed == [True, True, False]
    assert limiter.degraded
    assert limiter.degraded_count == 3
    assert "rate limiter unavailable" in caplog.text


class TcpProxy:
    """Forwards a local port to Redis until `stop`, which drops every connection."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._done: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()  # both ends see the connection reset
        await asyncio.gather(*self._done)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        self._done.add(done)
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer),
                self._pipe(upstream_reader, writer),
                return_exceptions=True,
            )
        finally:
            for w in (writer, upstream_writer):
                w.transport.abort()
                self._writers.discard(w)
            done.set_result(None)
            self._done.discard(done)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


@pytest.mark.anyio
async def test_the_fallback_degrades_when_redis_goes_away_then_recovers(
    anyio_backend, redis_url, prefix, caplog
):
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    caplog.set_level(logging.INFO, logger="charpente.ratelimit")
    rule = parse_limit("5/minute")
    url = f"redis://127.0.0.1:{proxy.port}{target.path}"
    async with limiter_on(url, prefix, timeout=0.2) as primary:
        limiter = FallbackLimiter(primary, MemoryLimiter(), timeout=0.2, cooldown=0.2)
        assert (await limiter.hit("k", rule)).remaining == 4
        assert (await limiter.hit("k", rule)).remaining == 3

        await proxy.stop()
        during = [await limiter.hit("k", rule) for _ in range(3)]
        assert [d.remaining for d in during] == [4, 3, 2]  # the process's own bucket
        assert limiter.degraded
        assert limiter.degraded_count == 3

        await proxy.start()  # the same port again
        await asyncio.sleep(0.3)  # past the cool-down
        after = await limiter.hit("k", rule)
        assert not limiter.degraded
        assert after.remaining == 2  # Redis kept counting from where it was
        await proxy.stop()
    assert "rate limiter unavailable" in caplog.text
    assert "recovered" in caplog.text
