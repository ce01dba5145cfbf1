"""The exceptions cookiesession raises, and the words it logs them with.

Two families, kept apart on purpose:

- `InvalidSession`: anything wrong with a cookie that arrived. It carries one
  fixed message whatever went wrong, so nothing about the cookie, the keys or
  the plaintext can leak through an error page or a log line; the `reason`
  attribute is a category word for a DEBUG log.
- `ValueError` / `TypeError` raised at construction, naming the parameter, for
  configuration mistakes; `SessionDataError` (a `TypeError`) or
  `SessionTooLarge` (a `ValueError`) raised when session data cannot be
  stored, at the point of saving.
"""

from __future__ import annotations

import enum
import logging

__all__ = ["InvalidSession", "Reason", "SessionDataError", "SessionTooLarge"]

logger = logging.getLogger("cookiesession")


class Reason(str, enum.Enum):
    """Why a cookie was rejected; safe to log, says nothing about its content."""

    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    VERSION = "unknown-version"
    UNKNOWN_KEY = "unknown-key"
    TAMPERED = "tampered"
    PAYLOAD = "bad-payload"
    EXPIRED = "expired"
    FUTURE = "issued-in-future"
    REVOKED = "revoked"
    STORE_UNAVAILABLE = "revocation-store-unavailable"


class InvalidSession(Exception):
    """A session cookie could not be opened.

    The message is the same for every cause. `reason` says which check failed
    (a `Reason`), for logging at DEBUG level only.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: Reason) -> None:
        super().__init__("invalid session cookie")
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidSession], tuple[Reason]]:
        return (InvalidSession, (self.reason,))


class SessionDataError(TypeError):
    """Session data holds a value that cannot be stored in a cookie.

    The message names the key path (e.g. `session['cart'][2]`) and the type,
    never the value.
    """


class SessionTooLarge(ValueError):
    """The sealed session exceeds what the configured cookies can carry."""
