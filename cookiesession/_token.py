"""Token format v1: session state sealed into one cookie-safe string.

    token   = base64url-nopad( version || key_id || nonce || ciphertext || tag )
    version = 0x01                      1 byte
    key_id  = HKDF(secret, "key id")    4 bytes (see _keys.py)
    nonce   = random                    24 bytes (XAES-256-GCM)
    AAD     = version || key_id || cookie name (UTF-8)
    plaintext = CBOR(header array) || CBOR(data map)
    header  = [session_id (16 bytes), issued_at_ms, absolute_expiry,
               idle_expiry or null, cookie overrides or null, subject or null]

Expiry is enforced from the authenticated payload alone: a cookie's own
Max-Age/Expires attributes are whatever the client says they are. SECURITY.md
walks through the layout byte by byte.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag

from cookiesession import _serialize
from cookiesession._errors import InvalidSession, Reason
from cookiesession._keys import KEY_ID_SIZE, KeyRing

__all__ = [
    "CLOCK_SKEW",
    "MAX_CHUNKS",
    "MAX_TOKEN_CHARS",
    "VERSION",
    "Opened",
    "Payload",
    "TokenCodec",
    "new_session_id",
]

VERSION = 1
_VERSION_BYTE = bytes([VERSION])
NONCE_SIZE = 24
SESSION_ID_SIZE = 16
_TAG_SIZE = 16
_PREFIX = 1 + KEY_ID_SIZE
_HEADER = _PREFIX + NONCE_SIZE
# Smallest possible plaintext: a 6-item array with a 16-byte id and a map.
_MIN_RAW = _HEADER + _TAG_SIZE + 24

#: Seconds a token's issue time may lie ahead of this server's clock (servers
#: sharing a key never agree on time exactly). Anything further ahead is
#: rejected as issued in the future.
CLOCK_SKEW = 60

#: Most cookies one session may be split over by default (`name.0` ...).
MAX_CHUNKS = 24

#: Longest token text `TokenCodec.open` will look at by default; checked
#: before any decoding. The middleware passes its own `max_chunks` x 4096.
MAX_TOKEN_CHARS = MAX_CHUNKS * 4096

# The final base64 character of a string whose length is 2 or 3 mod 4 carries
# 4 or 2 unused bits; a canonical encoder leaves them zero. Accepting other
# values would let two different strings open to the same token.
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# URL-safe to standard alphabet for the C decoder. The standard alphabet's own
# '+' and '/' and any '=' become '!', which the strict decoder refuses: a
# token has exactly one spelling.
_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")


# strict_mode (Python 3.11+) validates the alphabet in C, faster than the
# regular expression behind b64decode(validate=True).
_STRICT_BASE64 = sys.version_info >= (3, 11)


def new_session_id() -> bytes:
    """A random 128-bit session id."""
    return os.urandom(SESSION_ID_SIZE)


@dataclass(slots=True)
class Payload:
    """The authenticated content of a token."""

    session_id: bytes
    issued_at_ms: int
    absolute_expiry: int
    idle_expiry: int | None
    cookie: dict[str, Any] | None = None
    subject: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def header(self) -> list[Any]:
        """The fields before the data, in token order."""
        return [
            self.session_id,
            self.issued_at_ms,
            self.absolute_expiry,
            self.idle_expiry,
            self.cookie,
            self.subject,
        ]

    def expires_at(self) -> int:
        """When this token stops being accepted, in Unix seconds."""
        if self.idle_expiry is None:
            return self.absolute_expiry
        return min(self.absolute_expiry, self.idle_expiry)


class Opened(NamedTuple):
    """A successfully opened token."""

    payload: Payload
    #: The CBOR encoding of `payload.data` as it arrived, for change detection.
    data_bytes: bytes
    #: Sealed under a key other than the ring's primary: re-seal to rotate.
    stale_key: bool


def _b64encode(raw: bytes) -> str:
    # The newline b2a_base64 adds goes with the padding: cheaper than asking
    # for none by keyword. Two replaces, each a memchr scan, beat one
    # translate's table lookup per byte from about 200 bytes on.
    encoded = binascii.b2a_base64(raw).replace(b"+", b"-").replace(b"/", b"_")
    return encoded.rstrip(b"=\n").decode("ascii")


def _b64decode(text: str) -> bytes:
    rest = len(text) % 4
    if rest == 1:
        raise ValueError("impossible base64 length")
    if rest:
        unused = 0b1111 if rest == 2 else 0b11
        last = _B64_ALPHABET.find(text[-1])
        if last < 0 or last & unused:
            raise ValueError("non-canonical base64")
    raw = text.encode("ascii").translate(_TO_STD) + b"=" * (-len(text) % 4)
    if _STRICT_BASE64:
        return binascii.a2b_base64(raw, strict_mode=True)  # type: ignore[call-arg,unused-ignore]
    return base64.b64decode(raw, validate=True)


# The header as CBOR for the shape nearly every token has: an issue time in
# milliseconds that needs 8 bytes, expiry times in seconds that need 4, no
# cookie override and no subject. Equal, byte for byte, to what the general
# encoder gives (a test checks); anything else goes to that encoder.
_COMMON_HEADER = struct.Struct(">BB16sBQBIBIBB")
_NO_IDLE_HEADER = struct.Struct(">BB16sBQBIBBB")
_MS_MIN = 1 << 32
_S_MIN = 1 << 16


def _header_bytes(payload: Payload) -> bytes:
    """CBOR of `payload.header()`."""
    # 0x86: array of 6; 0x50: 16-byte string; 0x1b/0x1a: 8/4-byte uint;
    # 0xf6: null. struct refuses values past the field's upper bound; the
    # lower bounds keep each field at the size the general encoder picks.
    sid, issued, absolute = (
        payload.session_id,
        payload.issued_at_ms,
        payload.absolute_expiry,
    )
    if (
        payload.cookie is None
        and payload.subject is None
        and len(sid) == SESSION_ID_SIZE
        and issued >= _MS_MIN
        and absolute >= _S_MIN
    ):
        idle = payload.idle_expiry
        try:
            if idle is None:
                return _NO_IDLE_HEADER.pack(
                    0x86, 0x50, sid, 0x1B, issued, 0x1A, absolute, 0xF6, 0xF6, 0xF6
                )
            if idle >= _S_MIN:
                return _COMMON_HEADER.pack(
                    0x86,
                    0x50,
                    sid,
                    0x1B,
                    issued,
                    0x1A,
                    absolute,
                    0x1A,
                    idle,
                    0xF6,
                    0xF6,
                )
        except struct.error:
            pass  # a field too large for its slot: the general encoder
    return _serialize.encode(payload.header())


def _overrides_ok(cookie: object) -> bool:
    # Version 1 knows one override: {"max_age": seconds}.
    if type(cookie) is not dict or len(cookie) != 1:
        return False
    max_age = cookie.get("max_age")
    return type(max_age) is int and max_age >= 0


def _payload(head: Any, data: Any) -> Payload | None:
    """The payload if `head` and `data` have exactly the v1 shape, else None."""
    if type(head) is not list or len(head) != 6 or type(data) is not dict:
        return None
    sid, iat, absolute, idle, cookie, subject = head
    if (
        type(sid) is bytes
        and len(sid) == SESSION_ID_SIZE
        and type(iat) is int
        and type(absolute) is int
        and (idle is None or type(idle) is int)
        and (cookie is None or _overrides_ok(cookie))
        and (subject is None or type(subject) is str)
    ):
        return Payload(sid, iat, absolute, idle, cookie, subject, data)
    return None


class TokenCodec:
    """Seals `Payload`s into tokens bound to one cookie name, and opens them.

    Args:
        keys: the key ring; its first key seals, every key opens.
        name: the cookie name, bound into every token's associated data.
        max_chars: longest token text accepted, checked before decoding.
    """

    __slots__ = (
        "_aad",
        "_keys",
        "_max_chars",
        "_name",
        "_primary",
        "_sealing_aead",
        "_sealing_prefix",
    )

    def __init__(
        self, keys: KeyRing, name: str, *, max_chars: int = MAX_TOKEN_CHARS
    ) -> None:
        self._keys = keys
        self._name = name.encode("utf-8")
        self._max_chars = max_chars
        # A ring never changes, so what every seal starts with is known now.
        self._primary = keys.primary
        self._sealing_aead = self._primary.aead
        self._sealing_prefix = _VERSION_BYTE + self._primary.id
        self._aad = self._sealing_prefix + self._name

    def seal(
        self,
        payload: Payload,
        data_bytes: bytes | None = None,
        *,
        nonce: bytes | None = None,
    ) -> str:
        """Encrypt `payload` under the primary key.

        `data_bytes` is `payload.data` already validated and encoded (the
        middleware encodes once to detect changes and reuses it here); when
        None, the data is validated and encoded now. `nonce` is for
        known-answer tests only: a repeated nonce under one key breaks the
        confidentiality and integrity of both messages.

        Raises:
            SessionDataError: the data holds something that cannot be stored.
        """
        if data_bytes is None:
            data_bytes = _serialize.dumps(payload.data)
        plaintext = _header_bytes(payload) + data_bytes
        if nonce is None:
            raw = self._sealing_aead.seal(plaintext, self._aad, self._sealing_prefix)
        elif len(nonce) != NONCE_SIZE:
            raise ValueError("nonce must be 24 bytes")
        else:
            raw = b"".join(
                (
                    self._sealing_prefix,
                    nonce,
                    self._sealing_aead.encrypt(nonce, plaintext, self._aad),
                )
            )
        # _b64encode, inlined: this runs for every cookie sent.
        encoded = binascii.b2a_base64(raw).replace(b"+", b"-").replace(b"/", b"_")
        return encoded.rstrip(b"=\n").decode("ascii")

    def open(self, token: str, *, now: float | None = None) -> Opened:
        """Authenticate, decrypt and check a token.

        Raises:
            InvalidSession: for every failure, with the cause in `.reason`.
        """
        if len(token) > self._max_chars:
            raise InvalidSession(Reason.OVERSIZED)
        try:
            raw = _b64decode(token)
        except (ValueError, binascii.Error):
            raise InvalidSession(Reason.MALFORMED) from None
        if len(raw) < _MIN_RAW:
            raise InvalidSession(Reason.MALFORMED)

        if raw[0] != VERSION:
            raise InvalidSession(Reason.VERSION)
        key = self._keys.get(raw[1:_PREFIX])
        if key is None:
            raise InvalidSession(Reason.UNKNOWN_KEY)

        try:
            plaintext = key.aead.decrypt(
                raw[_PREFIX:_HEADER], raw[_HEADER:], raw[:_PREFIX] + self._name
            )
        except InvalidTag:
            raise InvalidSession(Reason.TAMPERED) from None

        try:
            head, data, offset = _serialize.decode_pair(plaintext)
        except ValueError:
            raise InvalidSession(Reason.PAYLOAD) from None
        payload = _payload(head, data)
        if payload is None:
            raise InvalidSession(Reason.PAYLOAD)

        if now is None:
            now = time.time()
        if now >= payload.expires_at():
            raise InvalidSession(Reason.EXPIRED)
        if payload.issued_at_ms > (now + CLOCK_SKEW) * 1000:
            raise InvalidSession(Reason.FUTURE)
        stale = key is not self._primary
        return Opened(payload, plaintext[offset:], stale)
