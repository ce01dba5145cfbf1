"""Two servers sharing one Redis, and what the middleware does when it is down."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from cookiesession import RedisRevocationStore, SessionMiddleware, generate_key

KEY = generate_key()


async def login(request: Request) -> Response:
    request.session.regenerate()
    request.session["user"] = "alice"
    request.session.subject = "alice"
    return JSONResponse({})


async def view(request: Request) -> Response:
    return JSONResponse(dict(request.session))


async def logout(request: Request) -> Response:
    request.session.destroy()
    return JSONResponse({})


async def everywhere(request: Request) -> Response:
    request.session.sign_out_everywhere()
    return JSONResponse({})


async def count(request: Request) -> Response:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JSONResponse(dict(request.session))


ROUTES = [
    Route("/login", login),
    Route("/view", view),
    Route("/logout", logout),
    Route("/everywhere", everywhere),
    Route("/count", count),
]


def server(store: RedisRevocationStore, **options: Any) -> Starlette:
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, secret=KEY, revocation=store, **options)
    return app


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"cstest-mw-{secrets.token_hex(6)}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{name}:*"):
        client.delete(key)
    client.close()


def cookie(response: Any) -> str:
    line = response.headers["set-cookie"]
    return str(line.split(";", 1)[0].split("=", 1)[1])


def test_logout_on_one_server_is_rejected_on_the_other(
    redis_url: str, prefix: str
) -> None:
    # Entered clients keep one event loop across requests, as a server does;
    # a redis.asyncio connection belongs to the loop that opened it.
    with (
        TestClient(server(RedisRevocationStore(url=redis_url, prefix=prefix))) as one,
        TestClient(server(RedisRevocationStore(url=redis_url, prefix=prefix))) as two,
    ):
        logout_on_one_rejected_on_two(one, two)


def logout_on_one_rejected_on_two(one: TestClient, two: TestClient) -> None:
    token = cookie(one.get("/login"))
    two.cookies.set("session", token)
    assert two.get("/view").json() == {"user": "alice"}
    one.get("/logout")
    response = two.get("/view")
    assert response.json() == {}
    assert "Max-Age=0" in response.headers["set-cookie"]


def test_sign_out_everywhere_reaches_every_server(redis_url: str, prefix: str) -> None:
    with (
        TestClient(
            server(RedisRevocationStore(url=redis_url, prefix=prefix))
        ) as laptop,
        TestClient(server(RedisRevocationStore(url=redis_url, prefix=prefix))) as phone,
    ):
        everywhere_reaches(laptop, phone)


def everywhere_reaches(laptop: TestClient, phone: TestClient) -> None:
    laptop.get("/login")
    phone.get("/login")
    assert phone.get("/view").json() == {"user": "alice"}
    laptop.get("/everywhere")
    assert phone.get("/view").json() == {}


def dead_store() -> RedisRevocationStore:
    # Port 1 on loopback: nothing listens, connections are refused at once.
    return RedisRevocationStore(url="redis://127.0.0.1:1/0", timeout=0.2)


def test_store_down_fails_closed_by_default_and_keeps_the_cookie(
    caplog: pytest.LogCaptureFixture,
) -> None:
    healthy = TestClient(server(dead_store(), revocation_failure="open"))
    token = cookie(healthy.get("/login"))
    closed = TestClient(server(dead_store()))
    closed.cookies.set("session", token)
    with caplog.at_level(logging.WARNING, logger="cookiesession"):
        response = closed.get("/view")
        closed.get("/view")
    assert response.status_code == 200
    assert response.json() == {}
    # Not cleared: the session comes back when the store does.
    assert "set-cookie" not in response.headers
    outage = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage) == 1


def test_store_down_fails_open_when_asked_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(server(dead_store(), revocation_failure="open"))
    client.get("/login")
    with caplog.at_level(logging.WARNING, logger="cookiesession"):
        assert client.get("/view").json() == {"user": "alice"}
    assert any(
        r.levelno == logging.WARNING and "failing open" in r.getMessage()
        for r in caplog.records
    )


def test_revocation_that_cannot_be_written_is_logged_and_cookie_still_cleared(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(server(dead_store(), revocation_failure="open"))
    token = cookie(client.get("/login"))
    with caplog.at_level(logging.ERROR, logger="cookiesession"):
        response = client.get("/logout")
    assert "Max-Age=0" in response.headers["set-cookie"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "could not revoke session" in errors[0].getMessage()
    assert token[:20] not in caplog.text


def test_logout_while_the_store_is_down_still_clears_and_tries_to_revoke(
    caplog: pytest.LogCaptureFixture,
) -> None:
    healthy = TestClient(server(dead_store(), revocation_failure="open"))
    token = cookie(healthy.get("/login"))
    closed = TestClient(server(dead_store()))
    closed.cookies.set("session", token)
    with caplog.at_level(logging.ERROR, logger="cookiesession"):
        response = closed.get("/logout")
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert any("could not revoke session" in r.getMessage() for r in caplog.records)


class CountingConnection(redis.asyncio.Connection):
    """A real connection that counts its writes: each is one round trip.

    A pipeline goes out as one write, a lone command as one.
    """

    writes = 0

    async def send_packed_command(
        self, command: Any, check_health: bool = True
    ) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


def test_a_request_asks_redis_once_and_only_with_a_cookie(
    redis_url: str, prefix: str
) -> None:
    client = redis.asyncio.Redis.from_url(
        redis_url, connection_class=CountingConnection
    )

    store = RedisRevocationStore(client=client, prefix=prefix)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Connected, and the script loaded, before counting: neither the
        # handshake nor a first NOSCRIPT answer is counted.
        await store.revoke(
            secrets.token_bytes(16), subject=None, issued_at_ms=1, until=time.time() + 5
        )
        yield
        await client.aclose()

    app = Starlette(routes=ROUTES, lifespan=lifespan)
    app.add_middleware(SessionMiddleware, secret=KEY, revocation=store)

    def round_trips(path: str) -> int:
        before = CountingConnection.writes
        response = http.get(path)
        assert response.status_code == 200
        return CountingConnection.writes - before

    with TestClient(app) as http:
        assert round_trips("/view") == 0  # no cookie: nothing to check
        assert round_trips("/count") == 0  # a new session has nothing revoked
        assert round_trips("/count") == 1  # a write: one GET
        assert round_trips("/view") == 1  # a read: one GET
        assert http.get("/view").json() == {"visits": 2}
        # Ending a session adds one round trip, the writing of its
        # revocation. regenerate() at login ends the anonymous session.
        assert round_trips("/login") == 2
        # With a subject the session and subject entries come in one MGET.
        assert round_trips("/view") == 1
        assert round_trips("/count") == 1
        # A logged-in session is filed under its id and under its id with
        # its subject: two keys, one pipeline.
        assert round_trips("/logout") == 2
        assert round_trips("/view") == 0  # the cookie is gone
        assert round_trips("/login") == 0  # a new session: nothing to end
        # Signing out everywhere writes the session's own pair of keys,
        # then the subject's cut-off: two writes after the check.
        assert round_trips("/everywhere") == 3
