"""The client's IP address: the peer, or what trusted proxies say in X-Forwarded-For.

X-Forwarded-For is written by whoever sent the request, so only the entries appended by
proxies we trust mean anything: the list is read from the right, past trusted proxies,
and the first address that is not one of them is the client. A peer that is not a
trusted proxy is the client, whatever its headers claim.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

__all__ = ["UNKNOWN_CLIENT", "IPAddress", "IPNetwork", "client_ip", "parse_trusted_proxies"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_Parsed = tuple[IPAddress, str]  # an address and its canonical text

UNKNOWN_CLIENT = "unknown"
"""The client of a connection without a peer address (a Unix socket)."""

_MAX_HOPS = 32  # entries read from the right at most: a long header cannot cost more
_MAX_ADDRESS = 64  # characters: the longest IPv6 text with brackets, zone and port fits
_FORWARDED_FOR = b"x-forwarded-for"


def parse_trusted_proxies(text: str) -> tuple[IPNetwork, ...]:
    """Networks and addresses separated by commas or spaces: `"10.0.0.0/8, 127.0.0.1"`.

    Raises:
        ValueError: an entry is not an address or a network (or has host bits set, as in
            `10.0.0.1/8`); the message names it.
    """
    networks: list[IPNetwork] = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(
                f"trusted proxy {item!r} is not an IP address or network: {exc}"
            ) from None
    return tuple(networks)


def client_ip(scope: Scope, trusted_proxies: tuple[IPNetwork, ...]) -> str:
    """The client's address for the request in `scope`, as text.

    The peer address, unless the peer is in `trusted_proxies`: then the rightmost
    X-Forwarded-For entry that is not a trusted proxy. A malformed entry stops the walk
    (what lies left of it cannot be vouched for), and the last trusted hop is the answer.
    IPv4 addresses mapped into IPv6 (`::ffff:1.2.3.4`) are given as IPv4.
    """
    client = scope.get("client")
    if not client:
        return UNKNOWN_CLIENT
    host = str(client[0])
    if not trusted_proxies:  # the usual case, kept cheap: only IPv6 text needs parsing
        peer = _address(host) if ":" in host else None
        return host if peer is None else peer[1]
    peer = _address(host)
    if peer is None:
        return host
    if not _trusted(peer[0], trusted_proxies):
        return peer[1]
    return _forwarded_client(peer, _forwarded_for(scope), trusted_proxies)[1]


def _forwarded_client(hop: _Parsed, entries: list[str], trusted: tuple[IPNetwork, ...]) -> _Parsed:
    for entry in reversed(entries):
        address = _address(entry.strip())
        if address is None:
            return hop
        if not _trusted(address[0], trusted):
            return address
        hop = address
    return hop


def _forwarded_for(scope: Scope) -> list[str]:
    """The last entries of every X-Forwarded-For header, in order (at most _MAX_HOPS)."""
    values: Iterable[bytes] = (v for k, v in scope["headers"] if k == _FORWARDED_FOR)
    joined = b",".join(values).decode("latin-1")
    if not joined:
        return []
    return joined.rsplit(",", _MAX_HOPS)[-_MAX_HOPS:]


def _address(text: str) -> _Parsed | None:
    """The address in an entry (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`) and its
    canonical text, or None."""
    if len(text) > _MAX_ADDRESS:  # no address is that long; and the cache keeps only short keys
        return None
    return _parse_address(text)


@functools.lru_cache(maxsize=4096)
def _parse_address(text: str) -> _Parsed | None:
    # Cached: parsing costs microseconds, and the same proxies and clients come back.
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, str(address)


def _trusted(address: IPAddress, trusted: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in trusted)
