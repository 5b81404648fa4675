"""Standard Webhooks signatures: the specification's own example, and what verify refuses."""

from __future__ import annotations

import base64

import pytest

from charpente.runtime.signatures import (
    SignatureError,
    new_secret,
    secret_key,
    sign,
    signature_headers,
    verify,
)

# The example of the Standard Webhooks reference libraries' tests.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(**changes: str) -> dict[str, str]:
    found = signature_headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    found.update(changes)
    return found


def test_the_signature_of_the_specification_example_is_the_one_it_gives() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_a_secret_without_its_prefix_signs_the_same() -> None:
    bare = SPEC_SECRET.removeprefix("whsec_")
    assert sign(bare, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_headers_carry_the_id_the_timestamp_and_the_signature() -> None:
    assert headers() == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }


def test_verify_accepts_the_example_within_the_tolerance_either_way() -> None:
    verify(SPEC_SECRET, headers(), SPEC_BODY, now=SPEC_TIMESTAMP + 300)
    verify(SPEC_SECRET, headers(), SPEC_BODY, now=SPEC_TIMESTAMP - 300)


def test_verify_reads_header_names_in_any_case() -> None:
    upper = {name.upper(): value for name, value in headers().items()}
    verify(SPEC_SECRET, upper, SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize(
    ("changed", "body"),
    [
        ({}, b'{"test": 2432232315}'),  # the body
        ({"webhook-id": "msg_other"}, SPEC_BODY),
        ({"webhook-timestamp": str(SPEC_TIMESTAMP + 1)}, SPEC_BODY),
        ({"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="}, SPEC_BODY),
        ({"webhook-signature": SPEC_SIGNATURE.replace("v1,", "v2,")}, SPEC_BODY),
        ({"webhook-signature": ""}, SPEC_BODY),
    ],
)
def test_verify_refuses_anything_tampered_with(changed: dict[str, str], body: bytes) -> None:
    with pytest.raises(SignatureError):
        verify(SPEC_SECRET, headers(**changed), body, now=SPEC_TIMESTAMP)


def test_verify_refuses_another_secret() -> None:
    with pytest.raises(SignatureError, match="no webhook-signature matches"):
        verify(new_secret(), headers(), SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_verify_refuses_a_timestamp_too_old_or_in_the_future(offset: int) -> None:
    with pytest.raises(SignatureError, match="too far from now"):
        verify(SPEC_SECRET, headers(), SPEC_BODY, now=SPEC_TIMESTAMP + offset)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_refuses_a_request_missing_a_header(missing: str) -> None:
    found = headers()
    del found[missing]
    with pytest.raises(SignatureError, match="required"):
        verify(SPEC_SECRET, found, SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize("stamp", ["hello", "-5", "1.5", "١٢٣", "9" * 13])
def test_verify_refuses_a_timestamp_that_is_not_seconds(stamp: str) -> None:
    with pytest.raises(SignatureError, match="not a number"):
        verify(SPEC_SECRET, headers(**{"webhook-timestamp": stamp}), SPEC_BODY)


def test_verify_accepts_one_good_signature_among_several() -> None:
    listed = f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SPEC_SIGNATURE} v2,abc"
    verify(SPEC_SECRET, headers(**{"webhook-signature": listed}), SPEC_BODY, now=SPEC_TIMESTAMP)


def test_new_secrets_are_32_random_bytes_behind_the_prefix() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert secret_key(first) != secret_key(second)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_" + "A" * 8, "whsec_" + "A" * 100])
def test_a_secret_that_is_not_24_to_64_bytes_of_base64_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match=r"whsec_|bytes") as info:
        secret_key(secret)
    assert secret.removeprefix("whsec_") not in str(info.value)
