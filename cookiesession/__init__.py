"""Encrypted, rotatable, revocable sessions stored in the cookie itself.

Start with `SessionMiddleware`; README.md has the quick start and
SECURITY.md the threat model and token format.
"""

from cookiesession._errors import (
    InvalidSession,
    Reason,
    SessionDataError,
    SessionTooLarge,
)
from cookiesession._keys import Key, KeyRing, WeakSecretWarning, generate_key
from cookiesession._middleware import SessionMiddleware
from cookiesession._options import CookieOptions
from cookiesession._revocation import (
    MemoryRevocationStore,
    RedisRevocationStore,
    RevocationStore,
    RevocationStoreError,
)
from cookiesession._serialize import MAX_DEPTH
from cookiesession._session import Session, SessionCookie
from cookiesession._token import CLOCK_SKEW, Payload, TokenCodec

__all__ = [
    "CLOCK_SKEW",
    "CookieOptions",
    "InvalidSession",
    "Key",
    "KeyRing",
    "MAX_DEPTH",
    "MemoryRevocationStore",
    "Payload",
    "Reason",
    "RedisRevocationStore",
    "RevocationStore",
    "RevocationStoreError",
    "Session",
    "SessionCookie",
    "SessionDataError",
    "SessionMiddleware",
    "SessionTooLarge",
    "TokenCodec",
    "WeakSecretWarning",
    "generate_key",
]
