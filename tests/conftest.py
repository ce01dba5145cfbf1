"""Shared fixtures."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from typing import NoReturn

import pytest
from hypothesis import settings

from tests.live_server import free_port
from tests.redis_server import RedisServer

# Timing limits live in benchmarks/ and in explicit bounds inside the tests
# that need one; hypothesis' per-example deadline would only make a busy
# machine's run flaky.
settings.register_profile("cookiesession", deadline=None)
settings.load_profile("cookiesession")

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


def _redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _unavailable(reason: str) -> NoReturn:
    """Skip for want of `reason`, but fail under CI, where nothing may skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: required, not skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the Redis on 127.0.0.1:6379, DB 0; skips (fails under CI) if down."""
    if not _redis_answers(REDIS_HOST, REDIS_PORT):
        _unavailable(f"no Redis answering on {REDIS_HOST}:{REDIS_PORT}")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, on a free port, to stop and restart."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not on PATH")
    server = RedisServer(binary, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
