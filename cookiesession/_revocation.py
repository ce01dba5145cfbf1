"""Revocation stores: remember destroyed sessions until their cookies expire.

Two stores implement `RevocationStore`:

- `MemoryRevocationStore` keeps its entries in this process: one worker, tests,
  development. One revoked session id costs about 220 bytes (219 measured with
  tracemalloc for 1,000,000 ids on 64-bit CPython 3.11, by
  benchmarks/bench_revocation.py), so the default cap of 1,000,000 entries
  stays near 220 MB.
- `RedisRevocationStore` shares its entries between workers and hosts.

Redis key layout, where `P` is the prefix and every digest is lowercase hex of
SHA-256 (subjects hashed as UTF-8):

    P:{T}:s:<first 32 hex of sha256(session id)>   value: issued_at_ms
    P:{T}:u:<first 32 hex of sha256(subject)>      value: before_ms

    T = first 16 hex of sha256(subject) if the session has a subject,
        else first 16 hex of sha256(session id)

The braces are a Redis Cluster hash tag: a session key and its subject key
hash to the same slot, so `is_revoked` is one MGET, one round trip. Key names
hold digests only, never a session id or a subject. Every key expires at its
`until` (SET ... PXAT), the instant the last cookie it revokes stops being
accepted. Writes go through one small Lua script that keeps the larger value
and the later expiry, so a repeated call never lowers a cut-off nor shortens a
lifetime.

A session revoked with a subject is written under both its subject's tag and
its own, so cookies of that id sealed before the subject was set (an
anonymous session that logged in) are rejected too. A session cannot change
from one subject to another without a new id: `Session.subject` refuses it
and asks for `regenerate()`. `MemoryRevocationStore` finds entries by id.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "MemoryRevocationStore",
    "RedisRevocationStore",
    "RevocationStore",
    "RevocationStoreError",
    "hash_session_id",
]

logger = logging.getLogger("cookiesession")

_T = TypeVar("_T")

# No watermark: every issue time (Unix ms, never negative) lies above it.
_NO_WATERMARK = -1
# A full memory store folds this share (1/N) of its oldest entries at once, so
# the O(n) fold runs once per n/N revocations and the warning stays rare.
_FOLD_SHARE = 10
# Rebuild an expiry heap once its stale items outnumber the live entries by
# this many: the O(n) rebuild then runs at most once per n stale pushes.
_STALE_SLACK = 1024
_cover = itemgetter(0)

_INSTALL_HINT = "pip install 'cookiesession[redis]'"

# Raise an entry: keep the larger integer value and the later expiry, so a
# second call can neither lower a subject's cut-off nor shorten a lifetime.
# KEYS[1] entry key; ARGV[1] value (integer); ARGV[2] expiry (Unix ms).
_RAISE_ENTRY = """
local value = ARGV[1]
local expire_at = tonumber(ARGV[2])
local old = redis.call('GET', KEYS[1])
if old then
  if tonumber(old) > tonumber(value) then value = old end
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then
    local now = redis.call('TIME')
    local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    if now_ms + left > expire_at then expire_at = now_ms + left end
  end
end
redis.call('SET', KEYS[1], value, 'PXAT', string.format('%d', expire_at))
return 1
"""


class RevocationStoreError(Exception):
    """The store could not be read or written (down, slow, misconfigured)."""


@runtime_checkable
class RevocationStore(Protocol):
    """What the middleware needs from a revocation list.

    Every method should be one round trip at most: the middleware calls
    `is_revoked` once for every request that brings a session cookie, and the
    writes when a session ends. Times are Unix seconds (floats) for entry
    lifetimes and integer milliseconds for issue times, as in the token
    payload.
    """

    async def revoke(
        self,
        session_id: bytes,
        *,
        subject: str | None,
        issued_at_ms: int,
        until: float,
    ) -> None:
        """Reject `session_id` from now until `until`, then forget it.

        Raises:
            RevocationStoreError: the entry could not be written.
        """

    async def revoke_subject(
        self, subject: str, *, before_ms: int, until: float
    ) -> None:
        """Reject every session of `subject` issued before `before_ms`.

        The entry lives until `until`, the last moment any such session's
        cookie could still be accepted.

        Raises:
            RevocationStoreError: the entry could not be written.
        """

    async def is_revoked(
        self, session_id: bytes, *, subject: str | None, issued_at_ms: int
    ) -> bool:
        """Whether this session, or all of its subject's sessions, are revoked.

        Raises:
            RevocationStoreError: the store could not answer in time.
        """


def hash_session_id(session_id: bytes) -> str:
    """A short, stable name for a session in log lines: 12 hex characters.

    The first 12 hex characters of SHA-256 of the id; they also begin the
    session's Redis key digest. The id itself cannot be recovered from them.
    """
    return hashlib.sha256(session_id).hexdigest()[:12]


class MemoryRevocationStore:
    """A revocation list in this process's memory.

    Each entry is forgotten the moment its `until` passes. Expired entries are
    dropped as calls arrive, in time order, so no call scans the whole store.

    The store never forgets a revocation early, not even when full. Reaching
    `max_entries`, it folds its oldest tenth (smallest issue times) into one
    watermark: every session issued at or before the newest folded issue time
    is revoked, until the last folded entry would have expired. That also logs
    out sessions nobody revoked, and a WARNING is logged each time it happens;
    raise `max_entries` or use a shared store if you see it. A fold takes time
    in proportion to the store's size (under 0.1 s at 100,000 entries on the
    benchmark machine), paid by the revocation that triggers it, at most once
    per tenth of `max_entries` revocations.

    Entries live in this process only: with several workers, use
    `RedisRevocationStore`.

    Args:
        max_entries: most session and subject entries kept at once.
        clock: returns the current Unix time in seconds; tests pass their own.

    Raises:
        ValueError: `max_entries` is not a positive int.
    """

    __slots__ = (
        "_clock",
        "_max_entries",
        "_next_due",
        "_session_heap",
        "_sessions",
        "_subject_heap",
        "_subjects",
        "_watermark",
        "_watermark_until",
    )

    def __init__(
        self,
        *,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (
            isinstance(max_entries, bool)
            or not isinstance(max_entries, int)
            or max_entries < 1
        ):
            raise ValueError("max_entries must be a positive int")
        self._max_entries = max_entries
        self._clock = clock
        # session id -> until; subject -> (before_ms, until)
        self._sessions: dict[bytes, float] = {}
        self._subjects: dict[str, tuple[int, float]] = {}
        # Expiry queues. An item whose until no longer matches its entry is
        # stale (the entry was extended or folded) and is skipped when popped.
        self._session_heap: list[tuple[float, int, bytes]] = []
        self._subject_heap: list[tuple[float, str]] = []
        self._watermark = _NO_WATERMARK
        self._watermark_until = math.inf
        # Earliest instant at which anything expires: checks compare with it.
        self._next_due = math.inf

    def __len__(self) -> int:
        """Live session and subject entries (the watermark not counted)."""
        self._expire_due()
        return len(self._sessions) + len(self._subjects)

    async def revoke(
        self,
        session_id: bytes,
        *,
        subject: str | None,
        issued_at_ms: int,
        until: float,
    ) -> None:
        """Reject `session_id` until `until`; a no-op if `until` has passed.

        A later call with an earlier `until` does not shorten the entry.
        `subject` is not needed to find the entry again and is ignored.
        """
        now = self._expire_due()
        if until <= now or self._covered(issued_at_ms, until):
            return

        current = self._sessions.get(session_id)
        if current is not None and until <= current:
            return
        if current is None and self._full():
            self._fold()

        self._sessions[session_id] = until
        heapq.heappush(self._session_heap, (until, issued_at_ms, session_id))
        self._pushed(until, self._session_heap, len(self._sessions))

    async def revoke_subject(
        self, subject: str, *, before_ms: int, until: float
    ) -> None:
        """Reject sessions of `subject` issued before `before_ms`, until `until`.

        Repeated calls keep the largest `before_ms` and the latest `until`.
        A no-op if `until` has passed.
        """
        now = self._expire_due()
        if until <= now or self._covered(before_ms - 1, until):
            return

        current = self._subjects.get(subject)
        if current is not None:
            before_ms = max(before_ms, current[0])
            if until <= current[1]:
                self._subjects[subject] = (before_ms, current[1])
                return
        elif self._full():
            self._fold()

        self._subjects[subject] = (before_ms, until)
        heapq.heappush(self._subject_heap, (until, subject))
        self._pushed(until, self._subject_heap, len(self._subjects))

    async def is_revoked(
        self, session_id: bytes, *, subject: str | None, issued_at_ms: int
    ) -> bool:
        """Whether this session, or all of its subject's sessions, are revoked."""
        return self._revoked(session_id, subject, issued_at_ms)

    def _revoked(
        self, session_id: bytes, subject: str | None, issued_at_ms: int
    ) -> bool:
        # `is_revoked` without a coroutine: the middleware calls this one
        # directly, since this store answers without waiting for anything.
        # `_expire_due`, inlined: every request with a cookie comes through.
        now = self._clock()
        if now >= self._next_due:
            self._prune(now)
        if session_id in self._sessions or issued_at_ms <= self._watermark:
            return True
        if subject is None:
            return False
        entry = self._subjects.get(subject)
        return entry is not None and issued_at_ms < entry[0]

    def _expire_due(self) -> float:
        """Drop every entry whose time has come; return the current time."""
        now = self._clock()
        if now >= self._next_due:
            self._prune(now)
        return now

    def _covered(self, last_issued_ms: int, until: float) -> bool:
        """Whether an active watermark already revokes this much, this long."""
        return (
            self._watermark != _NO_WATERMARK
            and last_issued_ms <= self._watermark
            and until <= self._watermark_until
        )

    def _full(self) -> bool:
        return len(self._sessions) + len(self._subjects) >= self._max_entries

    def _pushed(self, until: float, heap: list[_T], live: int) -> None:
        self._next_due = min(self._next_due, until)
        if len(heap) > 2 * live + _STALE_SLACK:
            self._rebuild_heaps()

    def _prune(self, now: float) -> None:
        """Drop every entry whose `until` is at or before `now`."""
        sessions, session_heap = self._sessions, self._session_heap
        while session_heap and session_heap[0][0] <= now:
            until, _, session_id = heapq.heappop(session_heap)
            if sessions.get(session_id) == until:
                del sessions[session_id]

        subjects, subject_heap = self._subjects, self._subject_heap
        while subject_heap and subject_heap[0][0] <= now:
            until, subject = heapq.heappop(subject_heap)
            entry = subjects.get(subject)
            if entry is not None and entry[1] == until:
                del subjects[subject]

        if self._watermark_until <= now:
            self._watermark = _NO_WATERMARK
            self._watermark_until = math.inf
        self._reset_due()

    def _reset_due(self) -> None:
        due = self._watermark_until
        if self._session_heap:
            due = min(due, self._session_heap[0][0])
        if self._subject_heap:
            due = min(due, self._subject_heap[0][0])
        self._next_due = due

    def _rebuild_heaps(self) -> None:
        """Rebuild both queues from the live entries, dropping stale items."""
        self._session_heap = [
            item
            for item in self._session_heap
            if self._sessions.get(item[2]) == item[0]
        ]
        heapq.heapify(self._session_heap)
        self._subject_heap = [(entry[1], s) for s, entry in self._subjects.items()]
        heapq.heapify(self._subject_heap)
        self._reset_due()

    def _fold(self) -> None:
        """Make room: revoke everything issued up to the oldest tenth's newest."""
        self._rebuild_heaps()
        # (last issue time the entry revokes, until, key)
        sessions = [(issued, until, sid) for until, issued, sid in self._session_heap]
        subjects = [
            (before - 1, until, subject)
            for subject, (before, until) in self._subjects.items()
        ]
        folded = heapq.nsmallest(
            max(1, (len(sessions) + len(subjects)) // _FOLD_SHARE),
            itertools.chain(sessions, subjects),
            key=_cover,
        )

        watermark = max(self._watermark, folded[-1][0])
        until = max(item[1] for item in folded)
        if self._watermark != _NO_WATERMARK:
            until = max(until, self._watermark_until)
        self._watermark, self._watermark_until = watermark, until

        # Drop whatever the watermark now covers: the folded tenth, maybe more.
        for last_issued, entry_until, session_id in sessions:
            if last_issued <= watermark and entry_until <= until:
                del self._sessions[session_id]
        for last_issued, entry_until, subject in subjects:
            if last_issued <= watermark and entry_until <= until:
                del self._subjects[subject]
        self._rebuild_heaps()
        logger.warning(
            "revocation store full (max_entries=%s): every session issued at or "
            "before %s ms is now revoked until %s; raise max_entries or use a "
            "shared store",
            self._max_entries,
            watermark,
            until,
        )


class RedisRevocationStore:
    """A revocation list in Redis, shared by every worker that points at it.

    Each call is one round trip under `timeout` (`revoke` with a subject
    pipelines its two keys; see the key layout in this module's docstring);
    the first write to a Redis that has not seen the Lua script yet also
    loads it. A Redis that is down, slow or hung raises
    `RevocationStoreError` rather than stalling the request.
    When Redis comes back the same store works again: the client reconnects.
    Works with Redis 6.2 or newer, and with Redis Cluster (see the key layout
    in this module's docstring).

    Args:
        url: a `redis://` or `rediss://` URL; the store owns this client and
            closes it in `aclose`.
        client: an existing `redis.asyncio.Redis`; the caller keeps closing it,
            and should give it `retry=Retry(NoBackoff(), 1)` with
            `retry_on_error=[ConnectionError]` as the URL form does, or the
            first check on each pooled connection after a Redis restart
            fails.
        prefix: first part of every key name; must not contain braces.
        timeout: seconds any call may take, connecting included.

    Raises:
        ValueError: not exactly one of `url` and `client`, a bad `prefix` or
            a `timeout` that is not a positive number of seconds.
        ImportError: the `redis` package is not installed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.asyncio.Redis | None = None,
        prefix: str = "cookiesession",
        timeout: float = 0.25,
    ) -> None:
        if url is not None and client is not None:
            raise ValueError("pass exactly one of url and client")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("prefix must be a non-empty string without braces")
        if not 0 < timeout < math.inf:
            raise ValueError("timeout must be a positive number of seconds")
        # Imported here so that cookiesession imports without redis installed.
        try:
            import redis.asyncio  # noqa: PLC0415
            from redis.asyncio.retry import Retry  # noqa: PLC0415
            from redis.backoff import NoBackoff  # noqa: PLC0415
            from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415
            from redis.exceptions import NoScriptError, RedisError  # noqa: PLC0415
        except ImportError:
            raise ImportError(
                f"RedisRevocationStore needs the redis package: {_INSTALL_HINT}"
            ) from None

        self._owns_client = url is not None
        if url is not None:
            # After a Redis restart every pooled connection is dead; one
            # immediate retry on a fresh connection keeps the first check
            # after recovery from failing. Every call here is idempotent.
            client = redis.asyncio.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[RedisConnectionError],
            )
        elif client is None:
            raise ValueError("pass exactly one of url and client")
        self._client = client
        self._prefix = prefix
        self._timeout = timeout
        self._raise_entry = client.register_script(_RAISE_ENTRY)
        self._errors = (RedisError, OSError, asyncio.TimeoutError)
        self._no_script = NoScriptError

    async def aclose(self) -> None:
        """Close the client if this store created it from a URL."""
        if self._owns_client:
            await self._client.aclose()

    async def revoke(
        self,
        session_id: bytes,
        *,
        subject: str | None,
        issued_at_ms: int,
        until: float,
    ) -> None:
        """Reject `session_id` until `until`; a no-op if `until` has passed.

        A later call with an earlier `until` does not shorten the entry.

        Raises:
            RevocationStoreError: Redis failed or did not answer in time.
        """
        if until <= time.time():
            return
        session_key, _ = self._keys(session_id, subject)
        if subject is None:
            await self._raise(session_key, issued_at_ms, until)
            return
        # Earlier cookies of this id may predate its subject (an anonymous
        # session that logged in); they look under the subject-less key.
        bare_key, _ = self._keys(session_id, None)
        await self._run(self._raise_both(session_key, bare_key, issued_at_ms, until))

    async def revoke_subject(
        self, subject: str, *, before_ms: int, until: float
    ) -> None:
        """Reject sessions of `subject` issued before `before_ms`, until `until`.

        Repeated calls keep the largest `before_ms` and the latest `until`.
        A no-op if `until` has passed.

        Raises:
            RevocationStoreError: Redis failed or did not answer in time.
        """
        if until <= time.time():
            return
        user = _subject_digest(subject)
        await self._raise(self._key(user, "u", user), before_ms, until)

    async def is_revoked(
        self, session_id: bytes, *, subject: str | None, issued_at_ms: int
    ) -> bool:
        """Whether this session, or all of its subject's sessions, are revoked.

        Raises:
            RevocationStoreError: Redis failed or did not answer in time.
        """
        session_key, subject_key = self._keys(session_id, subject)
        if subject_key is None:
            return await self._run(self._client.get(session_key)) is not None

        found, before_ms = await self._run(self._client.mget(session_key, subject_key))
        return found is not None or (
            before_ms is not None and issued_at_ms < int(before_ms)
        )

    def _keys(self, session_id: bytes, subject: str | None) -> tuple[str, str | None]:
        """The session key and, with a subject, the subject key (same slot)."""
        session = hashlib.sha256(session_id).hexdigest()[:32]
        if subject is None:
            return self._key(session, "s", session), None
        user = _subject_digest(subject)
        return self._key(user, "s", session), self._key(user, "u", user)

    def _key(self, slot: str, kind: str, digest: str) -> str:
        """`prefix:{tag}:kind:digest`, the tag taken from the `slot` digest."""
        return f"{self._prefix}:{{{slot[:16]}}}:{kind}:{digest}"

    async def _raise(self, key: str, value: int, until: float) -> None:
        expire_at_ms = math.ceil(until * 1000)
        await self._run(self._raise_entry(keys=[key], args=[value, expire_at_ms]))

    async def _raise_both(
        self, first: str, second: str, value: int, until: float
    ) -> None:
        """`_raise` of two keys in one round trip (one per node in a Cluster).

        The keys may hash to different slots, so not one script call: one
        pipeline of two, without MULTI. A Redis that has not seen the script
        yet (a restart, SCRIPT FLUSH) answers NOSCRIPT; it is loaded and the
        pair sent again, which the script makes harmless for a key that was
        written the first time.
        """
        expire_at_ms = math.ceil(until * 1000)
        sha = self._raise_entry.sha
        for attempt in range(2):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.evalsha(sha, 1, first, value, expire_at_ms)
                pipe.evalsha(sha, 1, second, value, expire_at_ms)
                replies = await pipe.execute(raise_on_error=False)
            errors = [reply for reply in replies if isinstance(reply, Exception)]
            if not errors:
                return
            if attempt == 0 and all(
                isinstance(error, self._no_script) for error in errors
            ):
                await self._client.script_load(_RAISE_ENTRY)
                continue
            raise errors[0]

    async def _run(self, call: Awaitable[_T]) -> _T:
        """Await one Redis call under the timeout, with errors made opaque."""
        try:
            return await asyncio.wait_for(call, self._timeout)
        except self._errors as exc:
            # The type name says what failed; nothing of the key or id leaks.
            kind = type(exc).__name__
            raise RevocationStoreError(
                f"Redis revocation store failed: {kind}"
            ) from None


def _subject_digest(subject: str) -> str:
    # Any str is hashable: lone surrogates are encoded rather than refused.
    return hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
