"""The session object handlers see as `request.session`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cookiesession import _serialize
from cookiesession._options import seconds
from cookiesession._serialize import Packed
from cookiesession._token import Payload, new_session_id

__all__ = ["Session", "SessionCookie"]


class SessionCookie:
    """Per-session cookie overrides, sealed inside the session's own value.

    `max_age` lengthens or shortens this session's lifetime alone, e.g. for a
    "remember me" login; None (the default) uses the middleware's setting.
    The middleware's `absolute_lifetime` still caps it.
    """

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def max_age(self) -> int | None:
        """This session's own cookie lifetime in seconds, or None."""
        overrides = self._session._overrides
        if overrides is None:
            return None
        value = overrides.get("max_age")
        return value if type(value) is int else None

    @max_age.setter
    def max_age(self, value: int | timedelta | None) -> None:
        normalized = seconds(value, "session.cookie.max_age")
        if normalized == self.max_age:
            return
        session = self._session
        session._overrides = None if normalized is None else {"max_age": normalized}
        session._changed = True

    def __repr__(self) -> str:
        return f"SessionCookie(max_age={self.max_age!r})"


class Session(dict[str, Any]):
    """A dict of session data, plus the operations of a session's life.

    Reading and writing it is ordinary `dict` use. The methods below are
    synchronous: they record what should happen, and the middleware carries
    it out when the response starts (or when a websocket is accepted).

    Changes are found by content, so a nested change such as
    `session["cart"].append(item)` is saved like a top-level assignment.

    A session read from a cookie decodes its lists and dicts when the handler
    first reads them, through any dict method or operator (`session["cart"]`,
    `.get()`, `.items()`, `dict(session)`, `json.dumps(session)`...). C code
    that reads a dict's storage directly, such as `orjson.dumps(session)`,
    needs `dict(session)` instead.
    """

    # Per-request state lives in class-level defaults, so that building a
    # Session costs no more than building its dict: the middleware makes one
    # for every request, and most requests change none of these.
    accessed = False
    modified = False
    _session_id: bytes | None = None
    _subject: str | None = None
    _overrides: dict[str, Any] | None = None
    _opened: Payload | None = None
    _original = b""
    _stale_key = False
    _history: tuple[Payload, ...] = ()
    _changed = False
    _destroyed = False
    _retired = False
    _force_save = False
    _touch = False
    _sign_out_subject: str | None = None
    #: Values unpacked by the handler, with the bytes they came from.
    _thawed: dict[str, Packed] | None = None
    _packed_left = 0

    @classmethod
    def _from_template(
        cls,
        payload: Payload,
        template: dict[str, Any],
        packed: int,
        original: bytes,
        stale: bool,
    ) -> Session:
        """The session for a cookie, its containers still packed."""
        if packed:
            session: Session = _PackedSession(template)
            session._packed_left = packed
        else:
            session = cls(template)
        session._original = original
        session._session_id = payload.session_id
        session._opened = payload
        # The rest only when it differs from the class default: most cookies
        # carry no subject, no overrides, and come from the primary key.
        if stale:
            session._stale_key = True
        if payload.subject is not None:
            session._subject = payload.subject
        if payload.cookie is not None:
            session._overrides = payload.cookie
        return session

    # -- identity ---------------------------------------------------------

    @property
    def id(self) -> str:
        """This session's id as 32 hex digits (a new session gets one now).

        It is random, 128 bits, and changes on `regenerate()` and `destroy()`.
        Treat it as a secret when the app uses it as a lookup key.
        """
        if self._session_id is None:
            self._session_id = new_session_id()
        return self._session_id.hex()

    @property
    def is_new(self) -> bool:
        """True unless this session came from a valid cookie of this request."""
        return self._opened is None

    @property
    def cookie(self) -> SessionCookie:
        """Per-session cookie overrides (see `SessionCookie`)."""
        return SessionCookie(self)

    @property
    def subject(self) -> str | None:
        """Who the session belongs to (a user id), for sign-out everywhere.

        Sealed inside the cookie; setting it marks the session changed. Once
        a session has a subject, only `regenerate()` (or `destroy()`) can give
        it another. See `sign_out_everywhere()`.
        """
        return self._subject

    @subject.setter
    def subject(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError("session.subject must be a str or None")
        held = None if self._opened is None else self._opened.subject
        if held is not None and value != held:
            # One session id, one subject: revocation by subject relies on it,
            # and a change of identity without a new id is session fixation.
            raise ValueError(
                "session.subject: call regenerate() before giving the session "
                "another subject"
            )
        if value != self._subject:
            self._subject = value
            self._changed = True
            self.mark_modified()

    # -- life cycle -------------------------------------------------------

    def destroy(self) -> None:
        """End this session: empty it, expire its cookie, revoke its id.

        With a revocation store every copy of the old cookie is rejected from
        then on. Data written after `destroy()` starts a new session with a
        new id.
        """
        self._retire()
        self._destroyed = True

    def regenerate(self) -> None:
        """Give the session a new id and empty data, revoking the old id.

        Call it at login (and at any privilege change) so that a session id
        planted or seen before cannot ride along; fill the new session in the
        same request.
        """
        self._retire()

    def _retire(self) -> None:
        self._retired = True
        if self._opened is not None:
            self._history = (*self._history, self._opened)
        self._opened = None
        self._session_id = None
        self._subject = None
        self._overrides = None
        self._force_save = False
        self._touch = False
        self._changed = False
        self._thawed = None
        self.clear()

    def save(self) -> None:
        """Send the cookie on this response even if nothing changed.

        The data is checked now, so an unstorable value raises here, at the
        line that asked to save it.

        Raises:
            SessionDataError: a value that cannot be stored (the message names
                its key path).
        """
        _serialize.validate(self)
        self._force_save = True
        self.mark_accessed()

    def touch(self) -> None:
        """Re-issue the cookie on this response with a fresh idle expiry."""
        self._touch = True
        self.mark_accessed()

    def sign_out_everywhere(self) -> None:
        """Revoke every session of this session's subject issued until now.

        Needs a revocation store and a `subject`. The current session is
        destroyed too; log the user in again with `regenerate()` in the same
        request if that is wanted (the new session survives).

        Raises:
            ValueError: the session has no subject.
        """
        if self._subject is None:
            raise ValueError("sign_out_everywhere() needs session.subject to be set")
        subject = self._subject
        self.destroy()
        self._sign_out_subject = subject

    # -- Starlette compatibility -------------------------------------------

    def mark_accessed(self) -> None:
        """Record that the handler used the session (adds `Vary: Cookie`)."""
        self.accessed = True

    def mark_modified(self) -> None:
        """Record a write through a dict method."""
        self.accessed = True
        self.modified = True

    def __setitem__(self, key: str, value: Any) -> None:
        # mark_modified(), inlined: this is the write every handler makes.
        self.accessed = True
        self.modified = True
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        super().__delitem__(key)

    def clear(self) -> None:
        self.mark_modified()
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.mark_modified()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self.mark_modified()
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.mark_modified()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.mark_modified()
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self.mark_modified()
        super().update(other)
        return self

    def __repr__(self) -> str:
        # Values and the id stay out of reprs, which end up in logs.
        return f"Session(keys={list(self)!r})"


_MISSING: Any = object()


class _PackedSession(Session):
    """A session whose list and dict values are unpacked on first read.

    Every way Python code can reach a value goes through one of the methods
    below, which unpacks it first and records it for the change check. Once
    nothing is left packed, the instance becomes a plain `Session`; so the
    methods name `Session` and `dict` explicitly, never `super()`.
    """

    def _thaw(self, key: str, packed: Packed) -> Any:
        value = packed.thaw()
        dict.__setitem__(self, key, value)
        if self._thawed is None:
            self._thawed = {}
        self._thawed[key] = packed
        self._packed_left -= 1
        if self._packed_left <= 0:
            self.__class__ = Session  # type: ignore[assignment]
        return value

    def _thaw_all(self) -> None:
        for key, value in list(dict.items(self)):
            if type(value) is Packed:
                self._thaw(key, value)
        self.__class__ = Session  # type: ignore[assignment]

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if type(value) is Packed:
            return self._thaw(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = dict.get(self, key, _MISSING)
        if value is _MISSING:
            return default
        if type(value) is Packed:
            return self._thaw(key, value)
        return value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return Session.setdefault(self, key, default)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self[key]
        return Session.pop(self, key, *default)

    def popitem(self) -> tuple[str, Any]:
        self._thaw_all()
        return Session.popitem(self)

    def values(self) -> Any:
        self._thaw_all()
        return dict.values(self)

    def items(self) -> Any:
        self._thaw_all()
        return dict.items(self)

    def copy(self) -> dict[str, Any]:
        self._thaw_all()
        return dict.copy(self)

    def __iter__(self) -> Any:
        # Defined only so that dict(session), {**session} and f(**session)
        # read values through __getitem__ instead of the storage.
        return dict.__iter__(self)

    def __eq__(self, other: object) -> bool:
        self._thaw_all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._thaw_all()
        return dict.__ne__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __or__(self, other: Any) -> Any:
        self._thaw_all()
        return dict.__or__(self, other)

    def __ror__(self, other: Any) -> Any:
        self._thaw_all()
        return dict.__ror__(self, other)

    def __reduce_ex__(self, protocol: Any) -> Any:
        self._thaw_all()
        return Session.__reduce_ex__(self, protocol)
