"""The Outbound port over HTTP(S): POSTs that reach only the addresses they may.

The connection pool's network backend resolves each host itself, checks every address it
resolves to (charpente.outbound.addresses), and connects to one of those checked addresses:
nothing can resolve the name again in between (DNS rebinding). TLS still verifies the
certificate for the URL's host name, which is also the SNI and the Host header.

No redirect is followed (a 3xx is a failure: the receiver must give its final URL), no
proxy from the environment is used, and an answer's body is read only up to
MAX_EXCERPT_BYTES, for the error excerpt.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import anyio
import httpcore
import httpx

from charpente.outbound.addresses import IPNetwork, address_refusal, parse_networks
from charpente.runtime.ports import Sent

__all__ = [
    "MAX_EXCERPT_BYTES",
    "USER_AGENT",
    "HttpOutbound",
    "RefusedAddressError",
    "system_resolver",
]

USER_AGENT = "charpente-webhooks"
MAX_EXCERPT_BYTES = 64 * 1024
_EXCERPT_CHARS = 160
_RESOLVE_SECONDS = 5.0

Resolver = Callable[[str, int], Awaitable[list[str]]]


class RefusedAddressError(Exception):
    """A host is, or resolves to, an address outbound requests may not reach."""


class UnresolvableHostError(Exception):
    """A host name does not resolve."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the system resolver's order (IP literals too)."""
    try:
        found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnresolvableHostError(f"{host} does not resolve ({error})") from None
    addresses: list[str] = []
    for *_, sockaddr in found:
        address = str(sockaddr[0]).split("%", 1)[0]  # no IPv6 zone: never a link-local one
        if address not in addresses:
            addresses.append(address)
    return addresses


class HttpOutbound:
    """POSTs with a connect timeout and a total one, to allowed addresses only."""

    def __init__(
        self,
        allow: Iterable[str] = (),
        *,
        connect_timeout: float = 5.0,
        total_timeout: float = 10.0,
        max_connections: int = 100,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allowed = parse_networks(allow)
        self._resolver = resolver
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpcore.default_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections // 4 or 1,
            keepalive_expiry=30.0,
            network_backend=_GuardedBackend(self._allowed, resolver),
        )

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Sent:
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as error:
            return Sent(None, f"not a valid URL: {error}")
        try:
            with anyio.fail_after(self._total_timeout):
                return await self._post(target, headers, body)
        except RefusedAddressError as error:
            return Sent(None, f"refused: {error}")
        except UnresolvableHostError as error:
            return Sent(None, str(error))
        except TimeoutError:
            return Sent(None, f"no answer within {self._total_timeout:g} s")
        except httpcore.TimeoutException as error:
            return Sent(None, f"timed out: {_describe(error)}")
        except (
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpcore.UnsupportedProtocol,
        ) as error:
            return Sent(None, f"{_kind(error)}: {_describe(error)}")
        except ssl.SSLError as error:
            return Sent(None, f"TLS failed: {error.reason or error}")

    async def refusal(self, url: str) -> str | None:
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as error:
            return f"not a valid URL: {error}"
        port = target.port or (443 if target.scheme == "https" else 80)
        host = target.raw_host.decode("ascii")
        try:
            with anyio.fail_after(_RESOLVE_SECONDS):
                await _checked_addresses(host, port, self._allowed, self._resolver)
        except RefusedAddressError as error:
            return f"refused: {error}"
        except (UnresolvableHostError, TimeoutError):
            return None  # not refused: delivery will say what is wrong
        return None

    async def close(self) -> None:
        await self._pool.aclose()

    async def _post(self, target: httpx.URL, headers: Mapping[str, str], body: bytes) -> Sent:
        request_headers = [
            (b"Host", target.netloc),
            (b"User-Agent", USER_AGENT.encode()),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        url = httpcore.URL(
            scheme=target.raw_scheme, host=target.raw_host, port=target.port, target=target.raw_path
        )
        timeouts = {
            "connect": self._connect_timeout,
            "read": self._total_timeout,
            "write": self._total_timeout,
            "pool": self._total_timeout,
        }
        async with self._pool.stream(
            "POST", url, headers=request_headers, content=body, extensions={"timeout": timeouts}
        ) as response:
            excerpt = await _read_capped(response)
            return _sent(response, excerpt)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address, then connects to a checked one."""

    def __init__(self, allowed: Sequence[IPNetwork], resolver: Resolver) -> None:
        self._allowed = allowed
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _checked_addresses(host, port, self._allowed, self._resolver)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None  # _checked_addresses returns at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddressError("unix sockets are not reached by outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _checked_addresses(
    host: str, port: int, allowed: Sequence[IPNetwork], resolver: Resolver
) -> list[str]:
    """Every address `host` resolves to, once each is known to be allowed; RefusedAddressError
    as soon as one is not (a name with one private address among public ones is refused)."""
    addresses = await resolver(host, port)
    if not addresses:
        raise UnresolvableHostError(f"{host} does not resolve")
    for text in addresses:
        problem = address_refusal(ipaddress.ip_address(text), allowed)
        if problem is not None:
            shown = problem if text == host.strip("[]") else f"{host} resolves to {problem}"
            raise RefusedAddressError(shown)
    return addresses


async def _read_capped(response: httpcore.Response) -> bytes:
    """At most MAX_EXCERPT_BYTES of the body: enough for an excerpt, never a flood."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_stream():
        chunks.append(chunk[: MAX_EXCERPT_BYTES - size])
        size += len(chunks[-1])
        if size >= MAX_EXCERPT_BYTES:
            break
    return b"".join(chunks)


def _sent(response: httpcore.Response, body: bytes) -> Sent:
    status = response.status
    if 200 <= status < 300:
        return Sent(status)
    if 300 <= status < 400:
        return Sent(status, f"{status}: redirects are not followed; give the final URL")
    text = body.decode("utf-8", "replace")
    excerpt = " ".join(text.split())[:_EXCERPT_CHARS]
    return Sent(status, f"{status}: {excerpt}" if excerpt else str(status))


def _kind(error: Exception) -> str:
    if isinstance(error, httpcore.ConnectError):
        return "could not connect"
    if isinstance(error, httpcore.ProtocolError):
        return "not an HTTP answer"
    return "connection failed"


def _describe(error: Exception) -> str:
    text = " ".join(str(error).split())[:_EXCERPT_CHARS]
    return text or type(error).__name__
