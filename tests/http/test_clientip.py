"""Client addresses: the peer, or X-Forwarded-For read from the right through trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from charpente.http.clientip import UNKNOWN_CLIENT, client_ip, parse_trusted_proxies

PROXIES = parse_trusted_proxies("10.0.0.0/8, 127.0.0.1 2001:db8::/32")


def scope(peer: str | None, *forwarded: str) -> dict[str, object]:
    headers = [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded]
    return {
        "type": "http",
        "client": None if peer is None else (peer, 50_000),
        "headers": [(b"host", b"api.example"), *headers],
    }


def test_trusted_proxies_parse_from_commas_and_spaces():
    expected = ("10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32")
    assert tuple(ipaddress.ip_network(n) for n in expected) == PROXIES
    assert parse_trusted_proxies("") == ()
    assert parse_trusted_proxies(" , ") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/8, proxy.local", "'proxy.local' is not an IP address or network"),
        ("10.0.0.1/8", "'10.0.0.1/8' is not an IP address or network: .*host bits set"),
        ("10.0.0.0/33", "'10.0.0.0/33'"),
    ],
)
def test_a_bad_trusted_proxy_is_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_trusted_proxies(text)


def test_an_untrusted_peer_is_the_client_whatever_its_header_claims():
    assert client_ip(scope("203.0.113.9", "198.51.100.1"), PROXIES) == "203.0.113.9"
    assert client_ip(scope("203.0.113.9", "10.0.0.1"), PROXIES) == "203.0.113.9"


def test_without_trusted_proxies_the_header_is_ignored():
    assert client_ip(scope("10.0.0.2", "198.51.100.1"), ()) == "10.0.0.2"


def test_a_trusted_peer_hands_over_to_the_rightmost_untrusted_entry():
    assert client_ip(scope("10.0.0.2", "198.51.100.1"), PROXIES) == "198.51.100.1"
    # The client put a fake address first; our proxies appended the real one after it.
    forged = scope("127.0.0.1", "1.2.3.4, 198.51.100.1, 10.9.9.9")
    assert client_ip(forged, PROXIES) == "198.51.100.1"


def test_several_headers_read_as_one_list_in_order():
    assert client_ip(scope("10.0.0.2", "1.2.3.4", "198.51.100.1, 10.1.1.1"), PROXIES) == (
        "198.51.100.1"
    )


def test_a_header_of_only_trusted_hops_gives_the_leftmost_of_them():
    assert client_ip(scope("10.0.0.2", "10.0.0.7, 10.0.0.8"), PROXIES) == "10.0.0.7"
    assert client_ip(scope("10.0.0.2"), PROXIES) == "10.0.0.2"


@pytest.mark.parametrize(
    "header",
    ["1.2.3.4, garbage", "1.2.3.4, ", "1.2.3.4, 999.1.1.1", "1.2.3.4, [::1", "1.2.3.4,unknown"],
)
def test_a_malformed_entry_stops_the_walk_at_the_last_trusted_hop(header):
    assert client_ip(scope("10.0.0.2", header), PROXIES) == "10.0.0.2"


@pytest.mark.parametrize(
    ("entry", "client"),
    [
        ("198.51.100.1:4711", "198.51.100.1"),
        ("[2001:db9::1]:443", "2001:db9::1"),
        ("2001:db9::1", "2001:db9::1"),
        (" 198.51.100.1 ", "198.51.100.1"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
    ],
)
def test_entries_may_carry_ports_and_spaces(entry, client):
    assert client_ip(scope("10.0.0.2", entry), PROXIES) == client


def test_an_ipv4_mapped_peer_is_matched_as_ipv4():
    assert client_ip(scope("::ffff:10.0.0.2", "198.51.100.1"), PROXIES) == "198.51.100.1"


def test_a_very_long_header_is_read_only_from_its_right_end():
    hops = ", ".join(["10.0.0.1"] * 10_000)
    assert client_ip(scope("10.0.0.2", f"198.51.100.1, {hops}"), PROXIES) == "10.0.0.1"


def test_a_peer_that_is_not_an_address_is_returned_as_is():
    assert client_ip(scope("testclient", "198.51.100.1"), PROXIES) == "testclient"
    assert client_ip(scope(None, "198.51.100.1"), PROXIES) == UNKNOWN_CLIENT
