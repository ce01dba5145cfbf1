"""Cookie attributes, validated once and rendered into Set-Cookie suffixes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

__all__ = ["CookieOptions", "seconds"]

SameSite = Literal["lax", "strict", "none"]
Priority = Literal["low", "medium", "high"]

# RFC 6265 section 4.1.1: a cookie name is an HTTP token; the value and the
# Path/Domain attribute values must not hold ';', control characters or
# whitespace that would let them inject further attributes.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ATTRIBUTE_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]+")


def seconds(value: int | timedelta | None, parameter: str) -> int | None:
    """A lifetime in whole seconds; refuses negative values and other types."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = int(value.total_seconds())
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{parameter} must be an int (seconds), a timedelta or None, "
            f"not {type(value).__name__}"
        )
    if value < 0:
        raise ValueError(f"{parameter} must not be negative")
    return value


def check_cookie_name(name: object, parameter: str = "name") -> str:
    """Refuse a cookie name that is not an RFC 6265 token."""
    if not isinstance(name, str):
        raise TypeError(f"{parameter} must be a str, not {type(name).__name__}")
    if not _TOKEN.fullmatch(name):
        raise ValueError(
            f"{parameter} must be a non-empty RFC 6265 token (letters, digits "
            "and !#$%&'*+-.^_`|~), without spaces, '=' or ';'"
        )
    return name


@dataclass(frozen=True, slots=True)
class CookieOptions:
    """Attributes of the session cookie.

    Args:
        path: the Path attribute.
        domain: the Domain attribute; None leaves it off (host-only cookie).
        max_age: lifetime in seconds (int or timedelta), applied both to the
            cookie and, inside the sealed value, to the session's idle expiry.
            None makes a browser-session cookie (no Max-Age/Expires); the
            session then still ends at the middleware's `absolute_lifetime`.
        http_only: set HttpOnly, hiding the cookie from JavaScript.
        secure: True, False, or "auto" to set Secure exactly when the request
            came over https (or wss).
        same_site: "lax", "strict" or "none"; "none" requires `secure=True`.
        partitioned: set Partitioned (CHIPS) for third-party contexts.
        priority: "low", "medium" or "high" (Chromium's Priority attribute);
            None leaves it off.

    Raises:
        ValueError, TypeError: naming the parameter, for any invalid value.
    """

    path: str = "/"
    domain: str | None = None
    max_age: int | timedelta | None = 1_209_600
    http_only: bool = True
    secure: bool | Literal["auto"] = "auto"
    same_site: SameSite = "lax"
    partitioned: bool = False
    priority: Priority | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ValueError("path must be a str starting with '/'")
        if not _ATTRIBUTE_VALUE.fullmatch(self.path):
            raise ValueError("path must not contain ';', spaces or control characters")
        if self.domain is not None and (
            not isinstance(self.domain, str)
            or not _ATTRIBUTE_VALUE.fullmatch(self.domain)
        ):
            raise ValueError(
                "domain must be None or a str without ';', spaces or control characters"
            )
        object.__setattr__(self, "max_age", seconds(self.max_age, "max_age"))
        for flag in ("http_only", "partitioned"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool")
        if self.secure not in (True, False, "auto"):
            raise ValueError("secure must be True, False or 'auto'")
        same_site = self.same_site.lower() if isinstance(self.same_site, str) else None
        if same_site not in ("lax", "strict", "none"):
            raise ValueError("same_site must be 'lax', 'strict' or 'none'")
        object.__setattr__(self, "same_site", same_site)
        if same_site == "none" and self.secure is not True:
            # Browsers reject SameSite=None without Secure (RFC 6265bis,
            # section 5.6.7 "The SameSite Attribute").
            raise ValueError("same_site='none' requires secure=True")
        priority = self.priority.lower() if isinstance(self.priority, str) else None
        if self.priority is not None and priority not in ("low", "medium", "high"):
            raise ValueError("priority must be None, 'low', 'medium' or 'high'")
        object.__setattr__(self, "priority", priority)

    @property
    def max_age_seconds(self) -> int | None:
        """`max_age` in whole seconds (it is normalized at construction)."""
        return self.max_age  # type: ignore[return-value]

    def check_name(self, name: str) -> None:
        """Refuse a cookie name whose prefix rules these options break.

        RFC 6265bis section 4.1.3: `__Secure-` requires Secure; `__Host-`
        requires Secure, Path=/ and no Domain.
        """
        lowered = name.lower()
        if lowered.startswith(("__secure-", "__host-")) and self.secure is not True:
            raise ValueError(f"name {name!r}: its prefix requires secure=True")
        if lowered.startswith("__host-") and (self.path != "/" or self.domain):
            raise ValueError(
                f"name {name!r}: '__Host-' requires path='/' and no domain"
            )

    def suffix(self, *, secure: bool) -> str:
        """The attributes after Max-Age/Expires, each preceded by '; '."""
        parts = []
        if self.domain is not None:
            parts.append(f"; Domain={self.domain}")
        if self.http_only:
            parts.append("; HttpOnly")
        if secure:
            parts.append("; Secure")
        parts.append(f"; SameSite={self.same_site.capitalize()}")
        if self.partitioned:
            parts.append("; Partitioned")
        if self.priority is not None:
            parts.append(f"; Priority={self.priority.capitalize()}")
        return "".join(parts)
