"""Token format v1: known answers, and one test per way a token can be bad."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiesession import (
    CLOCK_SKEW,
    InvalidSession,
    KeyRing,
    Payload,
    Reason,
    TokenCodec,
    generate_key,
)
from cookiesession._token import (
    MAX_TOKEN_CHARS,
    _b64decode,
    _b64encode,
    _header_bytes,
)

sys.path.insert(0, str(Path(__file__).parent / "vectors"))
from make_token_vectors import build

TOKEN_VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "token-v1.json").read_text()
)["vectors"]

NOW = 1_767_225_600.0


def payload(**changes: Any) -> Payload:
    fields: dict[str, Any] = {
        "session_id": os.urandom(16),
        "issued_at_ms": int(NOW * 1000),
        "absolute_expiry": int(NOW) + 3600,
        "idle_expiry": int(NOW) + 600,
        "data": {"user": "alice"},
    }
    fields.update(changes)
    return Payload(**fields)


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(KeyRing(generate_key()), "session")


def reason_of(codec: TokenCodec, token: str, now: float = NOW) -> Reason:
    with pytest.raises(InvalidSession) as caught:
        codec.open(token, now=now)
    assert str(caught.value) == "invalid session cookie"
    return caught.value.reason


def raw_of(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def token_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("vector", TOKEN_VECTORS, ids=lambda v: v["name"])
def test_known_answer_seal(vector: dict[str, Any]) -> None:
    codec, expected, nonce = build(vector)
    assert codec.seal(expected, nonce=nonce) == vector["token"]


@pytest.mark.parametrize("vector", TOKEN_VECTORS, ids=lambda v: v["name"])
def test_known_answer_open(vector: dict[str, Any]) -> None:
    codec, expected, _ = build(vector)
    opened = codec.open(vector["token"], now=expected.issued_at_ms / 1000)
    assert opened.payload == expected
    assert opened.data_bytes == cbor2.dumps(expected.data)
    assert opened.stale_key is False


def test_known_answer_layout() -> None:
    vector = TOKEN_VECTORS[0]
    raw = raw_of(vector["token"])
    assert raw[0] == 1
    codec, _, nonce = build(vector)
    assert raw[1:5] == codec._keys.primary.id
    assert raw[5:29] == nonce
    # 16-byte tag, and the plaintext has the same length as the ciphertext.
    assert len(raw) - 29 - 16 > 16


def test_round_trip(codec: TokenCodec) -> None:
    original = payload(cookie={"max_age": 60}, subject="u1")
    opened = codec.open(codec.seal(original), now=NOW)
    assert opened.payload == original


def test_two_seals_differ(codec: TokenCodec) -> None:
    p = payload()
    assert codec.seal(p) != codec.seal(p)


def test_token_does_not_contain_plaintext(codec: TokenCodec) -> None:
    secret_text = "hunter2-is-my-password"
    token = codec.seal(payload(data={"pw": secret_text}))
    assert secret_text not in token
    assert secret_text.encode() not in raw_of(token)


def test_rotation_old_key_opens_and_is_flagged_stale() -> None:
    old, new = generate_key(), generate_key()
    token = TokenCodec(KeyRing(old), "session").seal(payload())
    rotated = TokenCodec(KeyRing([new, old]), "session")
    opened = rotated.open(token, now=NOW)
    assert opened.stale_key is True
    resealed = rotated.seal(opened.payload, opened.data_bytes)
    assert rotated.open(resealed, now=NOW).stale_key is False
    # Re-sealing keeps the issue time and expiries: rotation extends nothing.
    assert rotated.open(resealed, now=NOW).payload == opened.payload


def test_ring_without_the_sealing_key_rejects() -> None:
    token = TokenCodec(KeyRing(generate_key()), "session").seal(payload())
    other = TokenCodec(KeyRing(generate_key()), "session")
    assert reason_of(other, token) is Reason.UNKNOWN_KEY


def test_token_for_another_cookie_name_is_rejected() -> None:
    ring = KeyRing(generate_key())
    token = TokenCodec(ring, "session").seal(payload())
    assert reason_of(TokenCodec(ring, "other"), token) is Reason.TAMPERED


def test_expired_by_idle_expiry(codec: TokenCodec) -> None:
    token = codec.seal(payload(idle_expiry=int(NOW) + 10))
    codec.open(token, now=NOW + 9.999)
    assert reason_of(codec, token, NOW + 10) is Reason.EXPIRED


def test_expired_by_absolute_expiry(codec: TokenCodec) -> None:
    token = codec.seal(payload(absolute_expiry=int(NOW) + 10, idle_expiry=None))
    codec.open(token, now=NOW + 9)
    assert reason_of(codec, token, NOW + 10) is Reason.EXPIRED


def test_absolute_expiry_wins_over_later_idle_expiry(codec: TokenCodec) -> None:
    token = codec.seal(payload(absolute_expiry=int(NOW) + 10))
    assert reason_of(codec, token, NOW + 11) is Reason.EXPIRED


def test_issued_in_the_future_beyond_skew(codec: TokenCodec) -> None:
    token = codec.seal(payload())
    codec.open(token, now=NOW - CLOCK_SKEW)
    assert reason_of(codec, token, NOW - CLOCK_SKEW - 1) is Reason.FUTURE


def test_oversized_is_rejected_before_decoding(codec: TokenCodec) -> None:
    assert reason_of(codec, "!" * (MAX_TOKEN_CHARS + 1)) is Reason.OVERSIZED


def test_configurable_size_limit() -> None:
    small = TokenCodec(KeyRing(generate_key()), "s", max_chars=100)
    token = small.seal(payload(data={"x": "y" * 200}))
    assert reason_of(small, token) is Reason.OVERSIZED


@pytest.mark.parametrize(
    "token",
    ["", "A", "AAAA", "not base64!", "é" * 80, "A" * 81, "=" * 80, "AA==" * 20],
)
def test_malformed(codec: TokenCodec, token: str) -> None:
    assert reason_of(codec, token) is Reason.MALFORMED


@pytest.mark.parametrize("pad", [0, 1])
def test_non_canonical_base64_is_rejected(codec: TokenCodec, pad: int) -> None:
    token = next(
        t
        for n in range(12)
        if len(t := codec.seal(payload(data={"p": "x" * n}))) % 4 == 2 + pad
    )
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    # Flip an unused low bit: decodes to the same bytes in a lax decoder.
    twin = token[:-1] + alphabet[last | 1]
    assert raw_of(twin) == raw_of(token)
    assert reason_of(codec, twin) is Reason.MALFORMED


def test_standard_alphabet_spelling_is_rejected(codec: TokenCodec) -> None:
    token = next(
        t for _ in range(200) if "-" in (t := codec.seal(payload())) and "_" in t
    )
    twin = token.replace("-", "+").replace("_", "/")
    assert raw_of(token) == base64.b64decode(twin + "=" * (-len(twin) % 4))
    assert reason_of(codec, twin) is Reason.MALFORMED


@pytest.mark.parametrize("padding", ["=", "==", "===", "===="])
def test_padding_is_rejected(codec: TokenCodec, padding: str) -> None:
    token = codec.seal(payload())
    assert reason_of(codec, token + padding) is Reason.MALFORMED


def test_too_short_to_hold_a_payload(codec: TokenCodec) -> None:
    assert reason_of(codec, _seal_plaintext(codec, b"")) is Reason.MALFORMED


def test_unknown_version(codec: TokenCodec) -> None:
    raw = bytearray(raw_of(codec.seal(payload())))
    raw[0] = 2
    assert reason_of(codec, token_of(bytes(raw))) is Reason.VERSION


def test_flipped_key_id(codec: TokenCodec) -> None:
    raw = bytearray(raw_of(codec.seal(payload())))
    raw[2] ^= 1
    assert reason_of(codec, token_of(bytes(raw))) is Reason.UNKNOWN_KEY


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_flipped_bit(codec: TokenCodec, where: str) -> None:
    raw = bytearray(raw_of(codec.seal(payload())))
    index = {"nonce": 10, "ciphertext": 30, "tag": len(raw) - 1}[where]
    raw[index] ^= 0x40
    assert reason_of(codec, token_of(bytes(raw))) is Reason.TAMPERED


def test_truncated(codec: TokenCodec) -> None:
    raw = raw_of(codec.seal(payload()))
    assert reason_of(codec, token_of(raw[:-1])) is Reason.TAMPERED


def _seal_plaintext(codec: TokenCodec, plaintext: bytes) -> str:
    """Seal arbitrary bytes with the codec's real key, as an attacker cannot."""
    key = codec._keys.primary
    nonce = os.urandom(24)
    prefix = b"\x01" + key.id
    return token_of(
        prefix + nonce + key.aead.encrypt(nonce, plaintext, prefix + b"session")
    )


HEADER = [bytes(16), int(NOW * 1000), int(NOW) + 60, None, None, None]


@pytest.mark.parametrize(
    ("label", "plaintext"),
    [
        ("header only", cbor2.dumps(HEADER)),
        ("data not a map", cbor2.dumps(HEADER) + cbor2.dumps([1])),
        ("trailing byte", cbor2.dumps(HEADER) + cbor2.dumps({}) + b"\x00"),
        ("short header", cbor2.dumps(HEADER[:5]) + cbor2.dumps({})),
        ("id too short", cbor2.dumps([bytes(15), *HEADER[1:]]) + cbor2.dumps({})),
        ("time as float", cbor2.dumps([bytes(16), NOW, *HEADER[2:]]) + b"\xa0"),
        ("subject int", cbor2.dumps([*HEADER[:5], 7]) + cbor2.dumps({})),
        ("override str", cbor2.dumps([*HEADER[:4], {"max_age": "1"}, None]) + b"\xa0"),
        ("override <0", cbor2.dumps([*HEADER[:4], {"max_age": -1}, None]) + b"\xa0"),
        ("override key", cbor2.dumps([*HEADER[:4], {"other": 1}, None]) + b"\xa0"),
        ("override {}", cbor2.dumps([*HEADER[:4], {}, None]) + b"\xa0"),
        ("tag in data", cbor2.dumps(HEADER) + b"\xa1aa\xc1\x01"),
        ("shared ref", cbor2.dumps(HEADER) + b"\xa1aa\xd8\x1c\x80"),
        ("indefinite map", cbor2.dumps(HEADER) + b"\xbfaa\x01\xff"),
        ("duplicate keys", cbor2.dumps(HEADER) + b"\xa2aa\x01aa\x02"),
        ("int map key", cbor2.dumps(HEADER) + b"\xa1\x01\x01"),
        ("deep", cbor2.dumps(HEADER) + b"\xa1aa" + b"\x81" * 40 + b"\x80"),
        ("bad utf-8", cbor2.dumps(HEADER) + b"\xa1aa\x61\xff"),
    ],
)
def test_bad_payload_under_a_valid_key(
    codec: TokenCodec, label: str, plaintext: bytes
) -> None:
    assert reason_of(codec, _seal_plaintext(codec, plaintext)) is Reason.PAYLOAD


def test_well_formed_hand_sealed_payload_opens(codec: TokenCodec) -> None:
    # The control for the test above: the same path accepts a good payload.
    token = _seal_plaintext(codec, cbor2.dumps(HEADER) + cbor2.dumps({"a": 1}))
    assert codec.open(token, now=NOW).payload.data == {"a": 1}


def test_seal_with_bad_nonce_length(codec: TokenCodec) -> None:
    with pytest.raises(ValueError, match="nonce"):
        codec.seal(payload(), nonce=bytes(12))


@given(
    issued_at_ms=st.integers(0, 2**64 - 1),
    absolute_expiry=st.integers(0, 2**64 - 1),
    idle_expiry=st.none() | st.integers(0, 2**64 - 1),
    cookie=st.none() | st.builds(lambda n: {"max_age": n}, st.integers(0, 2**40)),
    subject=st.none() | st.text(max_size=20),
)
def test_header_bytes_equal_the_general_encoder(
    issued_at_ms: int,
    absolute_expiry: int,
    idle_expiry: int | None,
    cookie: dict[str, int] | None,
    subject: str | None,
) -> None:
    head = Payload(
        os.urandom(16), issued_at_ms, absolute_expiry, idle_expiry, cookie, subject
    )
    assert _header_bytes(head) == cbor2.dumps(head.header())


def test_header_bytes_common_shape_takes_the_short_path() -> None:
    head = payload(idle_expiry=int(NOW) + 60)
    assert _header_bytes(head) == cbor2.dumps(head.header())
    assert len(_header_bytes(head)) == 1 + 17 + 9 + 5 + 5 + 2


@given(raw=st.binary(max_size=3000))
def test_base64_is_unpadded_url_safe_and_round_trips(raw: bytes) -> None:
    text = _b64encode(raw)
    assert text == token_of(raw)
    assert _b64decode(text) == raw


@given(data=st.dictionaries(st.text(max_size=8), st.binary(max_size=400), max_size=4))
def test_sealed_text_is_the_url_safe_spelling_of_its_bytes(
    data: dict[str, bytes],
) -> None:
    codec = TokenCodec(KeyRing(generate_key()), "session")
    token = codec.seal(payload(data=data))
    assert token == token_of(raw_of(token))
    assert codec.open(token, now=NOW).payload.data == data
