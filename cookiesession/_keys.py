"""Keys and key rings: where secrets become encryption keys, once, at start-up."""

from __future__ import annotations

import base64
import binascii
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cookiesession.crypto import XAES256GCM

__all__ = ["ENV_VAR", "Key", "KeyRing", "WeakSecretWarning", "generate_key"]

#: The environment variable `KeyRing.from_env()` reads by default.
ENV_VAR = "COOKIESESSION_KEYS"

KEY_ID_SIZE = 4
_RAW_KEY_SIZE = 32
# 32 random bytes in base64url without padding are exactly 43 characters.
_RAW_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")
# A secret shorter than this many bytes has less entropy than the AES-256 key
# it becomes, whatever the KDF; it is accepted (for apps migrating a short
# Starlette `secret_key`) but warned about.
_STRONG_SECRET_BYTES = 32
# Fixed, public salt: every server sharing a secret must derive the same key.
# HKDF's extract step does not need a secret salt (RFC 5869, section 3.1).
_SALT = b"cookiesession/v1 key derivation"
_INFO_KEY = b"cookiesession/v1 xaes-256-gcm key"
_INFO_ID = b"cookiesession/v1 key id"


class WeakSecretWarning(UserWarning):
    """A secret shorter than 32 bytes was given; it is used, but weak."""


def generate_key() -> str:
    """Return a new random 256-bit key as 43 characters of base64url text.

    The text can be passed anywhere a secret is accepted, or listed in the
    `COOKIESESSION_KEYS` environment variable.
    """
    return base64.urlsafe_b64encode(os.urandom(_RAW_KEY_SIZE)).rstrip(b"=").decode()


def _hkdf(material: bytes, info: bytes, length: int) -> bytes:
    kdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info)
    return kdf.derive(material)


def _material(secret: str | bytes) -> bytes:
    """The input keying material of a secret: a raw key decoded, else its bytes."""
    if isinstance(secret, str):
        if _RAW_KEY_TEXT.fullmatch(secret):
            try:
                return base64.urlsafe_b64decode(secret + "=")
            except (binascii.Error, ValueError):  # pragma: no cover - regex excludes
                pass
        return secret.encode("utf-8")
    if isinstance(secret, (bytes, bytearray)):
        return bytes(secret)
    raise TypeError(f"secret must be str, bytes or Key, not {type(secret).__name__}")


class Key:
    """One encryption key, derived from a secret with HKDF-SHA256.

    Its `id` (4 bytes, shown as hex) is a separate HKDF output, so it lets a
    cookie name the key that sealed it without revealing anything about the
    key itself. The key material never appears in `repr` or `str`.
    """

    __slots__ = ("aead", "id")

    id: bytes
    aead: XAES256GCM

    def __init__(self, secret: str | bytes) -> None:
        material = _material(secret)
        if not material:
            raise ValueError("secret must not be empty")
        if len(material) < _STRONG_SECRET_BYTES:
            warnings.warn(
                f"a secret of {len(material)} bytes is weak: anyone holding one "
                "cookie can guess it offline. Generate a strong key with "
                "`python -m cookiesession keygen` (or "
                "cookiesession.generate_key()) and put it first in the list.",
                WeakSecretWarning,
                stacklevel=3,
            )
        self.id = _hkdf(material, _INFO_ID, KEY_ID_SIZE)
        self.aead = XAES256GCM(_hkdf(material, _INFO_KEY, _RAW_KEY_SIZE))

    def __repr__(self) -> str:
        return f"Key(id={self.id.hex()!r}, material=<redacted>)"

    __str__ = __repr__


SecretLike = str | bytes | Key


class KeyRing:
    """An ordered set of keys: the first key encrypts; every key decrypts.

    To rotate, put a new key first and keep the old ones after it until every
    cookie sealed under them has expired or been re-sealed (which happens on
    the next response that carries them).

    Args:
        secrets: one secret or several, newest first. Each is a `Key`, a raw
            key as produced by `generate_key()` (43 characters of base64url),
            or any other `str`/`bytes` passphrase.

    Raises:
        ValueError: the ring is empty, or two secrets give the same key id
            (the same secret listed twice).
        TypeError: a secret of another type.
    """

    __slots__ = ("_by_id", "_keys")

    def __init__(self, secrets: SecretLike | Iterable[SecretLike]) -> None:
        if isinstance(secrets, (str, bytes, bytearray, Key)):
            secrets = [secrets]
        elif not isinstance(secrets, Iterable):
            raise TypeError(
                "secret must be a str, bytes, Key or a list of them, not "
                f"{type(secrets).__name__}"
            )
        keys = tuple(s if isinstance(s, Key) else Key(s) for s in secrets)
        if not keys:
            raise ValueError("secret: the key ring needs at least one key")
        by_id: dict[bytes, Key] = {}
        for position, key in enumerate(keys):
            if key.id in by_id:
                raise ValueError(
                    f"secret: the key at position {position} duplicates an "
                    f"earlier one (key id {key.id.hex()})"
                )
            by_id[key.id] = key
        self._keys = keys
        self._by_id: Mapping[bytes, Key] = by_id

    @classmethod
    def from_env(
        cls, name: str = ENV_VAR, environ: Mapping[str, str] | None = None
    ) -> KeyRing:
        """Build a ring from an environment variable.

        The variable holds keys separated by commas and/or whitespace, the
        encrypting key first, e.g. `COOKIESESSION_KEYS="new-key,old-key"`.

        Raises:
            ValueError: the variable is unset or holds no key.
        """
        env = os.environ if environ is None else environ
        text = env.get(name, "")
        parts = [p for p in re.split(r"[\s,]+", text) if p]
        if not parts:
            raise ValueError(f"environment variable {name} holds no key")
        return cls(parts)

    @property
    def primary(self) -> Key:
        """The key that seals new cookies."""
        return self._keys[0]

    def get(self, key_id: bytes) -> Key | None:
        """The key with this id, or None."""
        return self._by_id.get(key_id)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        ids = ", ".join(k.id.hex() for k in self._keys)
        return f"KeyRing([{ids}])"
