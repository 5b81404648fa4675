"""Which addresses outbound requests may reach: public ones, and those of the networks the
design allows (`outbound: allow`).

Refused: private, loopback, link-local, multicast, reserved, unspecified and shared
(100.64.0.0/10) addresses, and IPv6 forms that carry such an IPv4 address (IPv4-mapped,
6to4, NAT64) or hide one (Teredo). Unspecified addresses (which reach the machine itself)
are refused even inside an allowed network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["IPAddress", "IPNetwork", "address_refusal", "parse_networks"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix (RFC 6052)
_TEREDO = ipaddress.ip_network("2001::/32")


def parse_networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks written as CIDR (`10.0.0.0/8`, `::1/128`) or single addresses.
    Raises ValueError naming the text that is not one."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not a network (write 10.0.0.0/8 or ::1/128)") from None
    return tuple(networks)


def address_refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why `address` may not be reached, as "10.0.0.5 is a private address", or None."""
    embedded = _embedded_ipv4(address)
    effective = address if embedded is None else embedded
    if effective.is_unspecified:
        return f"{address} is an unspecified address"
    if _inside(address, allowed) or (embedded is not None and _inside(embedded, allowed)):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address in _TEREDO:
        return f"{address} is a Teredo address, which hides the IPv4 address it reaches"
    reason = _kind(effective)
    if reason is None:
        return None
    if embedded is not None:
        return f"{address} carries {embedded}, {reason}"
    return f"{address} is {reason}"


def _kind(address: IPAddress) -> str | None:
    """What makes `address` not public, or None when it is."""
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _inside(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)
