"""The outage proxy does what the outage tests rely on: it forwards, cuts, stalls, restores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from tests.bus.proxy import TcpProxy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def echo(anyio_backend: str) -> AsyncIterator[int]:
    """A TCP echo server on 127.0.0.1; its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def roundtrip(port: int, data: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(2):
            return await reader.readexactly(len(data))
    finally:
        writer.close()


async def test_the_proxy_forwards_both_ways(echo):
    async with TcpProxy("127.0.0.1", echo) as proxy:
        assert await roundtrip(proxy.port, b"hello") == b"hello"
        assert proxy.connections == 1


async def test_a_cut_drops_open_connections_and_refuses_new_ones_until_restored(echo):
    async with TcpProxy("127.0.0.1", echo) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"

        await proxy.cut()

        async with asyncio.timeout(2):
            with contextlib.suppress(ConnectionResetError):  # reset, or...
                assert await reader.read(10) == b""  # ...closed
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.close()

        port = proxy.port
        await proxy.restore()
        assert proxy.port == port
        assert await roundtrip(proxy.port) == b"ping"


async def test_a_stall_holds_bytes_back_and_a_restore_delivers_them_in_order(echo):
    async with TcpProxy("127.0.0.1", echo) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        await proxy.stall()
        writer.write(b"one,")
        writer.write(b"two")
        await writer.drain()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await reader.read(10)

        await proxy.restore()

        async with asyncio.timeout(2):
            assert await reader.readexactly(7) == b"one,two"
        writer.close()
