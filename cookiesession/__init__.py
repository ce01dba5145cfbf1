"""Encrypted, rotatable, revocable sessions stored in the cookie itself."""

from cookiesession._errors import (
    InvalidSession,
    Reason,
    SessionDataError,
    SessionTooLarge,
)
from cookiesession._keys import Key, KeyRing, WeakSecretWarning, generate_key
from cookiesession._serialize import MAX_DEPTH
from cookiesession._token import CLOCK_SKEW, Payload, TokenCodec

__all__ = [
    "CLOCK_SKEW",
    "MAX_DEPTH",
    "InvalidSession",
    "Key",
    "KeyRing",
    "Payload",
    "Reason",
    "SessionDataError",
    "SessionTooLarge",
    "TokenCodec",
    "WeakSecretWarning",
    "generate_key",
]
