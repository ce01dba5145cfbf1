"""Properties of the codec over generated session data and generated damage."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cookiesession import InvalidSession, KeyRing, Payload, TokenCodec, generate_key
from tests.strategies import storable_values

NOW = 1_767_225_600.0
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
CODEC = TokenCodec(KeyRing(generate_key()), "session")

values = storable_values(text_size=40, key_size=10, container_size=5, max_leaves=30)
session_data = st.dictionaries(st.text(max_size=12), values, max_size=8)


def make(data: dict[str, Any]) -> Payload:
    return Payload(
        session_id=os.urandom(16),
        issued_at_ms=int(NOW * 1000),
        absolute_expiry=int(NOW) + 3600,
        idle_expiry=None,
        data=data,
    )


@given(session_data)
def test_round_trip(data: dict[str, Any]) -> None:
    payload = make(data)
    assert CODEC.open(CODEC.seal(payload), now=NOW).payload == payload


@given(st.text(min_size=8, max_size=64).filter(lambda s: s.strip() != ""))
def test_token_never_contains_the_plaintext(secret: str) -> None:
    token = CODEC.seal(make({"secret": secret}))
    assert secret not in token


SEALED = CODEC.seal(make({"user": "alice", "cart": [1, 2, 3]}))


def rejected(token: str) -> bool:
    try:
        CODEC.open(token, now=NOW)
    except InvalidSession:
        return True
    return False


def test_every_single_character_change_is_rejected() -> None:
    # Exhaustive, not sampled: every position, every other character of both
    # base64 alphabets and the padding character.
    for index, original in enumerate(SEALED):
        for replacement in ALPHABET + "+/=":
            if replacement != original:
                mutated = SEALED[:index] + replacement + SEALED[index + 1 :]
                assert rejected(mutated), (index, replacement)


def test_every_truncation_is_rejected() -> None:
    for length in range(len(SEALED)):
        assert rejected(SEALED[:length]), length


@given(st.text(min_size=1, max_size=40))
def test_any_extension_is_rejected(suffix: str) -> None:
    assert rejected(SEALED + suffix)


@given(st.integers(min_value=0), st.binary(min_size=1, max_size=3))
def test_byte_level_insertions_are_rejected(position: int, inserted: bytes) -> None:
    raw = SEALED.encode()
    index = position % (len(raw) + 1)
    mutated = raw[:index] + inserted + raw[index:]
    assert rejected(mutated.decode("latin-1"))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_anything_but_invalid_session(text: str) -> None:
    assert rejected(text)


@pytest.mark.parametrize("size", [0, 1, 100, 4000])
def test_rejection_is_the_same_exception_whatever_the_size(size: int) -> None:
    assert rejected("A" * size)
