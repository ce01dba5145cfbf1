"""Typed session contents, with no framework: a `TypedDict` view of the session.

A session is a `dict[str, Any]`. Declaring its keys once in a `TypedDict`
and casting the session to it lets mypy check every read and write:
`data["visits"] = "many"` or `data["vistis"]` become type errors. The cast
costs nothing at run time and checks nothing either: what a cookie holds is
what some release of the app wrote, so validate reads where a wrong shape
would hurt.

Run it (it counts visits, a bare ASGI app):

    export COOKIESESSION_KEYS=$(python -m cookiesession keygen)
    uvicorn examples.typed_session:app
"""

from __future__ import annotations

import os
import sys
from typing import Any, TypedDict, cast

from starlette.types import Receive, Scope, Send

from cookiesession import KeyRing, SessionMiddleware, generate_key


class UserSession(TypedDict, total=False):
    """The session's keys and their types; total=False: any may be absent."""

    user: str
    visits: int
    cart: list[str]


def typed(session: dict[str, Any]) -> UserSession:
    """View a session (`scope["session"]`, `request.session`) as a UserSession."""
    return cast(UserSession, session)


async def count_visits(scope: Scope, receive: Receive, send: Send) -> None:
    """Count this browser's visits in its session."""
    if scope["type"] != "http":
        return
    data = typed(scope["session"])
    visits = data.get("visits", 0)
    if not isinstance(visits, int):  # written by some other release
        visits = 0
    data["visits"] = visits + 1
    body = f"visit number {data['visits']}\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def load_keys() -> KeyRing:
    """Keys from COOKIESESSION_KEYS, or a throwaway key with a warning."""
    if os.environ.get("COOKIESESSION_KEYS", "").strip():
        return KeyRing.from_env()
    print(
        "WARNING: COOKIESESSION_KEYS is not set; using a temporary key.",
        file=sys.stderr,
    )
    return KeyRing(generate_key())


app = SessionMiddleware(count_visits, secret=load_keys())
