"""The ASGI middleware: open the cookie on the way in, seal it on the way out."""

from __future__ import annotations

import enum
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from email.utils import formatdate
from typing import Any, Literal

import cbor2
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cookiesession import _serialize
from cookiesession._errors import InvalidSession, Reason, SessionTooLarge
from cookiesession._keys import KeyRing, SecretLike
from cookiesession._options import CookieOptions, check_cookie_name, seconds
from cookiesession._revocation import (
    MemoryRevocationStore,
    RevocationStore,
    RevocationStoreError,
)
from cookiesession._serialize import Packed
from cookiesession._session import Session
from cookiesession._token import (
    CLOCK_SKEW,
    MAX_CHUNKS,
    Payload,
    TokenCodec,
)

__all__ = ["COOKIE_LINE_LIMIT", "MAX_CHUNKS", "SessionMiddleware"]

logger = logging.getLogger("cookiesession")

#: Longest Set-Cookie header line sent, "Set-Cookie: " and attributes
#: included. RFC 6265bis section 5.7 asks user agents to keep at least 4096
#: bytes of name, value and attributes; longer cookies are dropped silently.
COOKIE_LINE_LIMIT = 4096
_DEFAULT_ABSOLUTE = 30 * 24 * 3600
_EXPIRED = "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
_LINE_PREFIX = len("Set-Cookie: ")
# More copies of the session cookie than this (different paths or domains)
# are not tried, so a request cannot make the server decrypt without bound.
_MAX_CANDIDATES = 3
_MISSING: Any = object()
_SECURE_SCHEMES = ("https", "wss")
# Response headers that `_apply_headers` merges rather than passes through.
_MERGED_HEADERS = frozenset({b"set-cookie", b"vary"})
_EMPTY_MAP = b"\xa0"  # CBOR for {}
# How many opened cookie values to remember, and the longest remembered: at
# most 1,024 x (4 KB of token text + its plaintext), about 10 MB.
_CACHED_TOKENS = 1024
_CACHED_TOKENS_HALF = _CACHED_TOKENS // 2
_CACHED_TOKEN_CHARS = COOKIE_LINE_LIMIT


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET
_secure_on_http_warned = False


def _hash_id(session_id: bytes) -> str:
    """A short, one-way label for a session id, fit for log lines."""
    return hashlib.sha256(session_id).hexdigest()[:12]


# What `_open` gives: the payload's header fields, a template of its data for
# `Session._from_template` with the number of packed values in it, the data's
# bytes, and whether a key other than the primary sealed it. Cookie values
# seen lately are remembered as exactly this, with None for a template not
# built yet: the data is kept as bytes, and as a template (scalars shared,
# containers packed), so the objects a handler gets are its own.
_Opened = tuple[Payload, dict[str, Any], int, bytes, bool]
_Remembered = tuple[Payload, "dict[str, Any] | None", int, bytes, bool]
# A remembered payload's data lives in its template; this stands in for it.
_IN_TEMPLATE: dict[str, Any] = {}


class _Incoming:
    """The session cookies a request brought: names, and the values to open.

    Slots rather than class defaults: `_load` writes two of the fields on
    nearly every request, and a slot is cheaper to write than an instance
    dict that has to grow.
    """

    __slots__ = (
        "candidates",
        "chunk_names",
        "chunked",
        "chunked_at",
        "names",
        "reason",
        "token",
        "unchecked",
    )

    def __init__(self, names: list[str], candidates: list[str]) -> None:
        #: Every session cookie name the request sent (to expire if stale).
        self.names = names
        #: Token texts to try, in order: each copy of `name`, else the chunks.
        self.candidates = candidates
        #: Position in `candidates` of the reassembled chunks, if any.
        self.chunked_at = -1
        #: Names of the chunk cookies, in the order sent.
        self.chunk_names: list[str] | tuple[()] = ()
        #: The value that opened came from the chunks (not the single cookie).
        self.chunked = False
        self.reason: Reason | None = None
        #: The value that opened.
        self.token = ""
        #: A valid session set aside because the revocation store was down.
        self.unchecked: Payload | None = None


class SessionMiddleware:
    """Encrypted cookie sessions for any ASGI app.

    `request.session` (and `scope["session"]`) is a `Session`, a dict. The
    cookie is sealed with XAES-256-GCM under the first key of `secret`; every
    key opens. A cookie that is malformed, tampered, expired, revoked or
    sealed for another name gives a fresh empty session and is cleared.

    Args:
        app: the ASGI app to wrap.
        secret: a secret, a list of secrets (the first encrypts, every one
            decrypts), or a `KeyRing`.
        name: the cookie name. Sessions too large for one cookie are split
            over `name.0`, `name.1`, ...
        cookie: cookie attributes (`CookieOptions`).
        resave: re-seal the cookie on every response that carries one, even
            unchanged (the expiry is kept).
        save_uninitialized: send a cookie for a new session the handler left
            empty.
        rolling: re-issue the cookie with a fresh expiry on every response.
        refresh_after: re-issue the cookie, with a fresh expiry, once this
            fraction (0 < f <= 1) of its `max_age` has passed; None never
            refreshes an unchanged session.
        absolute_lifetime: how long a session may live from its creation,
            however often it is refreshed (seconds or timedelta). Defaults to
            30 days, or `max_age` if that is longer.
        revocation: a `RevocationStore`; with one, `destroy()` and
            `regenerate()` make every copy of the old cookie invalid.
        revocation_failure: "closed" (default) treats a session as revoked
            when the store cannot answer; "open" accepts it and logs WARNING.
        max_chunks: the most cookies one session may be split over.
        clock: the time source, in Unix seconds (for tests).

    Starlette's `SessionMiddleware` keywords are accepted with Starlette's
    meanings: `secret_key`, `session_cookie`, `max_age`, `path`,
    `same_site`, `https_only`, `domain`, `partitioned`.

    Raises:
        ValueError, TypeError: naming the parameter, for any bad setting.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret: SecretLike | Iterable[SecretLike] | KeyRing | None = None,
        *,
        name: str = "session",
        cookie: CookieOptions | None = None,
        resave: bool = False,
        save_uninitialized: bool = False,
        rolling: bool = False,
        refresh_after: float | None = None,
        absolute_lifetime: int | timedelta | None = None,
        revocation: RevocationStore | None = None,
        revocation_failure: Literal["closed", "open"] = "closed",
        max_chunks: int = MAX_CHUNKS,
        clock: Callable[[], float] = time.time,
        secret_key: Any = None,
        session_cookie: str | None = None,
        max_age: int | timedelta | _Unset | None = _UNSET,
        path: str | None = None,
        same_site: Literal["lax", "strict", "none"] | None = None,
        https_only: bool | None = None,
        domain: str | None = None,
        partitioned: bool | None = None,
    ) -> None:
        self.app = app
        self._keys = _key_ring(secret, secret_key)
        if session_cookie is not None:
            if name != "session":
                raise ValueError("pass name or session_cookie, not both")
            name = session_cookie
        self.options = _cookie_options(
            cookie,
            secret_key is not None,
            {
                "max_age": max_age,
                "path": path,
                "same_site": same_site,
                "https_only": https_only,
                "domain": domain,
                "partitioned": partitioned,
            },
        )
        self.name = check_cookie_name(name)
        self.options.check_name(self.name)

        _check_bool(
            resave=resave, save_uninitialized=save_uninitialized, rolling=rolling
        )
        self.resave = resave
        self.save_uninitialized = save_uninitialized
        self.rolling = rolling
        if refresh_after is not None and (
            isinstance(refresh_after, bool)
            or not isinstance(refresh_after, (int, float))
            or not 0 < refresh_after <= 1
        ):
            raise ValueError("refresh_after must be None or a fraction in (0, 1]")
        self.refresh_after = refresh_after
        self.absolute_lifetime = _absolute_lifetime(
            absolute_lifetime, self.options.max_age_seconds
        )

        if revocation is not None and not isinstance(revocation, RevocationStore):
            raise TypeError("revocation must be a RevocationStore")
        if revocation_failure not in ("closed", "open"):
            raise ValueError("revocation_failure must be 'closed' or 'open'")
        self.revocation = revocation
        self._fail_open = revocation_failure == "open"
        self._store_down = False

        if isinstance(max_chunks, bool) or not isinstance(max_chunks, int):
            raise TypeError("max_chunks must be an int")
        if not 1 <= max_chunks <= 180:
            raise ValueError("max_chunks must be between 1 and 180")
        self.max_chunks = max_chunks
        if not callable(clock):
            raise TypeError("clock must be callable")
        self._clock = clock

        self._codec = TokenCodec(
            self._keys, self.name, max_chars=max_chunks * COOKIE_LINE_LIMIT
        )
        self._chunk_prefix = self.name + "."
        # Every session cookie name contains this, chunks included.
        self._name_bytes = self.name.encode("latin-1")
        self._single = [self.name]
        self._secure = self.options.secure
        self._secure_auto = self._secure == "auto"
        self._max_age = self.options.max_age_seconds
        # Cookie values opened lately, with what they opened to: a browser
        # sends the same value on every request until it changes, and
        # authenticating identical bytes again would give the same answer.
        # Expiry and revocation are still checked on every request.
        # Two generations, each of at most half the entries: when the recent
        # one fills up it becomes the older one, and the older one is let go
        # whole. Cheaper per request than evicting entries one by one.
        self._recent: dict[str, _Remembered] = {}
        self._older: dict[str, _Remembered] = {}
        # The value last sealed here for each session lately, by its hash,
        # in two generations as above. A new value is remembered
        # as it is sealed only if the request brought the one sealed here
        # before it (or this process has sealed none for the session): a
        # browser sends back what it was last given, and remembering spares
        # its next request 4 us to 19 us of decryption and decoding, for
        # 1.5 us to 3.5 us on the write. A client that ignores Set-Cookie
        # sends an older value every time, and what is sealed for it would be
        # remembered for nothing; so would a value sealed for a browser whose
        # requests a balancer spreads over several processes, which shows the
        # same way: it brings what another process sealed last.
        self._latest: dict[bytes, int] = {}
        self._latest_older: dict[bytes, int] = {}
        self._suffix = {
            True: f"; Path={self.options.path}" + self.options.suffix(secure=True),
            False: f"; Path={self.options.path}" + self.options.suffix(secure=False),
        }
        # The last attributes built: (expiry second, Max-Age, Secure, text).
        self._last_attributes: tuple[int, int, bool, str] = (0, -1, False, "")

    # -- request ----------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        incoming = self._read_cookies(scope)
        store = self.revocation
        if store is None:
            session = self._load(incoming, None)
        elif type(store) is MemoryRevocationStore:
            # Exactly the built-in store, which a subclass may not be.
            session = self._load(incoming, store._revoked)
        else:
            session = await self._load_checked(incoming, store)
        scope["session"] = session
        start = "http.response.start" if kind == "http" else "websocket.accept"

        async def send_wrapper(message: Message) -> None:
            if message["type"] == start:
                # Only destroy(), regenerate() and sign_out_everywhere() have
                # revocations to write, and each of them retires the session.
                if store is not None and session._retired:
                    await self._commit_retired(store, scope, session, incoming, message)
                else:
                    self._commit(scope, session, incoming, message)
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _read_cookies(self, scope: Scope) -> _Incoming:
        names: list[str] = []
        candidates: list[str] = []
        chunks: dict[int, str] | None = None
        chunk_names: list[str] = []
        name, prefix, marker = self.name, self._chunk_prefix, self._name_bytes
        for key, raw in scope["headers"]:
            # Most Cookie headers hold no cookie of ours: skip those unparsed.
            # find() rather than `in`: bytes.__contains__ first tries the
            # marker as an integer and builds a TypeError to throw away.
            if key != b"cookie" or raw.find(marker) < 0:
                continue
            for part in raw.decode("latin-1").split(";"):
                cookie_name, _, value = part.partition("=")
                cookie_name = cookie_name.strip()
                if cookie_name == name:
                    names.append(name)
                    candidates.append(value.strip().strip('"'))
                elif cookie_name.startswith(prefix):
                    index = self._chunk_index(cookie_name[len(prefix) :])
                    if index is not None:
                        names.append(cookie_name)
                        chunk_names.append(cookie_name)
                        if chunks is None:
                            chunks = {}
                        chunks.setdefault(index, value.strip().strip('"'))
        incoming = _Incoming(names, candidates)
        if chunks:
            incoming.chunk_names = chunk_names
            # Reassemble in numeric order (name.10 after name.9); a gap means
            # a chunk went missing, and a missing chunk means no session.
            # Tried after any single cookie, which a stale copy may be.
            count = len(chunks)
            if max(chunks) != count - 1:
                incoming.reason = Reason.MALFORMED
            else:
                incoming.chunked_at = len(candidates)
                candidates.append("".join(chunks[i] for i in range(count)))
        return incoming

    def _chunk_index(self, text: str) -> int | None:
        # Only canonical decimal indexes below the cap: "01", "+1" or "999"
        # name someone else's cookie, and are neither read nor expired.
        if not text.isdecimal() or len(text) > 3:
            return None
        index = int(text)
        if str(index) != text or index >= self.max_chunks:
            return None
        return index

    def _load(
        self,
        incoming: _Incoming,
        revoked: Callable[[bytes, str | None, int], bool] | None,
    ) -> Session:
        """The session of the first candidate that opens and is not `revoked`.

        `revoked` answers at once (the memory store); a store that must be
        awaited goes through `_load_checked` instead.
        """
        position = 0
        for token in incoming.candidates:
            try:
                opened = self._open(token)
            except InvalidSession as exc:
                incoming.reason = exc.reason
            else:
                if revoked is None:
                    # `_accept`, inlined: nearly every request with a cookie
                    # ends here.
                    incoming.reason = None
                    incoming.token = token
                    incoming.chunked = position == incoming.chunked_at
                    return Session._from_template(*opened)
                head = opened[0]
                if not revoked(head.session_id, head.subject, head.issued_at_ms):
                    return _accept(incoming, position, opened)
                logger.debug("session cookie rejected: %s", Reason.REVOKED.value)
                incoming.reason = Reason.REVOKED
            # A counter, not enumerate(): measurably cheaper per request.
            position += 1  # noqa: SIM113
            if position == _MAX_CANDIDATES:
                break
        return _rejected(incoming)

    async def _load_checked(
        self, incoming: _Incoming, store: RevocationStore
    ) -> Session:
        """`_load`, with each opened session checked against `store`.

        Browsers send every cookie whose path and domain match, most specific
        path first, so a stale or revoked copy may stand before the live one.
        """
        for position, token in enumerate(incoming.candidates):
            if position == _MAX_CANDIDATES:
                break
            try:
                opened = self._open(token)
            except InvalidSession as exc:
                incoming.reason = exc.reason
                continue
            # The store is asked here rather than in a helper coroutine:
            # one coroutine fewer on every request with a cookie.
            payload = opened[0]
            try:
                revoked = await store.is_revoked(
                    payload.session_id,
                    subject=payload.subject,
                    issued_at_ms=payload.issued_at_ms,
                )
            except RevocationStoreError:
                reason = self._store_failed()
                if reason is None:  # failing open: accepted unchecked
                    return _accept(incoming, position, opened)
                incoming.unchecked = payload
            else:
                if self._store_down:
                    self._store_down = False
                    logger.warning("revocation store answering again")
                if not revoked:
                    return _accept(incoming, position, opened)
                logger.debug("session cookie rejected: %s", Reason.REVOKED.value)
                reason = Reason.REVOKED
            incoming.reason = reason
        return _rejected(incoming)

    def _store_failed(self) -> Reason | None:
        """The answer for a session the store could not check."""
        if not self._store_down:
            self._store_down = True
            logger.warning(
                "revocation store unavailable: failing %s",
                "open (sessions accepted unchecked)"
                if self._fail_open
                else "closed (sessions treated as revoked)",
            )
        return None if self._fail_open else Reason.STORE_UNAVAILABLE

    def _open(self, token: str) -> _Opened:
        """`TokenCodec.open`, skipping the decryption of a value seen lately."""
        now = self._clock()
        seen = self._recent.get(token) or self._older.get(token)
        if seen is None:
            payload, data_bytes, stale = self._codec.open(token, now=now)
            template, packed = _serialize.pack(payload.data)
            payload.data = _IN_TEMPLATE
            opened = (payload, template, packed, data_bytes, stale)
            if len(token) <= _CACHED_TOKEN_CHARS:
                self._remember(token, opened)
            return opened
        head = seen[0]
        idle = head.idle_expiry
        if now >= head.absolute_expiry or (idle is not None and now >= idle):
            self._recent.pop(token, None)
            self._older.pop(token, None)
            raise InvalidSession(Reason.EXPIRED)
        if seen[1] is None:
            # These bytes came from the encoder, after `validate`: the plain
            # decoder reads them the same as the strict one, faster.
            template, packed = _serialize.pack(cbor2.loads(seen[3]))
            seen = (head, template, packed, seen[3], seen[4])
            self._remember(token, seen)
        return seen  # type: ignore[return-value]

    def _remember(self, token: str, entry: _Remembered) -> None:
        recent = self._recent
        if len(recent) >= _CACHED_TOKENS_HALF:
            # The recent generation is full: it becomes the older one, and
            # the older one is let go whole.
            self._older = recent
            self._recent = recent = {}
        recent[token] = entry

    # -- response ---------------------------------------------------------

    def _commit(
        self,
        scope: Scope,
        session: Session,
        incoming: _Incoming,
        message: Message,
        first_ms: int = 0,
    ) -> None:
        """Decide what the response sends, seal it, and set the headers.

        A new session is issued no earlier than `first_ms`, so that one made
        right after a sign-out everywhere is not caught by it.
        """
        names = incoming.names
        if not (session or names or self.save_uninitialized) and not (
            session._retired or session._changed or session._force_save
        ):
            # The common case of a visitor without a session: nothing to
            # seal, expire or revoke.
            if session.accessed:
                _apply_headers(message, [], vary=True)
            return
        now = self._clock()
        opened = session._opened
        # An opened session whose data the handler removed keeps no cookie.
        emptied = False
        if opened is None:
            # A new session, or one that destroy()/regenerate() replaced.
            token, max_age = self._new_token(session, now, first_ms)
        elif not session and session._original != _EMPTY_MAP:  # `_emptied`
            token = max_age = None
            emptied = True
        else:
            token, max_age = self._renewed_token(session, opened, now, incoming.token)

        if self._secure_auto:
            secure = scope.get("scheme") in _SECURE_SCHEMES
        else:
            secure = self._secure is True
        if token is None:
            lines: list[tuple[str, str]] = []
        else:
            if secure and not self._secure_auto:
                _check_scheme(scope)
            lines = self._cookie_lines(token, max_age, secure, now)
        if names and not (
            # The usual request: one cookie, rewritten or still the live one.
            names == self._single
            and (
                len(lines) == 1
                if token is not None
                else opened is not None and not emptied
            )
        ):
            self._expire_stale(session, incoming, token, lines, secure)
        if lines or session.accessed:
            _apply_headers(message, lines, session.accessed)

    def _expire_stale(
        self,
        session: Session,
        incoming: _Incoming,
        token: str | None,
        lines: list[tuple[str, str]],
        secure: bool,
    ) -> None:
        """Add to `lines` the expiry of every session cookie no longer used.

        That is whatever the request brought that this response neither
        rewrites nor still relies on: a rejected cookie, an emptied or
        destroyed session, stale chunks. A cookie ignored only because the
        revocation store was down is kept: it works again when the store is
        back.
        """
        keep = {cookie_name for cookie_name, _ in lines}
        if token is None:
            if incoming.reason is Reason.STORE_UNAVAILABLE and not session._retired:
                keep.update(incoming.names)
            elif session._opened is not None and not _emptied(session):
                keep.update(incoming.chunk_names if incoming.chunked else (self.name,))
        for cookie_name in incoming.names:
            if cookie_name not in keep:
                keep.add(cookie_name)
                lines.append((cookie_name, self._expired_line(cookie_name, secure)))

    async def _commit_retired(
        self,
        store: RevocationStore,
        scope: Scope,
        session: Session,
        incoming: _Incoming,
        message: Message,
    ) -> None:
        """`_commit`, after writing the revocations the handler asked for."""
        if incoming.unchecked is not None:
            # Logout while the store was down: the handler saw an empty
            # session, but the cookie it ends is the one set aside. Revoke
            # that one (the store may be back) and let the cookie go.
            session._history = (*session._history, incoming.unchecked)
        first_ms = await self._write_revocations(store, session, self._clock())
        self._commit(scope, session, incoming, message, first_ms)

    def _new_token(
        self, session: Session, now: float, first_ms: int
    ) -> tuple[str | None, int | None]:
        if not session and not (
            session._force_save
            or session._changed  # a subject or cookie override was set
            or (self.save_uninitialized and not session._destroyed)
        ):
            return None, None
        overrides = session._overrides
        payload = Payload(
            session_id=bytes.fromhex(session.id),
            issued_at_ms=max(int(now * 1000), first_ms),
            absolute_expiry=int(now) + self.absolute_lifetime,
            idle_expiry=None,
            cookie=overrides,
            subject=session.subject,
            data=session,
        )
        max_age = self._max_age if overrides is None else overrides["max_age"]
        return self._seal(payload, None, max_age, now, True, remember=True)

    def _renewed_token(
        self, session: Session, opened: Payload, now: float, brought: str
    ) -> tuple[str | None, int | None]:
        overrides = session._overrides
        max_age = self._max_age if overrides is None else overrides["max_age"]
        encoded: tuple[bytes, int] | None = None
        changed = session._changed
        if not changed:
            # Found by content, so `session["cart"].append(x)` counts and a
            # write of the same value does not. Values still packed cannot
            # have changed; values the handler unpacked are compared alone.
            if session.modified:
                encoded = _serialize.dumps_counted(session)
                changed = encoded[0] != session._original
            elif session._thawed is not None:
                changed = not _thawed_unchanged(session, session._thawed)
        refresh = (
            changed
            or self.rolling
            or session._touch
            or (
                self.refresh_after is not None
                and self._refresh_due(opened, max_age, now)
            )
        )
        if not (refresh or self.resave or session._force_save or session._stale_key):
            return None, None
        payload = Payload(
            opened.session_id,
            opened.issued_at_ms,
            opened.absolute_expiry,
            opened.idle_expiry,
            overrides,
            session._subject,
            session,
        )
        # Remember the new value if `brought` was the latest sealed here for
        # this session, or if none was (see `_latest`).
        latest = self._latest.get(opened.session_id)
        if latest is None:
            latest = self._latest_older.get(opened.session_id)
        if latest is not None and latest != hash(brought):
            return self._seal(payload, encoded, max_age, now, refresh, remember=False)
        return self._seal(
            payload, encoded, max_age, now, refresh, remember=True, superseded=brought
        )

    def _seal(
        self,
        payload: Payload,
        encoded: tuple[bytes, int] | None,
        max_age: int | None,
        now: float,
        refresh: bool,
        *,
        remember: bool,
        superseded: str = "",
    ) -> tuple[str | None, int | None]:
        """Seal `payload`; `encoded` is `dumps_counted` of its data, if done.

        With `remember`, what the new value opens to is remembered, and the
        `superseded` value it replaces is let go.
        """
        seconds_now = int(now)
        if refresh and max_age is not None:
            # A fresh idle expiry, never past the absolute one.
            expires = min(seconds_now + max_age, payload.absolute_expiry)
            payload.idle_expiry = expires
        else:
            expires = payload.expires_at()
        remaining = expires - seconds_now
        if remaining <= 0 and (max_age is None or max_age > 0):
            # The session reached its absolute lifetime: let the cookie go.
            return None, None
        data_bytes, packed = (
            _serialize.dumps_counted(payload.data) if encoded is None else encoded
        )
        token = self._codec.seal(payload, data_bytes)
        latest = self._latest
        if len(latest) >= _CACHED_TOKENS_HALF:
            self._latest_older = latest
            self._latest = latest = {}
        # The token's own hash, as a fingerprint: the dict that remembers
        # the token would compute it anyway, and the next request's lookup
        # caches it on the value it brings. A collision costs only a value
        # remembered for nothing.
        latest[payload.session_id] = hash(token)
        if remember and len(token) <= _CACHED_TOKEN_CHARS:
            # The browser sends this value back next: remember what it opens
            # to. The payload was made for this seal alone, so it is kept.
            # Exact scalars and values still packed go into the template as
            # they are; a list or dict the handler built or unpacked, or a
            # scalar subclass (stored as its base type), leaves the template
            # to be built from the bytes on first use.
            data = payload.data
            template: dict[str, Any] | None
            if packed < 0:
                template, packed = None, 0
            elif type(data) is Session:
                template = dict.copy(data)
            else:
                # Not dict.copy() on the packed kind: it defines __iter__,
                # so the copy would read through __getitem__ and unpack
                # every value.
                template = dict(dict.items(data))
            payload.data = _IN_TEMPLATE
            # The browser sends the new value from now on. Letting the old
            # one go now, while its memory is warm, keeps a browser that
            # writes on every request from filling the generations with
            # values nobody sends, which cost more to let go cold.
            recent = self._recent
            if superseded and recent.pop(superseded, None) is None:
                self._older.pop(superseded, None)
            # `_remember`, inlined.
            if len(recent) >= _CACHED_TOKENS_HALF:
                self._older = recent
                self._recent = recent = {}
            recent[token] = (payload, template, packed, data_bytes, False)
        if max_age is None:
            return token, None
        return token, remaining if remaining > 0 else 0

    def _refresh_due(self, opened: Payload, max_age: int | None, now: float) -> bool:
        if self.refresh_after is None or max_age is None or opened.idle_expiry is None:
            return False
        issued = opened.idle_expiry - max_age
        return now - issued >= self.refresh_after * max_age

    async def _write_revocations(
        self, store: RevocationStore, session: Session, now: float
    ) -> int:
        """Write what destroy(), regenerate() and sign_out_everywhere() asked.

        Returns the earliest issue time (ms) a new session may now have: just
        past a sign-out everywhere, else 0.
        """
        for old in session._history:
            try:
                await store.revoke(
                    old.session_id,
                    subject=old.subject,
                    issued_at_ms=old.issued_at_ms,
                    until=old.absolute_expiry + CLOCK_SKEW,
                )
            except RevocationStoreError:
                logger.error(  # noqa: TRY400 - the store's error says nothing more
                    "could not revoke session %s: its cookie was cleared, but a "
                    "copy stays valid until it expires",
                    _hash_id(old.session_id),
                )
        session._history = ()
        subject = session._sign_out_subject
        if subject is None:
            return 0
        session._sign_out_subject = None
        # Every session issued up to and including this millisecond goes.
        before_ms = int(now * 1000) + 1
        try:
            await store.revoke_subject(
                subject,
                before_ms=before_ms,
                until=now + self.absolute_lifetime + CLOCK_SKEW,
            )
        except RevocationStoreError:
            logger.error(  # noqa: TRY400
                "could not sign out subject %s everywhere",
                hashlib.sha256(subject.encode()).hexdigest()[:12],
            )
        return before_ms

    # -- Set-Cookie lines ---------------------------------------------------

    def _expired_line(self, cookie_name: str, secure: bool) -> str:
        # The same attributes as the cookie it deletes (Path, Domain,
        # Partitioned...), or the browser keeps the original.
        return f"{cookie_name}={_EXPIRED}{self._suffix[secure]}"

    def _cookie_lines(
        self, token: str, max_age: int | None, secure: bool, now: float
    ) -> list[tuple[str, str]]:
        if max_age is None:
            attributes = self._suffix[secure]
        else:
            # Every cookie sent within one second with one lifetime shares
            # its attributes: Expires is the costly part.
            expires_at = int(now) + max_age
            cached_at, cached_age, cached_secure, attributes = self._last_attributes
            if (
                expires_at != cached_at
                or max_age != cached_age
                or secure != cached_secure
            ):
                expires = formatdate(expires_at, usegmt=True)
                # Max-Age first: Starlette's tests look for "; Max-Age=N;".
                attributes = (
                    f"; Max-Age={max_age}; Expires={expires}{self._suffix[secure]}"
                )
                self._last_attributes = (expires_at, max_age, secure, attributes)
        single = f"{self.name}={token}{attributes}"
        if _LINE_PREFIX + len(single) <= COOKIE_LINE_LIMIT:
            return [(self.name, single)]
        lines: list[tuple[str, str]] = []
        start = 0
        while start < len(token):
            chunk_name = f"{self._chunk_prefix}{len(lines)}"
            room = (
                COOKIE_LINE_LIMIT - _LINE_PREFIX - len(chunk_name) - 1 - len(attributes)
            )
            part = token[start : start + room]
            lines.append((chunk_name, f"{chunk_name}={part}{attributes}"))
            start += room
        if len(lines) > self.max_chunks:
            raise SessionTooLarge(
                f"the sealed session is {len(token)} bytes, which needs "
                f"{len(lines)} cookies; the limit is max_chunks={self.max_chunks} "
                f"(about {self.max_chunks * (COOKIE_LINE_LIMIT - 200)} bytes). "
                "Keep large data server-side and store its id in the session."
            )
        return lines


def _key_ring(secret: object, secret_key: object) -> KeyRing:
    if secret_key is not None:
        if secret is not None:
            raise ValueError("pass secret or secret_key, not both")
        # Starlette's secret_key may be a starlette.datastructures.Secret.
        secret = str(secret_key)
    if secret is None:
        raise ValueError("secret is required: a key from generate_key()")
    if isinstance(secret, KeyRing):
        return secret
    return KeyRing(secret)  # type: ignore[arg-type]


def _check_bool(**flags: object) -> None:
    for flag, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool")


def _absolute_lifetime(value: int | timedelta | None, max_age: int | None) -> int:
    lifetime = seconds(value, "absolute_lifetime")
    if lifetime is None:
        return max(_DEFAULT_ABSOLUTE, max_age or 0)
    if lifetime == 0:
        raise ValueError("absolute_lifetime must be positive")
    if max_age is not None and max_age > lifetime:
        raise ValueError("absolute_lifetime must be at least the cookie's max_age")
    return lifetime


def _cookie_options(
    cookie: CookieOptions | None, starlette_mode: bool, starlette: dict[str, Any]
) -> CookieOptions:
    given = {k: v for k, v in starlette.items() if v is not None and v is not _UNSET}
    if starlette["max_age"] is None:
        given["max_age"] = None  # Starlette's browser-session cookie
    # Starlette's secret_key, or any of its cookie keywords, selects Starlette's
    # defaults too: notably no Secure flag unless https_only=True.
    if given or (starlette_mode and cookie is None):
        if cookie is not None:
            raise ValueError(
                "cookie: pass CookieOptions or Starlette's keywords "
                f"({', '.join(sorted(given))}), not both"
            )
        return _starlette_options(given)
    if cookie is None:
        return CookieOptions()
    if not isinstance(cookie, CookieOptions):
        raise TypeError("cookie must be a CookieOptions")
    return cookie


def _thawed_unchanged(session: Session, thawed: dict[str, Packed]) -> bool:
    """Whether every value the handler unpacked still encodes as it came."""
    for key, packed in thawed.items():
        value = dict.get(session, key, _MISSING)
        if (
            value is _MISSING
            or not _serialize.fits_value(value)
            or _serialize.encode(value) != packed.cbor
        ):
            return False
    return True


def _emptied(session: Session) -> bool:
    """An opened session whose data the handler removed."""
    return not session and session._original != _EMPTY_MAP


def _accept(incoming: _Incoming, position: int, opened: _Opened) -> Session:
    """The session of the candidate at `position`, which opened."""
    incoming.reason = None
    incoming.token = incoming.candidates[position]
    incoming.chunked = position == incoming.chunked_at
    return Session._from_template(*opened)


def _rejected(incoming: _Incoming) -> Session:
    """The fresh session for a request whose cookies did not open."""
    if incoming.reason is not None:
        logger.debug("session cookie rejected: %s", incoming.reason.value)
    return Session()


def _starlette_options(given: dict[str, Any]) -> CookieOptions:
    """CookieOptions from Starlette's SessionMiddleware keywords."""
    options: dict[str, Any] = {}
    if "max_age" in given:
        value = given["max_age"]
        # Starlette accepts max_age <= 0 to expire cookies at once; keep that
        # meaning (CookieOptions itself refuses negative lifetimes).
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            value = 0
        options["max_age"] = value
    for key in ("path", "same_site", "domain", "partitioned"):
        if key in given:
            options[key] = given[key]
    # Starlette sets Secure only with https_only=True, never automatically.
    options["secure"] = bool(given.get("https_only", False))
    return CookieOptions(**options)


def _check_scheme(scope: Scope) -> None:
    """Warn, once, of a Secure cookie sent over plain http."""
    global _secure_on_http_warned  # noqa: PLW0603 - once per process, by design
    if not _secure_on_http_warned and scope.get("scheme") not in _SECURE_SCHEMES:
        _secure_on_http_warned = True
        logger.warning(
            "sending a Secure session cookie over plain http: browsers drop "
            "it silently, so the session will not stick. Serve over https, or "
            "use CookieOptions(secure='auto') for local development."
        )


def _apply_headers(message: Message, lines: list[tuple[str, str]], vary: bool) -> None:
    headers = list(message.get("headers", ()))
    for key, _ in headers:
        if key.lower() in _MERGED_HEADERS:
            # The app set a cookie or a Vary of its own: merge with care.
            headers = _merged_headers(headers, lines, vary)
            break
    else:
        if vary:
            headers.append((b"vary", b"Cookie"))
    for _, line in lines:
        headers.append((b"set-cookie", line.encode("latin-1")))
    message["headers"] = headers


def _merged_headers(
    original: list[tuple[bytes, bytes]], lines: list[tuple[str, str]], vary: bool
) -> list[tuple[bytes, bytes]]:
    """`original` without Set-Cookie lines for our cookies, Vary with Cookie."""
    headers: list[tuple[bytes, bytes]] = []
    has_vary = False
    ours = {cookie_name.encode("latin-1") + b"=" for cookie_name, _ in lines}
    for key, value in original:
        lowered = key.lower()
        if lowered == b"set-cookie":
            if value.split(b"=", 1)[0] + b"=" in ours:
                continue  # one Set-Cookie per cookie name: the session's wins
        elif vary and lowered == b"vary":
            has_vary = True
            if b"cookie" not in value.lower() and value.strip() != b"*":
                headers.append((key, value + b", Cookie"))
                continue
        headers.append((key, value))
    if vary and not has_vary:
        headers.append((b"vary", b"Cookie"))
    return headers
