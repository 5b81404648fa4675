"""What outbound requests may reach: public addresses only, unless the design allows a
network; names are resolved and checked, and a refused target never gets a request."""

from __future__ import annotations

import ipaddress

import pytest
from webhook_support import Receiver

from charpente.outbound.addresses import address_refusal, parse_networks
from charpente.outbound.sender import USER_AGENT, HttpOutbound

pytestmark = pytest.mark.anyio

REFUSED = [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("10.0.0.5", "10.0.0.5 is a private address"),
    ("172.16.3.4", "172.16.3.4 is a private address"),
    ("192.168.1.1", "192.168.1.1 is a private address"),
    ("169.254.169.254", "169.254.169.254 is a link-local address"),
    ("100.64.0.1", "100.64.0.1 is a shared (carrier-grade NAT) address"),
    ("224.0.0.251", "224.0.0.251 is a multicast address"),
    ("240.0.0.1", "240.0.0.1 is a private address"),
    ("0.0.0.0", "0.0.0.0 is an unspecified address"),
    ("::1", "::1 is a loopback address"),
    ("::", ":: is an unspecified address"),
    ("fc00::1", "fc00::1 is a private address"),
    ("fd12:3456::1", "fd12:3456::1 is a private address"),
    ("fe80::1", "fe80::1 is a link-local address"),
    ("ff02::1", "ff02::1 is a multicast address"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1 carries 127.0.0.1, a loopback address"),
    ("::ffff:10.0.0.5", "::ffff:a00:5 carries 10.0.0.5, a private address"),
    ("2002:a00:5::1", "2002:a00:5::1 carries 10.0.0.5, a private address"),
    ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe carries 169.254.169.254, a link-local address"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "is a Teredo address"),
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_addresses_that_are_not_public_are_refused_with_their_reason(
    address: str, reason: str
) -> None:
    refusal = address_refusal(ipaddress.ip_address(address))
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"],
)
def test_public_addresses_and_their_ipv6_forms_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_an_allowed_network_lets_its_addresses_through_in_any_form() -> None:
    allowed = parse_networks(["127.0.0.1/32", "10.0.0.0/8"])
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3", "2002:a01:203::"):
        assert address_refusal(ipaddress.ip_address(address), allowed) is None
    assert address_refusal(ipaddress.ip_address("192.168.0.1"), allowed) is not None


def test_an_unspecified_address_is_refused_even_inside_an_allowed_network() -> None:
    allowed = parse_networks(["0.0.0.0/0"])
    assert address_refusal(ipaddress.ip_address("0.0.0.0"), allowed) is not None


def test_a_network_that_is_not_one_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not a network"):
        parse_networks(["10.0.0.0/33"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/hook", "refused: 127.0.0.1 is a loopback address"),
        ("http://localhost:{port}/hook", "refused: localhost resolves to"),
        ("http://[::ffff:127.0.0.1]:{port}/hook", "carries 127.0.0.1, a loopback address"),
    ],
)
async def test_a_local_receiver_is_refused_without_any_request_unless_allowed(
    receiver: Receiver, url: str, reason: str
) -> None:
    target = url.format(port=receiver.port)
    outbound = HttpOutbound()
    try:
        sent = await outbound.post(target, {}, b"{}")
        refusal = await outbound.refusal(target)
    finally:
        await outbound.close()
    assert sent.status is None
    assert sent.error is not None
    assert reason in sent.error
    assert refusal is not None
    assert reason in refusal
    assert receiver.received == []


async def test_an_allowed_local_receiver_gets_the_post_with_the_user_agent(
    receiver: Receiver,
) -> None:
    outbound = HttpOutbound(["127.0.0.1/32"])
    try:
        assert await outbound.refusal(receiver.url) is None
        sent = await outbound.post(receiver.url, {"webhook-id": "m1"}, b'{"a": 1}')
    finally:
        await outbound.close()
    assert (sent.status, sent.error, sent.ok) == (200, None, True)
    (request,) = receiver.received
    assert request.body == b'{"a": 1}'
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


async def test_private_metadata_addresses_are_refused_before_connecting() -> None:
    outbound = HttpOutbound(total_timeout=30.0)
    try:
        sent = await outbound.post("http://169.254.169.254/latest/meta-data/", {}, b"")
    finally:
        await outbound.close()
    assert sent.error == "refused: 169.254.169.254 is a link-local address"


async def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.5"]

    outbound = HttpOutbound(resolver=resolver)
    try:
        refusal = await outbound.refusal("https://hooks.example.com/x")
        sent = await outbound.post("https://hooks.example.com/x", {}, b"")
    finally:
        await outbound.close()
    expected = "refused: hooks.example.com resolves to 10.0.0.5 is a private address"
    assert (refusal, sent.error) == (expected, expected)


async def test_a_failed_answer_keeps_a_short_excerpt_and_a_redirect_is_not_followed(
    receiver: Receiver,
) -> None:
    answers = iter(["503", "302"])
    receiver.script = lambda message, attempt: next(answers)
    outbound = HttpOutbound(["127.0.0.1/32"])
    try:
        failed = await outbound.post(receiver.url, {}, b"")
        moved = await outbound.post(receiver.url, {}, b"")
    finally:
        await outbound.close()
    assert (failed.status, failed.error) == (503, "503: answer 503")
    assert moved.status == 302
    assert moved.error is not None
    assert "redirects are not followed" in moved.error
    assert not moved.ok


async def test_an_answer_slower_than_the_total_timeout_is_a_failure(receiver: Receiver) -> None:
    receiver.script = lambda message, attempt: "hang"
    outbound = HttpOutbound(["127.0.0.1/32"], total_timeout=0.3)
    try:
        sent = await outbound.post(receiver.url, {}, b"")
    finally:
        await outbound.close()
    assert (sent.status, sent.error) == (None, "no answer within 0.3 s")


async def test_a_closed_port_is_a_connection_failure(receiver: Receiver) -> None:
    url = receiver.url
    receiver.stop()
    outbound = HttpOutbound(["127.0.0.1/32"])
    try:
        sent = await outbound.post(url, {}, b"")
    finally:
        await outbound.close()
    assert sent.status is None
    assert sent.error is not None
    assert sent.error.startswith("could not connect")
