"""The classic session flow over real HTTP: uvicorn on 127.0.0.1, httpx."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cookiesession import MemoryRevocationStore, SessionMiddleware, generate_key
from tests.live_server import serve


async def login(request: Request) -> Response:
    body = await request.json()
    request.session.regenerate()
    request.session["user"] = body["user"]
    request.session.subject = body["user"]
    return JSONResponse({"ok": True})


async def profile(request: Request) -> Response:
    user = request.session.get("user")
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return JSONResponse({"user": user, "cart": request.session.get("cart", [])})


async def cart(request: Request) -> Response:
    body = await request.json()
    request.session.setdefault("cart", []).append(body["item"])
    return JSONResponse({"cart": request.session["cart"]})


async def logout(request: Request) -> Response:
    request.session.destroy()
    return JSONResponse({"ok": True})


def make_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/profile", profile),
            Route("/cart", cart, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
        ]
    )
    app.add_middleware(
        SessionMiddleware, secret=generate_key(), revocation=MemoryRevocationStore()
    )
    return app


def session_cookie(response: httpx.Response) -> str | None:
    for line in response.headers.get_list("set-cookie"):
        name, _, rest = line.partition("=")
        if name == "session":
            return rest.split(";", 1)[0]
    return None


def test_login_profile_cart_logout_and_replay_over_http() -> None:
    with serve(make_app()) as base, httpx.Client(base_url=base) as client:
        anonymous = client.get("/profile")
        assert anonymous.status_code == 303
        assert session_cookie(anonymous) is None

        planted: dict[str, Any] = {}
        first = client.post("/login", json={"user": "alice"})
        assert first.status_code == 200
        planted["login"] = session_cookie(first)
        assert planted["login"]

        assert client.get("/profile").json() == {"user": "alice", "cart": []}
        for item in ("apple", "pear"):
            added = client.post("/cart", json={"item": item})
            assert session_cookie(added) is not None
        stolen = client.cookies["session"]
        assert client.get("/profile").json()["cart"] == ["apple", "pear"]

        out = client.post("/logout")
        assert session_cookie(out) == ""
        assert client.get("/profile").status_code == 303

        # An attacker replaying any earlier copy of the cookie gets nothing.
        for copy in (stolen, planted["login"]):
            with httpx.Client(base_url=base, cookies={"session": copy}) as thief:
                replay = thief.get("/profile")
                assert replay.status_code == 303
                assert session_cookie(replay) == ""


def test_login_regenerates_so_a_planted_session_id_is_dropped() -> None:
    with serve(make_app()) as base, httpx.Client(base_url=base) as client:
        planted = session_cookie(client.post("/login", json={"user": "mallory"}))
        assert planted
        with httpx.Client(base_url=base) as victim:
            headers = {"cookie": f"session={planted}"}
            fresh = session_cookie(
                victim.post("/login", json={"user": "alice"}, headers=headers)
            )
            assert fresh
            assert fresh != planted
            mine = victim.get("/profile", headers={"cookie": f"session={fresh}"})
            assert mine.json()["user"] == "alice"
        # The planted cookie died with the victim's login (regenerate revokes).
        with httpx.Client(base_url=base, cookies={"session": planted}) as attacker:
            assert attacker.get("/profile").status_code == 303
