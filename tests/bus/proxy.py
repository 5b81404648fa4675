"""A TCP proxy that tests put between a client and a real server to stage outages.

    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        ...                       # the client connects through the proxy
        await proxy.cut()         # every connection dropped, new ones refused: a dead server
        await proxy.restore()     # listening again on the same port: the server is back
        await proxy.stall()       # connections stay open, nothing gets through: a hung server
        await proxy.restore()     # bytes held back flow again, in order

The proxy listens on 127.0.0.1 on a free port (the same one for its whole life) and
forwards every connection to the target. It only ever connects to the target it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

__all__ = ["TcpProxy"]

CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`, until told to fail."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0  # known once started
        self.connections = 0  # accepted since the start: tells a test that clients came
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`, to put in a client's URL."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (on a free port the first time, on the same port afterwards) and forward."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Drop every connection and stop listening: clients see resets, then refusals."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in tuple(self._links):
            link.abort()
        self._links.clear()
        self._flowing.set()  # a stalled pump must wake up to see its link gone

    async def stall(self) -> None:
        """Keep connections open (and accept new ones) but let no byte through."""
        self._flowing.clear()

    async def restore(self) -> None:
        """Undo `cut` or `stall`: listen again, let held bytes through."""
        self._flowing.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        """Stop for good."""
        await self.cut()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            server_in, server_out = await asyncio.open_connection(*self.target)
        except OSError:
            client_out.transport.abort()
            return
        link = _Link(client_out, server_out)
        if self._server is None:  # cut while this connection was being made
            link.abort()
            return
        self._links.add(link)
        await asyncio.gather(
            self._pump(client_in, server_out, link),
            self._pump(server_in, client_out, link),
        )
        self._links.discard(link)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        with contextlib.suppress(OSError):
            while not link.aborted:
                data = await source.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if link.aborted:
                    break
                sink.write(data)
                await sink.drain()
        link.abort()


class _Link:
    """The two sides of one proxied connection; aborting one aborts both."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.aborted = False

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            self.client.transport.abort()
            self.server.transport.abort()
