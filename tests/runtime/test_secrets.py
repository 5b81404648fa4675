"""Sealed values: AES-256-GCM round trips, refusals of any tampering, key rotation, settings."""

from __future__ import annotations

import base64

import pytest

from charpente.runtime.secrets import Sealer, SealError, generate_key_text

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(100, 132))
CONTEXT = b"posts.secret"


def text_of(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture
def sealer() -> Sealer:
    return Sealer({"k1": KEY_1}, active="k1")


def test_a_sealed_value_opens_to_its_plaintext(sealer: Sealer) -> None:
    token = sealer.seal(b"the launch code", context=CONTEXT)
    assert token.startswith("v1.k1.")
    assert b"launch" not in token.encode()
    assert sealer.open(token, context=CONTEXT) == b"the launch code"
    assert sealer.open(sealer.seal(b"", context=CONTEXT), context=CONTEXT) == b""


def test_each_seal_uses_a_fresh_nonce(sealer: Sealer) -> None:
    tokens = {sealer.seal(b"same", context=CONTEXT) for _ in range(200)}
    assert len(tokens) == 200
    nonces = {base64.urlsafe_b64decode(t.split(".")[2] + "==")[:12] for t in tokens}
    assert len(nonces) == 200


def test_any_changed_byte_is_refused(sealer: Sealer) -> None:
    token = sealer.seal(b"the launch code", context=CONTEXT)
    prefix, encoded = token.rsplit(".", 1)
    blob = bytearray(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    for index in (0, 11, 12, len(blob) - 1):  # nonce, first ciphertext byte, tag
        changed = bytearray(blob)
        changed[index] ^= 0x01
        forged = f"{prefix}.{base64.urlsafe_b64encode(changed).rstrip(b'=').decode()}"
        with pytest.raises(SealError):
            sealer.open(forged, context=CONTEXT)


def test_a_value_moved_to_another_column_does_not_open(sealer: Sealer) -> None:
    token = sealer.seal(b"the launch code", context=b"posts.secret")
    with pytest.raises(SealError, match="belongs elsewhere"):
        sealer.open(token, context=b"accounts.secret")
    with pytest.raises(SealError):
        sealer.open(token, context=b"")


def test_a_value_sealed_with_another_key_does_not_open(sealer: Sealer) -> None:
    other = Sealer({"k1": KEY_2}, active="k1")
    with pytest.raises(SealError):
        other.open(sealer.seal(b"x", context=CONTEXT), context=CONTEXT)


def test_a_value_relabelled_with_another_key_id_does_not_open() -> None:
    both = Sealer({"k1": KEY_1, "k2": KEY_1}, active="k1")  # even with the very same key
    token = both.seal(b"x", context=CONTEXT)
    with pytest.raises(SealError):
        both.open(token.replace("v1.k1.", "v1.k2."), context=CONTEXT)


def test_an_unknown_key_id_is_refused_without_showing_keys(sealer: Sealer) -> None:
    token = Sealer({"k9": KEY_2}, active="k9").seal(b"x", context=CONTEXT)
    with pytest.raises(SealError, match="k9") as caught:
        sealer.open(token, context=CONTEXT)
    assert text_of(KEY_1) not in str(caught.value)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1.k1",
        "v2.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAA",  # shorter than a nonce and a tag
        "v1.k1.!!!!",
        "v1..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.extra",
        "v1.k1.A",
    ],
)
def test_malformed_values_are_refused(sealer: Sealer, token: str) -> None:
    with pytest.raises(SealError):
        sealer.open(token, context=CONTEXT)


def test_rotation_opens_old_values_and_seals_new_ones_with_the_new_key() -> None:
    old = Sealer({"k1": KEY_1}, active="k1")
    old_token = old.seal(b"before", context=CONTEXT)
    rotated = Sealer.from_env_value(f"k2:{text_of(KEY_2)},k1:{text_of(KEY_1)}")
    assert rotated.active == "k2"
    assert rotated.open(old_token, context=CONTEXT) == b"before"
    assert rotated.rotate_needed(old_token)
    new_token = rotated.seal(b"after", context=CONTEXT)
    assert new_token.startswith("v1.k2.")
    assert not rotated.rotate_needed(new_token)
    with pytest.raises(SealError):
        old.open(new_token, context=CONTEXT)
    with pytest.raises(SealError):
        rotated.rotate_needed("not sealed")


def test_generated_key_text_is_read_back_by_the_setting_parser() -> None:
    text = generate_key_text("k3")
    kid, _, encoded = text.partition(":")
    assert kid == "k3"
    assert "=" not in encoded
    sealer = Sealer.from_env_value(text)
    assert sealer.open(sealer.seal(b"x", context=CONTEXT), context=CONTEXT) == b"x"
    assert generate_key_text("k3") != text


def test_the_setting_accepts_both_base64_alphabets_with_or_without_padding() -> None:
    key = bytes([0xFB, 0xFF] * 16)  # encodes with + and / (- and _ when URL-safe)
    for encoded in (
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
    ):
        sealer = Sealer.from_env_value(f" k1 : {encoded} ")
        reference = Sealer({"k1": key}, active="k1")
        assert sealer.open(reference.seal(b"x", context=CONTEXT), context=CONTEXT) == b"x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "kid:base64key"),
        (text_of(KEY_1), "kid:base64key"),
        (f":{text_of(KEY_1)}", "kid:base64key"),
        (f"k1:{text_of(KEY_1)},", "kid:base64key"),
        (f"k1:{text_of(KEY_1)},k1:{text_of(KEY_2)}", "appears twice"),
        (f"k1:{text_of(KEY_1)[:-8]}", "32 bytes"),
        (f"k1:{text_of(KEY_1 + b'x')}", "32 bytes"),
        ("k1:not*base64*at*all", "not valid base64"),
        (f"k.1:{text_of(KEY_1)}", "key id"),
    ],
)
def test_a_bad_setting_is_explained_without_echoing_the_key(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Sealer.from_env_value(text)
    for secret in (text_of(KEY_1), text_of(KEY_1)[:-8], "not*base64"):
        assert secret not in str(caught.value)


def test_the_constructor_checks_key_sizes_and_the_active_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer({"k1": b"short"}, active="k1")
    with pytest.raises(ValueError, match="active"):
        Sealer({"k1": KEY_1}, active="k2")


def test_the_repr_names_key_ids_only() -> None:
    sealer = Sealer({"k1": KEY_1, "k2": KEY_2}, active="k2")
    shown = repr(sealer)
    assert shown == "Sealer(active='k2', kids=['k1', 'k2'])"
    for key in (KEY_1, KEY_2):
        assert text_of(key) not in shown
        assert repr(key) not in shown
