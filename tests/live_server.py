"""Serve an ASGI app with uvicorn on 127.0.0.1 for tests over real HTTP."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp


@contextlib.contextmanager
def serve(app: ASGIApp, *, timeout: float = 10.0) -> Iterator[str]:
    """Run `app` on a free loopback port; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_up(
    base: str, server: subprocess.Popen[bytes], log: Path, *, timeout: float = 15.0
) -> None:
    """Poll `base` until it answers; fail with the server's log if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{log.read_text()}")
        try:
            # trust_env=False: a proxy from the environment must not see loopback.
            httpx.get(base + "/", timeout=1, trust_env=False)
        except httpx.TransportError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError(
        f"the server did not answer within {timeout:.0f} s:\n{log.read_text()}"
    )
