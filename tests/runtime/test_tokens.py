"""Access tokens: what verification refuses, key rotation, JWKS, key records, opaque tokens."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import time
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from charpente.errors import ConfigError
from charpente.runtime.secrets import Sealer, SealError
from charpente.runtime.tokens import (
    InvalidToken,
    KeyRing,
    SigningKey,
    issue_access_token,
    jwks,
    key_from_record,
    key_to_record,
    new_opaque_token,
    new_signing_key,
    token_hash,
)

NOW = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)
ISSUER, AUDIENCE = "https://api.example.com", "social"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


def claims(**changes: Any) -> dict[str, Any]:
    stamp = int(NOW.timestamp())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "acc_1",
        "exp": stamp + 900,
        "iat": stamp,
        "jti": "j1",
        "role": "member",
    }
    return {**base, **changes}


def check(ring: KeyRing, token: str, *, now: datetime.datetime = NOW, leeway: int = 30) -> Any:
    return ring.verify(token, issuer=ISSUER, audience=AUDIENCE, now=now, leeway=leeway)


def refused(ring: KeyRing, token: str, reason: str, *, now: datetime.datetime = NOW) -> None:
    with pytest.raises(InvalidToken) as caught:
        check(ring, token, now=now)
    assert caught.value.reason == reason


@pytest.fixture(scope="module")
def ed_key() -> SigningKey:
    return new_signing_key("EdDSA", NOW)


@pytest.fixture(scope="module")
def es_key() -> SigningKey:
    return new_signing_key("ES256", NOW)


@pytest.fixture
def ring(ed_key: SigningKey, es_key: SigningKey) -> KeyRing:
    # Both keys verify; the EdDSA one is newer, so it signs.
    older = SigningKey(
        es_key.kid,
        "ES256",
        es_key.private_jwk,
        created_at=NOW - datetime.timedelta(days=1),
        not_before=NOW - datetime.timedelta(days=1),
    )
    return KeyRing([older, ed_key])


def test_an_issued_token_verifies_into_its_claims(ring: KeyRing, ed_key: SigningKey) -> None:
    token = issue_access_token(
        ring, issuer=ISSUER, audience=AUDIENCE, subject="acc_1", role="member", now=NOW
    )
    header = json.loads(unb64(token.split(".")[0]))
    assert header == {"alg": "EdDSA", "kid": ed_key.kid, "typ": "JWT"}
    got = check(ring, token)
    assert (got.subject, got.role) == ("acc_1", "member")
    assert got.issued_at == NOW
    assert got.expires_at == NOW + datetime.timedelta(seconds=900)
    assert re.fullmatch(r"[0-9a-f-]{36}", got.jti)
    payload = json.loads(unb64(token.split(".")[1]))
    assert set(payload) == {"iss", "aud", "sub", "exp", "iat", "jti", "role"}


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_both_algorithms_sign_and_verify_without_warnings(alg: str) -> None:
    ring = KeyRing([new_signing_key(alg, NOW)])  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token = ring.sign(claims(role=None), now=NOW)
        assert check(ring, token).role is None


def test_alg_none_with_an_empty_signature_is_refused(ring: KeyRing, ed_key: SigningKey) -> None:
    token = f"{segment({'alg': 'none', 'kid': ed_key.kid})}.{segment(claims())}."
    refused(ring, token, "algorithm not allowed")
    no_kid = f"{segment({'alg': 'none'})}.{segment(claims())}."
    refused(ring, no_kid, "algorithm not allowed")


@pytest.mark.parametrize(
    "secret_of",
    [
        lambda key: unb64(key.public_jwk()["x"]),  # the raw public key
        lambda key: json.dumps(key.public_jwk()).encode(),  # the JWKS entry
    ],
)
def test_an_hs256_token_keyed_with_the_public_key_is_refused(
    ring: KeyRing, ed_key: SigningKey, secret_of: Any
) -> None:
    signing_input = f"{segment({'alg': 'HS256', 'kid': ed_key.kid})}.{segment(claims())}"
    mac = hmac.new(secret_of(ed_key), signing_input.encode(), hashlib.sha256).digest()
    refused(ring, f"{signing_input}.{b64(mac)}", "algorithm not allowed")


def test_an_eddsa_header_on_an_es256_key_is_refused(ring: KeyRing, es_key: SigningKey) -> None:
    attacker = Ed25519PrivateKey.generate()
    signing_input = f"{segment({'alg': 'EdDSA', 'kid': es_key.kid})}.{segment(claims())}"
    token = f"{signing_input}.{b64(attacker.sign(signing_input.encode()))}"
    refused(ring, token, "algorithm does not match the key")


def test_an_es256_header_on_an_eddsa_key_is_refused(ring: KeyRing, ed_key: SigningKey) -> None:
    real = ring.sign(claims(), now=NOW).split(".")
    token = f"{segment({'alg': 'ES256', 'kid': ed_key.kid})}.{real[1]}.{real[2]}"
    refused(ring, token, "algorithm does not match the key")


def test_a_token_without_kid_or_with_an_unknown_kid_is_refused(ring: KeyRing) -> None:
    _, payload, signature = ring.sign(claims(), now=NOW).split(".")
    refused(ring, f"{segment({'alg': 'EdDSA'})}.{payload}.{signature}", "missing kid")
    refused(ring, f"{segment({'alg': 'EdDSA', 'kid': 7})}.{payload}.{signature}", "missing kid")
    unknown = segment({"alg": "EdDSA", "kid": "nobody"})
    refused(ring, f"{unknown}.{payload}.{signature}", "unknown kid")


def test_a_key_of_another_ring_is_unknown(ring: KeyRing) -> None:
    stranger = KeyRing([new_signing_key("EdDSA", NOW)])
    refused(ring, stranger.sign(claims(), now=NOW), "unknown kid")


def test_a_critical_header_extension_is_refused(ring: KeyRing, ed_key: SigningKey) -> None:
    token = ring.sign(claims(), now=NOW).split(".")
    header = segment({"alg": "EdDSA", "kid": ed_key.kid, "crit": ["exp"]})
    refused(ring, f"{header}.{token[1]}.{token[2]}", "unsupported critical header")


def test_the_wrong_issuer_or_audience_is_refused(ring: KeyRing) -> None:
    refused(ring, ring.sign(claims(iss="https://evil.example.com"), now=NOW), "wrong issuer")
    refused(ring, ring.sign(claims(aud="other-app"), now=NOW), "wrong audience")
    refused(ring, ring.sign(claims(aud=["other-app"]), now=NOW), "wrong audience")
    assert check(ring, ring.sign(claims(aud=["other-app", AUDIENCE]), now=NOW))


def test_expiry_allows_the_leeway_and_not_a_second_more(ring: KeyRing) -> None:
    stamp = int(NOW.timestamp())
    assert check(ring, ring.sign(claims(exp=stamp - 29), now=NOW))
    assert check(ring, ring.sign(claims(exp=stamp - 30), now=NOW))
    refused(ring, ring.sign(claims(exp=stamp - 31), now=NOW), "token expired")
    with pytest.raises(InvalidToken, match="expired"):
        check(ring, ring.sign(claims(exp=stamp - 2), now=NOW), leeway=1)


def test_a_token_issued_or_valid_only_in_the_future_is_refused(ring: KeyRing) -> None:
    stamp = int(NOW.timestamp())
    assert check(ring, ring.sign(claims(iat=stamp + 30), now=NOW))
    refused(ring, ring.sign(claims(iat=stamp + 31), now=NOW), "issued in the future")
    assert check(ring, ring.sign(claims(nbf=stamp + 30), now=NOW))
    refused(ring, ring.sign(claims(nbf=stamp + 31), now=NOW), "not valid yet")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": None}, "missing exp"),
        ({"exp": "4102444800"}, "missing exp"),
        ({"exp": True}, "missing exp"),
        ({"iat": None}, "missing iat"),
        ({"sub": None}, "missing sub"),
        ({"sub": ""}, "missing sub"),
        ({"jti": 5}, "missing jti"),
        ({"role": ["admin"]}, "malformed role"),
    ],
)
def test_claims_of_the_wrong_type_are_refused(
    ring: KeyRing, changes: dict[str, Any], reason: str
) -> None:
    payload = {k: v for k, v in claims(**changes).items() if v is not None}
    refused(ring, ring.sign(payload, now=NOW), reason)


def test_a_non_finite_expiry_is_refused(ring: KeyRing, ed_key: SigningKey) -> None:
    # json.loads accepts NaN and Infinity; both must count as malformed, not as "never".
    for literal in ("NaN", "Infinity"):
        raw = json.dumps(claims()).replace(str(claims()["exp"]), literal)
        header = segment({"alg": "EdDSA", "kid": ed_key.kid})
        signing_input = f"{header}.{b64(raw.encode())}"
        private = Ed25519PrivateKey.from_private_bytes(unb64(ed_key.private_jwk["d"]))
        token = f"{signing_input}.{b64(private.sign(signing_input.encode()))}"
        refused(ring, token, "malformed exp")


def test_a_payload_changed_after_signing_is_refused(ring: KeyRing) -> None:
    header, _, signature = ring.sign(claims(), now=NOW).split(".")
    forged = segment(claims(role="admin"))
    refused(ring, f"{header}.{forged}.{signature}", "bad signature")


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_a_changed_or_missing_signature_is_refused(alg: str) -> None:
    ring = KeyRing([new_signing_key(alg, NOW)])  # type: ignore[arg-type]
    header, payload, signature = ring.sign(claims(), now=NOW).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    tampered = signature[:middle] + flipped + signature[middle + 1 :]
    refused(ring, f"{header}.{payload}.{tampered}", "bad signature")
    refused(ring, f"{header}.{payload}.", "bad signature")
    refused(ring, f"{header}.{payload}.{signature[:-4]}", "bad signature")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed token"),
        ("abc", "malformed token"),
        ("a.b", "malformed token"),
        ("a.b.c.d", "malformed token"),
        ("e30.e30.!!!", "malformed token"),
        ("a b.c.d", "malformed token"),
        (f"{b64(b'not json')}.e30.AAAA", "malformed header"),
        (f"{b64(b'[1, 2]')}.e30.AAAA", "malformed header"),
        (f"{b64(bytes([0xFF, 0xFE]))}.e30.AAAA", "malformed header"),
        ("A.e30.AAAA", "malformed token"),  # one base64 character cannot be decoded
    ],
)
def test_malformed_tokens_are_refused(ring: KeyRing, token: str, reason: str) -> None:
    refused(ring, token, reason)


def test_a_signed_payload_that_is_not_a_json_object_is_refused(ring: KeyRing) -> None:
    key = ring.signing_key(NOW)
    header = segment({"alg": "EdDSA", "kid": key.kid})
    for raw in (b"[1]", b"nope", b"\xff"):
        signing_input = f"{header}.{b64(raw)}"
        private = Ed25519PrivateKey.from_private_bytes(unb64(key.private_jwk["d"]))
        token = f"{signing_input}.{b64(private.sign(signing_input.encode()))}"
        refused(ring, token, "malformed payload")


def test_a_token_over_8_kb_is_refused_even_when_properly_signed(ring: KeyRing) -> None:
    token = ring.sign(claims(padding="x" * 8000), now=NOW)
    assert len(token) > 8192
    refused(ring, token, "token too large")


def test_rotation_keeps_old_tokens_valid_until_the_old_key_retires() -> None:
    first = new_signing_key("ES256", NOW)
    switch = NOW + datetime.timedelta(hours=1)
    second = new_signing_key("EdDSA", NOW)
    second = SigningKey(second.kid, "EdDSA", second.private_jwk, created_at=NOW, not_before=switch)
    retire = switch + datetime.timedelta(seconds=900 + 30)
    first = SigningKey(
        first.kid, "ES256", first.private_jwk, created_at=NOW, not_before=NOW, retire_after=retire
    )
    ring = KeyRing([first, second])

    assert ring.signing_key(NOW).kid == first.kid  # the next key is published, not yet used
    assert [k.kid for k in ring.published(NOW)] == [first.kid, second.kid]
    after = switch + datetime.timedelta(minutes=1)
    assert ring.signing_key(after).kid == second.kid
    late = claims(iat=int(after.timestamp()), exp=int(after.timestamp()) + 900)
    new_token = ring.sign(late, now=after)
    assert json.loads(unb64(new_token.split(".")[0]))["kid"] == second.kid

    long_lived = ring.sign(claims(exp=int(retire.timestamp()) + 3600), now=NOW)
    assert check(ring, long_lived, now=after)  # cached from here on
    assert check(ring, new_token, now=after)
    refused(ring, long_lived, "key retired", now=retire)  # the cache does not outlive the key
    assert check(ring, new_token, now=retire)
    assert [k.kid for k in ring.published(retire)] == [second.kid]


def test_a_ring_with_no_usable_key_cannot_sign() -> None:
    future = new_signing_key("EdDSA", NOW + datetime.timedelta(days=1))
    with pytest.raises(ConfigError):
        KeyRing([future]).sign(claims(), now=NOW)
    with pytest.raises(ValueError, match="share the kid"):
        KeyRing([future, future])


def test_a_cached_verification_costs_microseconds(ring: KeyRing) -> None:
    token = ring.sign(claims(), now=NOW)
    check(ring, token)
    rounds = 5000
    started = time.perf_counter()
    for _ in range(rounds):
        check(ring, token)
    per_call = (time.perf_counter() - started) / rounds
    assert per_call < 25e-6, per_call  # a signature check alone takes ~100-250 µs


def test_the_cache_answers_only_for_the_same_audience_and_until_expiry(ring: KeyRing) -> None:
    token = ring.sign(claims(), now=NOW)
    assert check(ring, token)
    with pytest.raises(InvalidToken, match="wrong audience"):
        ring.verify(token, issuer=ISSUER, audience="other", now=NOW)
    later = NOW + datetime.timedelta(seconds=900 + 31)
    refused(ring, token, "token expired", now=later)


def test_the_cache_stays_bounded(ring: KeyRing) -> None:
    tokens = [ring.sign(claims(jti=str(i)), now=NOW) for i in range(4200)]
    for token in tokens:
        check(ring, token)
    assert len(ring._cache) == 4096
    assert check(ring, tokens[0]).jti == "0"  # evicted, then verified again


def test_the_jwks_holds_public_parts_only(ring: KeyRing, ed_key: SigningKey) -> None:
    document = jwks(ring.published(NOW))
    text = json.dumps(document)
    assert ed_key.private_jwk["d"] not in text
    for entry in document["keys"]:
        assert "d" not in entry
        assert entry["use"] == "sig"
        assert entry["alg"] in {"EdDSA", "ES256"}
    by_kid = {entry["kid"]: entry for entry in document["keys"]}
    assert by_kid[ed_key.kid] == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": ed_key.private_jwk["x"],
        "kid": ed_key.kid,
        "alg": "EdDSA",
        "use": "sig",
    }


def test_a_signing_key_never_shows_its_private_part(ed_key: SigningKey) -> None:
    assert ed_key.private_jwk["d"] not in repr(ed_key)
    assert ed_key.private_jwk["d"] not in repr(KeyRing([ed_key]))


def test_a_key_must_match_its_algorithm(ed_key: SigningKey, es_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="ES256 needs a private EC P-256 key"):
        SigningKey("k", "ES256", ed_key.private_jwk, created_at=NOW, not_before=NOW)
    public_only = {k: v for k, v in es_key.private_jwk.items() if k != "d"}
    with pytest.raises(ValueError, match="private"):
        SigningKey("k", "ES256", public_only, created_at=NOW, not_before=NOW)
    with pytest.raises(ValueError, match="algorithm"):
        SigningKey("k", "HS256", ed_key.private_jwk, created_at=NOW, not_before=NOW)  # type: ignore[arg-type]


def test_a_key_record_round_trips_sealed_and_plain(ed_key: SigningKey) -> None:
    sealer = Sealer({"k1": bytes(range(32))}, active="k1")
    sealed = key_to_record(ed_key, sealer)
    assert sealed["private_jwk"].startswith("v1.k1.")
    assert ed_key.private_jwk["d"] not in json.dumps(sealed, default=str)
    restored = key_from_record(sealed, sealer)
    assert restored == ed_key
    assert restored.private_jwk == ed_key.private_jwk
    plain = key_to_record(ed_key, None)
    assert json.loads(plain["private_jwk"])["d"] == ed_key.private_jwk["d"]
    assert key_from_record(plain, sealer) == ed_key  # stored before sealing was configured


def test_a_key_record_in_text_form_or_with_naive_utc_times_loads(es_key: SigningKey) -> None:
    record = key_to_record(es_key, None)
    text = {k: v.isoformat() if isinstance(v, datetime.datetime) else v for k, v in record.items()}
    assert key_from_record(text, None) == es_key
    naive = {
        k: v.replace(tzinfo=None) if isinstance(v, datetime.datetime) else v
        for k, v in record.items()
    }
    assert key_from_record(naive, None) == es_key
    with pytest.raises(ValueError, match="timezone-aware"):
        SigningKey(
            "k", "ES256", es_key.private_jwk, created_at=NOW.replace(tzinfo=None), not_before=NOW
        )


def test_a_signing_key_s_jwk_cannot_be_changed_in_place(ed_key: SigningKey) -> None:
    with pytest.raises(TypeError):
        ed_key.private_jwk["d"] = "changed"  # type: ignore[index]


def test_a_sealed_key_record_needs_its_sealer_and_its_own_row(
    ed_key: SigningKey, es_key: SigningKey
) -> None:
    sealer = Sealer({"k1": bytes(range(32))}, active="k1")
    sealed = key_to_record(ed_key, sealer)
    with pytest.raises(ConfigError, match="sealed"):
        key_from_record(sealed, None)
    moved = {**key_to_record(es_key, sealer), "private_jwk": sealed["private_jwk"]}
    with pytest.raises(SealError):
        key_from_record(moved, sealer)


def test_opaque_tokens_have_256_random_bits_and_are_stored_as_sha256() -> None:
    tokens = {new_opaque_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in list(tokens)[:20]:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
        assert len(unb64(token)) == 32
    token = new_opaque_token()
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token_hash(token) == token_hash(token) != token_hash(new_opaque_token())
