"""RedisRevocationStore against a Redis that dies, hangs and comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable

import redis.asyncio

from cookiesession._revocation import RedisRevocationStore, RevocationStoreError
from tests.redis_server import RedisServer

TIMEOUT = 0.25


async def timed(call: Awaitable[object]) -> tuple[Exception | None, float]:
    """Await `call`; return what it raised (or None) and the seconds it took."""
    start = time.monotonic()
    try:
        await call
    except Exception as exc:  # the caller inspects whatever it was
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def test_store_fails_fast_while_redis_is_down_and_recovers(
    own_redis: RedisServer,
) -> None:
    before, after = os.urandom(16), os.urandom(16)

    async def body() -> None:
        store = RedisRevocationStore(
            f"redis://127.0.0.1:{own_redis.port}/0", prefix="faults", timeout=TIMEOUT
        )
        try:
            until = time.time() + 60
            await store.revoke(before, subject="alice", issued_at_ms=1, until=until)
            assert await store.is_revoked(before, subject="alice", issued_at_ms=1)

            own_redis.stop()
            error, elapsed = await timed(
                store.is_revoked(before, subject="alice", issued_at_ms=1)
            )
            assert isinstance(error, RevocationStoreError)
            assert error.__cause__ is None
            assert elapsed < 1.0
            for secret in (before.hex(), "alice"):
                assert secret not in str(error)
            for subject in (None, "alice"):  # one key, then a pipelined pair
                error, elapsed = await timed(
                    store.revoke(after, subject=subject, issued_at_ms=1, until=until)
                )
                assert isinstance(error, RevocationStoreError)
                assert error.__cause__ is None
                assert elapsed < 1.0
            error, _ = await timed(
                store.revoke_subject("alice", before_ms=2, until=until)
            )
            assert isinstance(error, RevocationStoreError)

            # Same port, empty server (no script loaded either): the same
            # store object works again.
            own_redis.start()
            assert not await store.is_revoked(before, subject="alice", issued_at_ms=1)
            await store.revoke(after, subject="alice", issued_at_ms=1, until=until)
            assert await store.is_revoked(after, subject=None, issued_at_ms=1)
            assert await store.is_revoked(after, subject="alice", issued_at_ms=1)
            await store.revoke_subject("alice", before_ms=2, until=until)
            assert await store.is_revoked(before, subject="alice", issued_at_ms=1)
        finally:
            await store.aclose()

    asyncio.run(body())


def test_hung_redis_times_out_and_stale_replies_are_not_reused(
    own_redis: RedisServer,
) -> None:
    revoked, other = os.urandom(16), os.urandom(16)

    async def body() -> None:
        # A client of the caller's, without socket timeouts: the store's own
        # deadline is all that stops a call from waiting forever.
        client = redis.asyncio.Redis(host="127.0.0.1", port=own_redis.port)
        store = RedisRevocationStore(client=client, prefix="faults", timeout=TIMEOUT)
        try:
            until = time.time() + 60
            await store.revoke(revoked, subject=None, issued_at_ms=1, until=until)

            own_redis.signal(signal.SIGSTOP)
            error, elapsed = await timed(
                store.is_revoked(revoked, subject=None, issued_at_ms=1)
            )
            assert isinstance(error, RevocationStoreError)
            assert TIMEOUT * 0.8 < elapsed < 1.0

            # The reply to the abandoned call arrives now; it must not be read
            # as the answer to a later call.
            own_redis.signal(signal.SIGCONT)
            assert not await store.is_revoked(other, subject=None, issued_at_ms=1)
            assert await store.is_revoked(revoked, subject=None, issued_at_ms=1)
            assert not await store.is_revoked(other, subject=None, issued_at_ms=1)
        finally:
            await client.aclose()

    asyncio.run(body())
