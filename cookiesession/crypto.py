"""XAES-256-GCM: AES-256-GCM with 192-bit nonces that are safe to pick at random.

The construction is C2SP's "XAES-256-GCM" (https://c2sp.org/XAES-256-GCM).
Plain AES-GCM with random 96-bit nonces must stop at 2^32 messages per key
(NIST SP 800-38D, section 8.3); every re-issued cookie on every server sharing
the key counts towards that. XAES-256-GCM derives a fresh AES-256-GCM key from
the first 12 bytes of a 24-byte nonce, so random nonces stay safe for about
2^80 messages per key (C2SP, "Overview").

Only `cryptography` primitives are used: AES-256 in ECB mode for the two-block
key derivation (a CMAC-style KDF, NIST SP 800-108 counter mode) and
cryptography's own AESGCM for the message.

Deriving a key is cheap in AES terms but not in Python: building the AESGCM
object for it costs more than the encryption itself. So `seal` picks nonces
whose first half is shared by a short run of messages (`SEAL_BATCH`), each
with its own random second half, and both directions keep the AESGCM objects
of recently seen nonce prefixes. SECURITY.md gives the resulting bound.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.modes import ECB

__all__ = ["SEAL_BATCH", "XAES256GCM", "InvalidTag"]

_KEY_SIZE = 32
_NONCE_SIZE = 24
_BLOCK = 16
# The constant R_128 of the CMAC subkey doubling (NIST SP 800-38B, 5.3).
_RB = 0x87
_MASK_128 = (1 << 128) - 1
# The fixed prefixes of M1 and M2, placed in one 256-bit integer.
_COUNTERS = (0x00015800 << 224) | (0x00025800 << 96)
_HALF = _NONCE_SIZE // 2

#: Messages `seal` encrypts under one derived key before drawing a new nonce
#: prefix. Within a batch the 96-bit GCM nonces are random, so the chance of
#: any repeat after Q seals is at most Q * (SEAL_BATCH - 1) / 2^97, plus
#: Q^2 / 2^193 across batches: under 2^-32 up to about 2^60 seals per key.
SEAL_BATCH = 32

# Derived keys remembered per key, by nonce prefix. Past this many the memory
# is dropped whole: cheap, thread-safe, and a flood of made-up prefixes costs
# the honest ones one derivation each, no more than without it.
_DERIVED_KEYS = 256

# Bumped in a forked child, so that it draws its own nonce prefix instead of
# finishing the batch its parent started.
_generation = 0


def _after_fork() -> None:
    global _generation  # noqa: PLW0603 - process-wide by nature
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class XAES256GCM:
    """AEAD with 256-bit keys and 24-byte nonces, per C2SP XAES-256-GCM.

    The calling conventions match `cryptography`'s AEAD classes: `encrypt`
    returns ciphertext with the 16-byte tag appended, `decrypt` raises
    `cryptography.exceptions.InvalidTag` when anything does not authenticate.

    The per-key work (the AES key schedule and the CMAC subkey K1) is done
    once, in the constructor; each message then costs two AES block
    encryptions plus one AES-256-GCM operation, and the two block encryptions
    are skipped when the nonce's first half was seen lately. `seal` chooses
    the nonce itself and is the way to encrypt outside known-answer tests.
    """

    __slots__ = ("_derived", "_k1", "_k1_twice", "_key", "_local")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError("key must be bytes")
        if len(key) != _KEY_SIZE:
            raise ValueError("XAES-256-GCM key must be 32 bytes")
        self._key = bytes(key)
        self._local = threading.local()
        self._derived: dict[bytes, AESGCM] = {}

        # L = AES-256_K(0^128); K1 = L doubled in GF(2^128) (C2SP, "Key
        # derivation", following the CMAC subkey generation of SP 800-38B).
        ell = int.from_bytes(self._ecb().update(bytes(_BLOCK)), "big")
        k1 = (ell << 1) & _MASK_128
        if ell >> 127:
            k1 ^= _RB
        self._k1 = k1
        # Both KDF input blocks at once, as one 256-bit integer: the counter
        # constants and K1 are fixed per key, only the nonce prefix varies.
        self._k1_twice = (k1 << 128) | k1

    def __repr__(self) -> str:
        return "XAES256GCM(key=<redacted>)"

    @classmethod
    def generate_key(cls) -> bytes:
        """Return 32 random bytes from the operating system's CSPRNG."""
        return os.urandom(_KEY_SIZE)

    def _ecb(self) -> CipherContext:
        # One ECB encryptor per key and thread: ECB keeps no state between
        # blocks, so the context can be fed forever, and the key schedule is
        # paid once. A context must not be shared between threads.
        try:
            ctx: CipherContext = self._local.ecb
        except AttributeError:
            # ECB is right here: it encrypts two independent blocks for the
            # KDF, never a message.
            ctx = Cipher(algorithms.AES(self._key), ECB()).encryptor()  # noqa: S305
            self._local.ecb = ctx
        return ctx

    def _derive(self, prefix: bytes) -> AESGCM:
        """The AES-256-GCM key for a nonce's first 12 bytes."""
        aead = self._derived.get(prefix)
        if aead is None:
            # M1 = 0x00 0x01 'X' 0x00 || N[:12], M2 the same with counter 2;
            # each XORed with K1 and encrypted gives half of the derived key.
            head = int.from_bytes(prefix, "big")
            blocks = (_COUNTERS | (head << 128) | head) ^ self._k1_twice
            aead = AESGCM(self._ecb().update(blocks.to_bytes(2 * _BLOCK, "big")))
            if len(self._derived) >= _DERIVED_KEYS:
                self._derived.clear()
            self._derived[prefix] = aead
        return aead

    def seal(
        self, data: bytes, associated_data: bytes | None, prefix: bytes = b""
    ) -> bytes:
        """Encrypt under a fresh nonce; return prefix || nonce || ciphertext || tag.

        The nonce's first 12 bytes are drawn at random once per `SEAL_BATCH`
        messages (per thread), its last 12 bytes for every message. `prefix`
        is copied in front of the result as it is: a caller that frames the
        message (a version byte, a key id) saves a copy of the whole.
        """
        try:
            # [seals left, fork generation, nonce prefix, derived AEAD]
            batch: list[Any] = self._local.batch
        except AttributeError:
            batch = self._local.batch = [0, -1, b"", None]
        if batch[0] <= 0 or batch[1] != _generation:
            head = os.urandom(_HALF)
            batch[:] = (SEAL_BATCH, _generation, head, self._derive(head))
        batch[0] -= 1
        suffix = os.urandom(_HALF)
        return b"".join(
            (prefix, batch[2], suffix, batch[3].encrypt(suffix, data, associated_data))
        )

    def encrypt(
        self, nonce: bytes, data: bytes, associated_data: bytes | None
    ) -> bytes:
        """Encrypt and authenticate `data`; return ciphertext || 16-byte tag.

        The caller answers for never repeating `nonce`; `seal` picks one.
        """
        if len(nonce) != _NONCE_SIZE:
            raise ValueError("XAES-256-GCM nonce must be 24 bytes")
        aead = self._derive(nonce[:_HALF])
        return aead.encrypt(nonce[_HALF:], data, associated_data)

    def decrypt(
        self, nonce: bytes, data: bytes, associated_data: bytes | None
    ) -> bytes:
        """Authenticate and decrypt; raise `InvalidTag` on any mismatch."""
        if len(nonce) != _NONCE_SIZE:
            raise ValueError("XAES-256-GCM nonce must be 24 bytes")
        aead = self._derive(nonce[:_HALF])
        return aead.decrypt(nonce[_HALF:], data, associated_data)
