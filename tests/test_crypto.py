"""XAES-256-GCM against the C2SP published vectors."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes

from cookiesession.crypto import SEAL_BATCH, XAES256GCM

# Source: https://c2sp.org/XAES-256-GCM, copied with its provenance fields.
VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "xaes-256-gcm.json").read_text()
)


def test_vector_file_keeps_its_source() -> None:
    assert VECTORS["source"].startswith("https://github.com/C2SP/C2SP/")
    assert VECTORS["canonical_url"] == "https://c2sp.org/XAES-256-GCM"


@pytest.mark.parametrize("vector", VECTORS["single"], ids=lambda v: v["name"])
def test_single_vector_seals(vector: dict[str, str]) -> None:
    aead = XAES256GCM(bytes.fromhex(vector["key"]))
    aad = bytes.fromhex(vector["aad"])
    sealed = aead.encrypt(
        bytes.fromhex(vector["nonce"]), bytes.fromhex(vector["plaintext"]), aad
    )
    assert sealed.hex() == vector["ciphertext"]


@pytest.mark.parametrize("vector", VECTORS["single"], ids=lambda v: v["name"])
def test_single_vector_opens(vector: dict[str, str]) -> None:
    aead = XAES256GCM(bytes.fromhex(vector["key"]))
    opened = aead.decrypt(
        bytes.fromhex(vector["nonce"]),
        bytes.fromhex(vector["ciphertext"]),
        bytes.fromhex(vector["aad"]),
    )
    assert opened.hex() == vector["plaintext"]


@pytest.mark.parametrize("vector", VECTORS["single"], ids=lambda v: v["name"])
def test_subkey_matches_spec_intermediate(vector: dict[str, str]) -> None:
    aead = XAES256GCM(bytes.fromhex(vector["key"]))
    assert aead._k1.to_bytes(16, "big").hex() == vector["K1"]


def _accumulated(iterations: int) -> str:
    """The C2SP accumulated test: SHAKE-128 drives inputs, absorbs outputs."""
    source = hashes.XOFHash(hashes.SHAKE128(digest_size=2**62))
    sink = hashes.Hash(hashes.SHAKE128(digest_size=32))
    for _ in range(iterations):
        key = source.squeeze(32)
        nonce = source.squeeze(24)
        plaintext = source.squeeze(source.squeeze(1)[0])
        aad = source.squeeze(source.squeeze(1)[0])
        aead = XAES256GCM(key)
        sealed = aead.encrypt(nonce, plaintext, aad)
        assert aead.decrypt(nonce, sealed, aad) == plaintext
        sink.update(sealed)
    return sink.finalize().hex()


def test_accumulated_rng_stream_prefix() -> None:
    source = hashes.XOFHash(hashes.SHAKE128(digest_size=2**62))
    assert source.squeeze(16).hex() == VECTORS["accumulated"]["rng_stream_prefix"]


def test_accumulated_10000() -> None:
    assert _accumulated(10_000) == VECTORS["accumulated"]["iterations_10000"]


@pytest.mark.skipif(
    os.environ.get("COOKIESESSION_SLOW_TESTS") != "1",
    reason="1,000,000 iterations take minutes; set COOKIESESSION_SLOW_TESTS=1",
)
def test_accumulated_1000000() -> None:
    assert _accumulated(1_000_000) == VECTORS["accumulated"]["iterations_1000000"]


def test_tampered_ciphertext_raises_invalid_tag() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    nonce = os.urandom(24)
    sealed = bytearray(aead.encrypt(nonce, b"attack at dawn", b"ad"))
    sealed[3] ^= 1
    with pytest.raises(InvalidTag):
        aead.decrypt(nonce, bytes(sealed), b"ad")


def test_wrong_associated_data_raises_invalid_tag() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    nonce = os.urandom(24)
    sealed = aead.encrypt(nonce, b"attack at dawn", b"ad")
    with pytest.raises(InvalidTag):
        aead.decrypt(nonce, sealed, b"other")
    with pytest.raises(InvalidTag):
        aead.decrypt(nonce, sealed, None)


def test_none_and_empty_associated_data_are_the_same() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    nonce = os.urandom(24)
    assert aead.decrypt(nonce, aead.encrypt(nonce, b"x", None), b"") == b"x"


def test_other_nonce_raises_invalid_tag() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    nonce = bytes(24)
    sealed = aead.encrypt(nonce, b"x", None)
    # The first 12 bytes select the derived key, the last 12 the GCM nonce.
    for position in (0, 11, 12, 23):
        other = bytearray(nonce)
        other[position] ^= 0x80
        with pytest.raises(InvalidTag):
            aead.decrypt(bytes(other), sealed, None)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_of_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        XAES256GCM(bytes(size))


def test_key_of_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError):
        XAES256GCM("k" * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 12, 23, 25])
def test_nonce_of_wrong_size_is_refused(size: int) -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    with pytest.raises(ValueError, match="24 bytes"):
        aead.encrypt(bytes(size), b"x", None)


def test_generate_key_is_random_and_32_bytes() -> None:
    first, second = XAES256GCM.generate_key(), XAES256GCM.generate_key()
    assert len(first) == 32
    assert first != second


def test_repr_hides_key() -> None:
    key = bytes(range(32))
    text = repr(XAES256GCM(key))
    assert key.hex() not in text
    assert "redacted" in text


def test_seal_opens_with_the_nonce_it_prepends() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    sealed = aead.seal(b"attack at dawn", b"ad")
    assert aead.decrypt(sealed[:24], sealed[24:], b"ad") == b"attack at dawn"
    # Another instance of the same key, with nothing remembered, agrees.
    fresh = XAES256GCM(aead._key)
    assert fresh.decrypt(sealed[:24], sealed[24:], b"ad") == b"attack at dawn"


def test_seal_matches_encrypt_for_the_nonce_it_chose() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    sealed = aead.seal(b"x" * 40, None)
    other = XAES256GCM(aead._key)
    assert other.encrypt(sealed[:24], b"x" * 40, None) == sealed[24:]


def test_seal_puts_the_prefix_in_front_and_leaves_it_unauthenticated() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    sealed = aead.seal(b"payload", b"ad", b"\x01head")
    assert sealed[:5] == b"\x01head"
    body = sealed[5:]
    assert aead.decrypt(body[:24], body[24:], b"ad") == b"payload"
    # The prefix is framing, not ciphertext: callers bind it through the AAD.
    assert len(body) == 24 + len(b"payload") + 16


def test_seal_batches_share_a_prefix_and_never_a_suffix() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    nonces = [aead.seal(b"", None)[:24] for _ in range(SEAL_BATCH * 3)]
    batches = [nonces[i : i + SEAL_BATCH] for i in range(0, len(nonces), SEAL_BATCH)]
    prefixes = [{n[:12] for n in batch} for batch in batches]
    assert all(len(p) == 1 for p in prefixes)
    assert len(set.union(*prefixes)) == 3
    assert len({n[12:] for n in nonces}) == len(nonces)


def test_seal_in_threads_uses_separate_batches() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    main_prefix = aead.seal(b"", None)[:12]
    seen: list[bytes] = []
    thread = threading.Thread(target=lambda: seen.append(aead.seal(b"", None)[:12]))
    thread.start()
    thread.join()
    assert seen and seen[0] != main_prefix


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_draws_its_own_prefix() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    parent_prefix = aead.seal(b"", None)[:12]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, aead.seal(b"", None)[:12])
        finally:
            os._exit(0)
    os.close(write)
    child_prefix = os.read(read, 12)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_prefix) == 12
    assert child_prefix != parent_prefix
    assert aead.seal(b"", None)[:12] == parent_prefix  # the parent's batch goes on


def test_derived_keys_are_bounded_and_stay_correct() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    reference = XAES256GCM(aead._key)
    for _ in range(1000):
        nonce = os.urandom(24)
        sealed = aead.encrypt(nonce, b"m", b"a")
        assert reference.decrypt(nonce, sealed, b"a") == b"m"
        assert len(aead._derived) <= 256


def test_wrong_nonce_length_is_refused() -> None:
    aead = XAES256GCM(XAES256GCM.generate_key())
    for nonce in (b"", os.urandom(12), os.urandom(25)):
        with pytest.raises(ValueError, match="24 bytes"):
            aead.encrypt(nonce, b"x", None)
        with pytest.raises(ValueError, match="24 bytes"):
            aead.decrypt(nonce, b"x" * 16, None)
