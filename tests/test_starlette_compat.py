"""Starlette's own SessionMiddleware tests, run against cookiesession.

This is a port of Starlette's ``tests/middleware/test_session.py`` as of
commit 232abee1aaa454d5fa7a8ce69d32aadb4f1af7c4 of github.com/Kludex/starlette
(the repository formerly at encode/starlette). That version matches the
installed Starlette 1.10 middleware: it has the ``partitioned`` option and the
``Session`` class that tracks ``accessed`` / ``modified`` (``Vary: Cookie``,
``Set-Cookie`` only on modification, ``popitem`` and ``|=``).

Test names, routes, requests and assertions are Starlette's. Two things differ:

* the import: ``SessionMiddleware`` and ``Session`` come from cookiesession
  instead of ``starlette.middleware.sessions``;
* Set-Cookie attribute names are compared case-insensitively (cookiesession
  writes ``Path=``, ``Domain=``, ``Max-Age=``, ``Partitioned``; Starlette
  writes ``path=``, ``domain=``, ``partitioned``). Every such place carries a
  comment saying so.

Environment plumbing, not test changes: Starlette's ``test_client_factory``
fixture (from its conftest) is reproduced below for the asyncio backend only,
its ``tests.types.TestClientFactory`` alias is defined here, and the one async
test uses ``httpx`` (what this environment has) where upstream imports the
same ``AsyncClient`` / ``ASGITransport`` from ``httpx2``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

# The migration: upstream imports these from starlette.middleware.sessions.
from cookiesession import Session, SessionMiddleware

# Starlette's tests use the weak secret "example"; cookiesession accepts it
# but warns.
pytestmark = pytest.mark.filterwarnings("ignore::cookiesession.WeakSecretWarning")

#: The upstream tests ported here, by their Starlette names.
UPSTREAM_TESTS = (
    "test_session",
    "test_partitioned_session",
    "test_session_expires",
    "test_secure_session",
    "test_session_cookie_subpath",
    "test_invalid_session_cookie",
    "test_session_cookie",
    "test_domain_cookie",
    "test_set_cookie_only_on_modification",
    "test_vary_cookie_on_access",
    "test_vary_cookie_on_session_pop",
    "test_session_tracks_modification",
    "test_session_persists_mutations",
)

TestClientFactory = Callable[..., TestClient]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def test_client_factory(
    anyio_backend_name: str, anyio_backend_options: dict[str, Any]
) -> TestClientFactory:
    """Starlette's conftest fixture: a TestClient bound to the anyio backend."""
    return functools.partial(
        TestClient, backend=anyio_backend_name, backend_options=anyio_backend_options
    )


# -- endpoints ---------------------------------------------------------------


def view_session(request: Request) -> JSONResponse:
    return JSONResponse({"session": request.session})


async def update_session(request: Request) -> JSONResponse:
    data = await request.json()
    request.session.update(data)
    return JSONResponse({"session": request.session})


async def inplace_update_session(request: Request) -> JSONResponse:
    data = await request.json()
    session = request.session
    session |= data
    return JSONResponse({"session": request.session})


async def popitem_session(request: Request) -> JSONResponse:
    request.session.popitem()
    return JSONResponse({"session": request.session})


async def clear_session(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"session": request.session})


def no_session_access(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


# -- tests -------------------------------------------------------------------


def test_session(test_client_factory: TestClientFactory) -> None:
    app = Starlette(
        routes=[
            Route("/view_session", endpoint=view_session),
            Route("/update_session", endpoint=update_session, methods=["POST"]),
            Route("/clear_session", endpoint=clear_session, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="example")],
    )
    client = test_client_factory(app)

    response = client.get("/view_session")
    assert response.json() == {"session": {}}

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    # The cookie lives for Starlette's default of 14 days.
    set_cookie = response.headers["set-cookie"]
    # Only adaptation: the attribute name is matched case-insensitively.
    max_age_matches = re.search(r"; Max-Age=([0-9]+);", set_cookie, re.IGNORECASE)
    assert max_age_matches is not None
    assert int(max_age_matches[1]) == 14 * 24 * 3600

    response = client.get("/view_session")
    assert response.json() == {"session": {"some": "data"}}

    response = client.post("/clear_session")
    assert response.json() == {"session": {}}

    response = client.get("/view_session")
    assert response.json() == {"session": {}}


@pytest.mark.parametrize("partitioned", [False, True])
def test_partitioned_session(
    test_client_factory: TestClientFactory, partitioned: bool
) -> None:
    app = Starlette(
        routes=[
            Route("/update_session", endpoint=update_session, methods=["POST"]),
            Route("/clear_session", endpoint=clear_session, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key="example",
                https_only=True,
                same_site="none",
                partitioned=partitioned,
            )
        ],
    )
    client = test_client_factory(app, base_url="https://testserver")

    # Both the cookie that is written and the one that clears it carry the flag.
    response = client.post("/update_session", json={"some": "data"})
    # Only adaptation: the header is lower-cased so "Partitioned" is found.
    attributes = response.headers["set-cookie"].lower().split("; ")
    assert ("partitioned" in attributes) is partitioned

    response = client.post("/clear_session")
    # Only adaptation: the header is lower-cased so "Partitioned" is found.
    attributes = response.headers["set-cookie"].lower().split("; ")
    assert ("partitioned" in attributes) is partitioned


def test_session_expires(test_client_factory: TestClientFactory) -> None:
    app = Starlette(
        routes=[
            Route("/view_session", endpoint=view_session),
            Route("/update_session", endpoint=update_session, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="example", max_age=-1)],
    )
    client = test_client_factory(app)

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    # The client drops an already-expired cookie, so its value is taken from
    # the raw header and sent back by hand; the server must refuse it.
    expired_cookie_header = response.headers["set-cookie"]
    expired_session_match = re.search(r"session=([^;]*);", expired_cookie_header)
    assert expired_session_match is not None
    expired_session_value = expired_session_match[1]
    client = test_client_factory(app, cookies={"session": expired_session_value})
    response = client.get("/view_session")
    assert response.json() == {"session": {}}


def test_secure_session(test_client_factory: TestClientFactory) -> None:
    app = Starlette(
        routes=[
            Route("/view_session", endpoint=view_session),
            Route("/update_session", endpoint=update_session, methods=["POST"]),
            Route("/clear_session", endpoint=clear_session, methods=["POST"]),
        ],
        middleware=[
            Middleware(SessionMiddleware, secret_key="example", https_only=True)
        ],
    )
    secure_client = test_client_factory(app, base_url="https://testserver")
    unsecure_client = test_client_factory(app, base_url="http://testserver")

    # Over http the Secure cookie is never sent back, so nothing sticks.
    response = unsecure_client.get("/view_session")
    assert response.json() == {"session": {}}

    response = unsecure_client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    response = unsecure_client.get("/view_session")
    assert response.json() == {"session": {}}

    # Over https it does.
    response = secure_client.get("/view_session")
    assert response.json() == {"session": {}}

    response = secure_client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    response = secure_client.get("/view_session")
    assert response.json() == {"session": {"some": "data"}}

    response = secure_client.post("/clear_session")
    assert response.json() == {"session": {}}

    response = secure_client.get("/view_session")
    assert response.json() == {"session": {}}


def test_session_cookie_subpath(test_client_factory: TestClientFactory) -> None:
    second_app = Starlette(
        routes=[
            Route("/update_session", endpoint=update_session, methods=["POST"]),
        ],
        middleware=[
            Middleware(SessionMiddleware, secret_key="example", path="/second_app")
        ],
    )
    app = Starlette(routes=[Mount("/second_app", app=second_app)])
    client = test_client_factory(app, base_url="http://testserver/second_app")
    response = client.post("/update_session", json={"some": "data"})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    # Only adaptation: the attribute name is matched case-insensitively.
    cookie_path_match = re.search(r"; path=(\S+);", cookie, re.IGNORECASE)
    assert cookie_path_match is not None
    cookie_path = cookie_path_match.groups()[0]
    assert cookie_path == "/second_app"


def test_invalid_session_cookie(test_client_factory: TestClientFactory) -> None:
    app = Starlette(
        routes=[
            Route("/view_session", endpoint=view_session),
            Route("/update_session", endpoint=update_session, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="example")],
    )
    client = test_client_factory(app)

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    # A garbage cookie gives an empty session, not an error.
    client = test_client_factory(app, cookies={"session": "invalid"})
    response = client.get("/view_session")
    assert response.json() == {"session": {}}


def test_session_cookie(test_client_factory: TestClientFactory) -> None:
    app = Starlette(
        routes=[
            Route("/view_session", endpoint=view_session),
            Route("/update_session", endpoint=update_session, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="example", max_age=None)],
    )
    client: TestClient = test_client_factory(app)

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    # max_age=None makes a browser-session cookie: no Max-Age at all.
    set_cookie = response.headers["set-cookie"]
    # Only adaptation: the header is lower-cased, so any spelling is caught.
    assert "max-age" not in set_cookie.lower()

    client.cookies.delete("session")
    response = client.get("/view_session")
    assert response.json() == {"session": {}}


def test_domain_cookie(test_client_factory: TestClientFactory) -> None:
    app = Starlette(
        routes=[
            Route("/view_session", endpoint=view_session),
            Route("/update_session", endpoint=update_session, methods=["POST"]),
        ],
        middleware=[
            Middleware(SessionMiddleware, secret_key="example", domain=".example.com")
        ],
    )
    client: TestClient = test_client_factory(app)

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    set_cookie = response.headers["set-cookie"]
    # Only adaptation: the header is lower-cased so "Domain=" is found.
    assert "domain=.example.com" in set_cookie.lower()

    client.cookies.delete("session")
    response = client.get("/view_session")
    assert response.json() == {"session": {}}


def test_set_cookie_only_on_modification(
    test_client_factory: TestClientFactory,
) -> None:
    app = Starlette(
        routes=[
            Route("/view_session", endpoint=view_session),
            Route("/update_session", endpoint=update_session, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="example")],
    )
    client = test_client_factory(app)

    # A write sends the cookie...
    response = client.post("/update_session", json={"some": "data"})
    assert "set-cookie" in response.headers

    # ...a read does not.
    response = client.get("/view_session")
    assert response.json() == {"session": {"some": "data"}}
    assert "set-cookie" not in response.headers


def test_vary_cookie_on_access(test_client_factory: TestClientFactory) -> None:
    app = Starlette(
        routes=[
            Route("/view_session", endpoint=view_session),
            Route("/update_session", endpoint=update_session, methods=["POST"]),
            Route("/no_session", endpoint=no_session_access),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="example")],
    )
    client = test_client_factory(app)

    # Writing the session varies the response on Cookie.
    response = client.post("/update_session", json={"some": "data"})
    assert "cookie" in response.headers.get("vary", "").lower()

    # So does reading a non-empty one.
    response = client.get("/view_session")
    assert "cookie" in response.headers.get("vary", "").lower()

    # A handler that never touches the session leaves Vary alone.
    response = client.get("/no_session")
    assert "cookie" not in response.headers.get("vary", "").lower()


@pytest.mark.anyio
@pytest.mark.parametrize("session_data", [{"a": "1"}, {"a": "1", "b": "2"}])
async def test_vary_cookie_on_session_pop(session_data: dict[str, str]) -> None:
    # pop() through scope["session"], bypassing request.session, must still
    # count as an access (and a modification).
    async def pop_session(request: Request) -> JSONResponse:
        return JSONResponse({"value": request.scope["session"].pop("a")})

    app = Starlette(
        routes=[
            Route("/update_session", endpoint=update_session, methods=["POST"]),
            Route("/pop_session", endpoint=pop_session, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="example")],
    )
    async with AsyncClient(
        transport=ASGITransport(app), base_url="http://testserver"
    ) as client:
        response = await client.post("/update_session", json=session_data)
        assert response.json() == {"session": session_data}

        response = await client.post("/pop_session")
        assert response.json() == {"value": "1"}
        assert "set-cookie" in response.headers
        assert "cookie" in response.headers.get("vary", "").lower()


def test_session_tracks_modification() -> None:
    session = Session({"a": "1", "b": "2"})
    assert not session.modified

    # __setitem__
    session["c"] = "3"
    assert session.modified

    # __delitem__
    session = Session({"a": "1"})
    del session["a"]
    assert session.modified

    # clear
    session = Session({"a": "1"})
    session.clear()
    assert session.modified

    # pop of a present key
    session = Session({"a": "1"})
    session.pop("a")
    assert session.modified
    assert session.accessed

    # pop of an absent key changes nothing
    session = Session({"a": "1"})
    session.pop("missing", None)
    assert not session.modified
    assert not session.accessed

    # setdefault of an absent key
    session = Session({"a": "1"})
    session.setdefault("b", "2")
    assert session.modified

    # setdefault of a present key changes nothing
    session = Session({"a": "1"})
    session.setdefault("a", "2")
    assert not session.modified


@pytest.mark.parametrize(
    ("path", "data", "expected"),
    [
        ("/inplace_update_session", {"c": "3"}, {"a": "1", "b": "2", "c": "3"}),
        ("/popitem_session", None, {"a": "1"}),
    ],
)
def test_session_persists_mutations(
    test_client_factory: TestClientFactory,
    path: str,
    data: dict[str, str] | None,
    expected: dict[str, str],
) -> None:
    app = Starlette(
        routes=[
            Route("/view_session", endpoint=view_session),
            Route("/update_session", endpoint=update_session, methods=["POST"]),
            Route(
                "/inplace_update_session",
                endpoint=inplace_update_session,
                methods=["POST"],
            ),
            Route("/popitem_session", endpoint=popitem_session, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="example")],
    )
    client = test_client_factory(app)

    response = client.post("/update_session", json={"a": "1", "b": "2"})
    assert response.json() == {"session": {"a": "1", "b": "2"}}

    response = client.post(path, json=data)
    assert response.json() == {"session": expected}

    response = client.get("/view_session")
    assert response.json() == {"session": expected}
