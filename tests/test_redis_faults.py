"""RedisRevocationStore against a Redis that dies, hangs and comes back."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Iterator

import pytest
import redis.asyncio

from cookiesession._revocation import RedisRevocationStore, RevocationStoreError
from tests.live_server import free_port

TIMEOUT = 0.25


class RedisServer:
    """A throwaway redis-server on a loopback port, without persistence."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: required, not skipped)")
        pytest.skip(reason)
    server = RedisServer(binary, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def timed(call: Awaitable[object]) -> tuple[Exception | None, float]:
    """Await `call`; return what it raised (or None) and the seconds it took."""
    start = time.monotonic()
    try:
        await call
    except Exception as exc:  # the caller inspects whatever it was
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def test_store_fails_fast_while_redis_is_down_and_recovers(
    server: RedisServer,
) -> None:
    before, after = os.urandom(16), os.urandom(16)

    async def body() -> None:
        store = RedisRevocationStore(
            f"redis://127.0.0.1:{server.port}/0", prefix="faults", timeout=TIMEOUT
        )
        try:
            until = time.time() + 60
            await store.revoke(before, subject="alice", issued_at_ms=1, until=until)
            assert await store.is_revoked(before, subject="alice", issued_at_ms=1)

            server.stop()
            error, elapsed = await timed(
                store.is_revoked(before, subject="alice", issued_at_ms=1)
            )
            assert isinstance(error, RevocationStoreError)
            assert error.__cause__ is None
            assert elapsed < 1.0
            for secret in (before.hex(), "alice"):
                assert secret not in str(error)
            error, elapsed = await timed(
                store.revoke(after, subject=None, issued_at_ms=1, until=until)
            )
            assert isinstance(error, RevocationStoreError)
            assert elapsed < 1.0
            error, _ = await timed(
                store.revoke_subject("alice", before_ms=2, until=until)
            )
            assert isinstance(error, RevocationStoreError)

            # Same port, empty server: the same store object works again.
            server.start()
            assert not await store.is_revoked(before, subject="alice", issued_at_ms=1)
            await store.revoke(after, subject=None, issued_at_ms=1, until=until)
            assert await store.is_revoked(after, subject=None, issued_at_ms=1)
            await store.revoke_subject("alice", before_ms=2, until=until)
            assert await store.is_revoked(before, subject="alice", issued_at_ms=1)
        finally:
            await store.aclose()

    asyncio.run(body())


def test_hung_redis_times_out_and_stale_replies_are_not_reused(
    server: RedisServer,
) -> None:
    revoked, other = os.urandom(16), os.urandom(16)

    async def body() -> None:
        # A client of the caller's, without socket timeouts: the store's own
        # deadline is all that stops a call from waiting forever.
        client = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
        store = RedisRevocationStore(client=client, prefix="faults", timeout=TIMEOUT)
        try:
            until = time.time() + 60
            await store.revoke(revoked, subject=None, issued_at_ms=1, until=until)

            server.signal(signal.SIGSTOP)
            error, elapsed = await timed(
                store.is_revoked(revoked, subject=None, issued_at_ms=1)
            )
            assert isinstance(error, RevocationStoreError)
            assert TIMEOUT * 0.8 < elapsed < 1.0

            # The reply to the abandoned call arrives now; it must not be read
            # as the answer to a later call.
            server.signal(signal.SIGCONT)
            assert not await store.is_revoked(other, subject=None, issued_at_ms=1)
            assert await store.is_revoked(revoked, subject=None, issued_at_ms=1)
            assert not await store.is_revoked(other, subject=None, issued_at_ms=1)
        finally:
            await client.aclose()

    asyncio.run(body())
