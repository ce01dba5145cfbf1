"""A small JSON app behind Redis-backed sessions, for load and fault tests.

uvicorn builds it in every worker process from the environment:

    COOKIESESSION_KEYS   the key ring (`KeyRing.from_env`)
    LOAD_REDIS_URL       where the shared revocation store lives
    LOAD_REDIS_PREFIX    the store's key prefix (one per test run)
    LOAD_FAILURE         "closed" (default) or "open": what to do when Redis
                         cannot answer
    LOAD_LOG             "1" sends the library's WARNING and ERROR lines to
                         stderr, with the worker's pid

    uvicorn tests.load_app:create_app --factory --workers 2 --port 8000

Every response names the worker that served it in `x-worker-pid`, so a test
can tell whether a cookie issued by one worker was checked by the other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cookiesession import KeyRing, RedisRevocationStore, Session, SessionMiddleware

__all__ = ["WORKER_HEADER", "create_app"]

WORKER_HEADER = "x-worker-pid"
LOG_FORMAT = "%(levelname)s [%(process)d] %(name)s: %(message)s"


def reply(data: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse(
        data, status_code=status_code, headers={WORKER_HEADER: str(os.getpid())}
    )


def session_of(request: Request) -> Session:
    """`request.session` as what it is (Starlette types it as a plain dict)."""
    session: Session = request.scope["session"]
    return session


async def login(request: Request) -> JSONResponse:
    user = (await request.json())["user"]
    session = session_of(request)
    session.regenerate()
    session["user"] = user
    session.subject = user
    return reply({"user": user})


async def cart(request: Request) -> JSONResponse:
    item = (await request.json())["item"]
    session = session_of(request)
    # A nested mutation: the middleware must notice it by content.
    session.setdefault("cart", []).append(item)
    return reply({"cart": session["cart"]})


async def profile(request: Request) -> JSONResponse:
    session = session_of(request)
    user = session.get("user")
    if user is None:
        return reply({"error": "not signed in"}, 401)
    return reply({"user": user, "cart": session.get("cart", [])})


async def logout(request: Request) -> JSONResponse:
    session_of(request).destroy()
    return reply({"ok": True})


async def rss(request: Request) -> JSONResponse:
    return reply({"pid": os.getpid(), "rss_kb": resident_kb()})


async def health(request: Request) -> JSONResponse:
    return reply({"ok": True})


def resident_kb() -> int:
    """This process's resident set size in KiB (VmRSS, Linux only)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmRSS line")


def failure_mode(value: str) -> Literal["closed", "open"]:
    if value == "closed":
        return "closed"
    if value == "open":
        return "open"
    raise ValueError(f"LOAD_FAILURE must be 'closed' or 'open', not {value!r}")


def log_to_stderr() -> None:
    """Show the library's WARNING and ERROR lines in the server log."""
    logger = logging.getLogger("cookiesession")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


def create_app() -> Starlette:
    """Build the app from the environment (see the module docstring)."""
    if os.environ.get("LOAD_LOG") == "1":
        log_to_stderr()
    store = RedisRevocationStore(
        os.environ["LOAD_REDIS_URL"],
        prefix=os.environ.get("LOAD_REDIS_PREFIX", "cookiesession-load"),
        timeout=0.25,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await store.aclose()

    session = Middleware(
        SessionMiddleware,
        secret=KeyRing.from_env(),
        revocation=store,
        revocation_failure=failure_mode(os.environ.get("LOAD_FAILURE", "closed")),
    )
    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/cart", cart, methods=["POST"]),
            Route("/profile", profile),
            Route("/logout", logout, methods=["POST"]),
            Route("/rss", rss),
            Route("/health", health),
        ],
        middleware=[session],
        lifespan=lifespan,
    )
