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
"""

from __future__ import annotations

import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.modes import ECB

__all__ = ["XAES256GCM", "InvalidTag"]

_KEY_SIZE = 32
_NONCE_SIZE = 24
_BLOCK = 16
# The constant R_128 of the CMAC subkey doubling (NIST SP 800-38B, 5.3).
_RB = 0x87
_MASK_128 = (1 << 128) - 1
# The fixed prefixes of M1 and M2, placed in one 256-bit integer.
_COUNTERS = (0x00015800 << 224) | (0x00025800 << 96)


class XAES256GCM:
    """AEAD with 256-bit keys and 24-byte nonces, per C2SP XAES-256-GCM.

    The calling conventions match `cryptography`'s AEAD classes: `encrypt`
    returns ciphertext with the 16-byte tag appended, `decrypt` raises
    `cryptography.exceptions.InvalidTag` when anything does not authenticate.

    The per-key work (the AES key schedule and the CMAC subkey K1) is done
    once, in the constructor; each message then costs two AES block
    encryptions plus one AES-256-GCM operation.
    """

    __slots__ = ("_k1", "_k1_twice", "_key", "_local")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError("key must be bytes")
        if len(key) != _KEY_SIZE:
            raise ValueError("XAES-256-GCM key must be 32 bytes")
        self._key = bytes(key)
        self._local = threading.local()

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

    def _derive(self, nonce: bytes) -> AESGCM:
        if len(nonce) != _NONCE_SIZE:
            raise ValueError("XAES-256-GCM nonce must be 24 bytes")
        # M1 = 0x00 0x01 'X' 0x00 || N[:12], M2 the same with counter 2; each
        # XORed with K1 and encrypted gives half of the derived key.
        head = int.from_bytes(nonce[:12], "big")
        blocks = (_COUNTERS | (head << 128) | head) ^ self._k1_twice
        return AESGCM(self._ecb().update(blocks.to_bytes(2 * _BLOCK, "big")))

    def encrypt(
        self, nonce: bytes, data: bytes, associated_data: bytes | None
    ) -> bytes:
        """Encrypt and authenticate `data`; return ciphertext || 16-byte tag."""
        return self._derive(nonce).encrypt(nonce[12:], data, associated_data)

    def decrypt(
        self, nonce: bytes, data: bytes, associated_data: bytes | None
    ) -> bytes:
        """Authenticate and decrypt; raise `InvalidTag` on any mismatch."""
        return self._derive(nonce).decrypt(nonce[12:], data, associated_data)
