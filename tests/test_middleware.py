"""SessionMiddleware behaviour, one express-session rule at a time."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from cookiesession import (
    CLOCK_SKEW,
    CookieOptions,
    KeyRing,
    MemoryRevocationStore,
    Payload,
    Session,
    SessionDataError,
    SessionMiddleware,
    SessionTooLarge,
    TokenCodec,
    generate_key,
)
from cookiesession._middleware import _CACHED_TOKENS

KEY = generate_key()
Handler = Callable[[Session], Any]


class Clock:
    """A settable clock for the middleware and the revocation store."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_client(
    handlers: dict[str, Handler],
    *,
    base_url: str = "http://testserver",
    **options: Any,
) -> TestClient:
    """An app whose route /NAME runs handlers[NAME] on the session."""

    def endpoint(handler: Handler) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            result = handler(request.session)
            if isinstance(result, Response):
                return result
            return JSONResponse(
                {"session": dict(request.session), "result": result},
            )

        return run

    routes = [
        Route(f"/{name}", endpoint(handler), methods=["GET", "POST"])
        for name, handler in handlers.items()
    ]
    options.setdefault("secret", KEY)
    app = Starlette(routes=routes)
    app.add_middleware(SessionMiddleware, **options)
    return TestClient(app, base_url=base_url)


def set_cookies(response: Any) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k == "set-cookie"]


def cookie_value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]


def is_expiring(line: str) -> bool:
    return "Max-Age=0;" in line and "01 Jan 1970" in line


def view(session: Session) -> Any:
    return None


def login(session: Session) -> Any:
    session["user"] = "alice"


def add_to_cart(session: Session) -> Any:
    session.setdefault("cart", [])
    session["cart"].append("apple")


def open_token(token: str, name: str = "session", now: float | None = None) -> Any:
    return TokenCodec(KeyRing(KEY), name).open(token, now=now).payload


BASIC: dict[str, Handler] = {"view": view, "login": login, "cart": add_to_cart}


# -- when a cookie is sent --


def test_new_session_left_alone_gets_no_cookie() -> None:
    client = make_client(BASIC)
    response = client.get("/view")
    assert set_cookies(response) == []


def test_new_session_left_alone_gets_a_cookie_with_save_uninitialized() -> None:
    client = make_client(BASIC, save_uninitialized=True)
    response = client.get("/view")
    (line,) = set_cookies(response)
    assert open_token(cookie_value(line)).data == {}


def test_first_write_sets_the_cookie() -> None:
    client = make_client(BASIC)
    (line,) = set_cookies(client.get("/login"))
    assert open_token(cookie_value(line)).data == {"user": "alice"}


def test_read_only_request_with_valid_cookie_gets_no_set_cookie() -> None:
    client = make_client(BASIC)
    client.get("/login")
    response = client.get("/view")
    assert response.json()["session"] == {"user": "alice"}
    assert set_cookies(response) == []


def test_writing_the_same_value_again_sends_nothing() -> None:
    client = make_client(BASIC)
    client.get("/login")
    assert set_cookies(client.get("/login")) == []


def test_nested_change_is_detected_by_content() -> None:
    client = make_client(BASIC)
    client.get("/cart")
    (line,) = set_cookies(client.get("/cart"))
    assert open_token(cookie_value(line)).data == {"cart": ["apple", "apple"]}


def test_reading_a_nested_value_without_changing_it_sends_nothing() -> None:
    client = make_client({**BASIC, "peek": lambda s: len(s["cart"])})
    client.get("/cart")
    response = client.get("/peek")
    assert response.json()["result"] == 1
    assert set_cookies(response) == []


def test_resave_reseals_every_response_and_keeps_the_expiry() -> None:
    clock = Clock()
    client = make_client(BASIC, resave=True, clock=clock)
    first = open_token(
        cookie_value(set_cookies(client.get("/login"))[0]), now=clock.now
    )
    clock.now += 100
    (line,) = set_cookies(client.get("/view"))
    again = open_token(cookie_value(line), now=clock.now)
    assert again.idle_expiry == first.idle_expiry
    assert again.data == first.data


def test_rolling_reissues_every_response_with_a_fresh_expiry() -> None:
    clock = Clock()
    client = make_client(BASIC, rolling=True, clock=clock)
    first = open_token(
        cookie_value(set_cookies(client.get("/login"))[0]), now=clock.now
    )
    clock.now += 100
    (line,) = set_cookies(client.get("/view"))
    again = open_token(cookie_value(line), now=clock.now)
    assert again.idle_expiry == first.idle_expiry + 100
    assert again.session_id == first.session_id
    assert "Max-Age=1209600;" in line


def test_refresh_after_reissues_only_past_the_threshold() -> None:
    clock = Clock()
    cookie = CookieOptions(max_age=1000)
    client = make_client(BASIC, cookie=cookie, refresh_after=0.5, clock=clock)
    client.get("/login")
    clock.now += 499
    assert set_cookies(client.get("/view")) == []
    clock.now += 1
    (line,) = set_cookies(client.get("/view"))
    assert open_token(cookie_value(line), now=clock.now).idle_expiry == clock.now + 1000
    clock.now += 10
    assert set_cookies(client.get("/view")) == []


def test_without_refresh_an_active_reader_expires_at_max_age() -> None:
    clock = Clock()
    client = make_client(BASIC, cookie=CookieOptions(max_age=100), clock=clock)
    client.get("/login")
    clock.now += 99
    assert client.get("/view").json()["session"] == {"user": "alice"}
    clock.now += 1
    assert client.get("/view").json()["session"] == {}


def test_absolute_lifetime_caps_every_refresh() -> None:
    clock = Clock()
    client = make_client(
        BASIC,
        cookie=CookieOptions(max_age=100),
        rolling=True,
        absolute_lifetime=250,
        clock=clock,
    )
    client.get("/login")
    for _ in range(2):
        clock.now += 90
        assert client.get("/view").json()["session"] == {"user": "alice"}
    clock.now += 60  # 240 s after login: the cookie may live 10 s more
    (line,) = set_cookies(client.get("/view"))
    assert "Max-Age=10;" in line
    clock.now += 10
    assert client.get("/view").json()["session"] == {}


def test_browser_session_cookie_has_no_max_age_but_ends_server_side() -> None:
    clock = Clock()
    client = make_client(
        BASIC,
        cookie=CookieOptions(max_age=None),
        absolute_lifetime=3600,
        clock=clock,
    )
    (line,) = set_cookies(client.get("/login"))
    assert "Max-Age" not in line
    assert "Expires" not in line
    clock.now += 3599
    assert client.get("/view").json()["session"] == {"user": "alice"}
    clock.now += 1
    assert client.get("/view").json()["session"] == {}


# -- emptying, destroy, regenerate --


@pytest.mark.parametrize(
    "empty",
    [
        lambda s: s.clear(),
        lambda s: s.pop("user"),
        lambda s: s.__delitem__("user"),
        lambda s: s.popitem(),
    ],
    ids=["clear", "pop", "del", "popitem"],
)
def test_emptying_the_session_expires_the_cookie(empty: Handler) -> None:
    client = make_client({**BASIC, "empty": empty})
    client.get("/login")
    (line,) = set_cookies(client.get("/empty"))
    assert is_expiring(line)
    assert client.get("/view").json()["session"] == {}


def test_emptying_a_new_session_sends_nothing() -> None:
    client = make_client({"empty": lambda s: s.clear()})
    assert set_cookies(client.get("/empty")) == []


def test_destroy_empties_and_expires_the_cookie() -> None:
    client = make_client({**BASIC, "logout": lambda s: s.destroy()})
    client.get("/login")
    response = client.get("/logout")
    assert response.json()["session"] == {}
    (line,) = set_cookies(response)
    assert is_expiring(line)


def test_without_a_store_a_copied_cookie_survives_destroy() -> None:
    # The documented non-guarantee: logout without a revocation store only
    # clears the browser's copy.
    client = make_client({**BASIC, "logout": lambda s: s.destroy()})
    token = cookie_value(set_cookies(client.get("/login"))[0])
    client.get("/logout")
    client.cookies.set("session", token)
    assert client.get("/view").json()["session"] == {"user": "alice"}


class AwaitedMemoryStore(MemoryRevocationStore):
    """The memory store, taken by the middleware's path for awaited stores."""


@pytest.fixture(params=[MemoryRevocationStore, AwaitedMemoryStore])
def revoking_client(request: pytest.FixtureRequest) -> TestClient:
    """A client of BASIC plus /logout, with a memory store either way."""
    clock = Clock()
    store = request.param(clock=clock)
    return make_client(
        {**BASIC, "logout": lambda s: s.destroy()}, revocation=store, clock=clock
    )


def test_with_a_store_a_copied_cookie_is_rejected_after_destroy(
    revoking_client: TestClient,
) -> None:
    client = revoking_client
    token = cookie_value(set_cookies(client.get("/login"))[0])
    client.get("/logout")
    client.cookies.set("session", token)
    response = client.get("/view")
    assert response.json()["session"] == {}
    (line,) = set_cookies(response)
    assert is_expiring(line)


def test_with_a_store_a_revoked_copy_before_the_live_cookie_is_passed_over(
    revoking_client: TestClient,
) -> None:
    client = revoking_client
    revoked = cookie_value(set_cookies(client.get("/login"))[0])
    client.get("/logout")
    live = cookie_value(set_cookies(client.get("/cart"))[0])
    client.cookies.clear()
    response = client.get(
        "/view", headers={"cookie": f"session={revoked}; session={live}"}
    )
    assert response.json()["session"] == {"cart": ["apple"]}
    # The revoked copy shares the live cookie's name: expiring it would
    # expire both, so the response leaves the pair alone.
    assert set_cookies(response) == []


def test_revocation_lasts_exactly_as_long_as_the_cookie_could() -> None:
    clock = Clock()
    store = MemoryRevocationStore(clock=clock)
    client = make_client(
        {**BASIC, "logout": lambda s: s.destroy()},
        revocation=store,
        clock=clock,
        absolute_lifetime=1000,
        cookie=CookieOptions(max_age=1000),
    )
    client.get("/login")
    clock.now += 10
    client.get("/logout")
    # The entry lasts until the cookie's absolute expiry (issue time plus
    # the lifetime) plus the clock skew allowed, then goes.
    clock.now += 1000 - 10 + CLOCK_SKEW - 1
    assert len(store) == 1
    clock.now += 1
    assert len(store) == 0


def test_data_written_after_destroy_starts_a_new_session() -> None:
    def logout_and_flash(session: Session) -> Any:
        old = session.id
        session.destroy()
        session["flash"] = "signed out"
        return old

    store = MemoryRevocationStore()
    client = make_client({**BASIC, "out": logout_and_flash}, revocation=store)
    token = cookie_value(set_cookies(client.get("/login"))[0])
    response = client.get("/out")
    (line,) = set_cookies(response)
    fresh = open_token(cookie_value(line))
    assert fresh.data == {"flash": "signed out"}
    assert fresh.session_id.hex() != response.json()["result"]
    client.cookies.clear()
    client.cookies.set("session", token)
    assert client.get("/view").json()["session"] == {}


def test_regenerate_gives_a_new_id_and_revokes_the_old_one() -> None:
    def relogin(session: Session) -> Any:
        old = session.id
        session.regenerate()
        session["user"] = "alice"
        session["role"] = "admin"
        return old

    store = MemoryRevocationStore()
    client = make_client({**BASIC, "relogin": relogin}, revocation=store)
    old_token = cookie_value(set_cookies(client.get("/login"))[0])
    response = client.get("/relogin")
    new = open_token(cookie_value(set_cookies(response)[0]))
    assert new.session_id.hex() != response.json()["result"]
    assert new.data == {"user": "alice", "role": "admin"}
    assert client.get("/view").json()["session"]["role"] == "admin"
    client.cookies.clear()
    client.cookies.set("session", old_token)
    assert client.get("/view").json()["session"] == {}


def test_regenerate_on_a_new_session_revokes_nothing() -> None:
    store = MemoryRevocationStore()

    def fresh_login(session: Session) -> Any:
        session.regenerate()
        session["user"] = "bob"

    client = make_client({"login": fresh_login}, revocation=store)
    client.get("/login")
    assert len(store) == 0


def test_session_id_is_stable_across_requests() -> None:
    client = make_client({**BASIC, "id": lambda s: s.id})
    client.get("/login")
    first = client.get("/id").json()["result"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert client.get("/id").json()["result"] == first


def test_is_new() -> None:
    client = make_client({**BASIC, "new": lambda s: s.is_new})
    assert client.get("/new").json()["result"] is True
    client.get("/login")
    assert client.get("/new").json()["result"] is False


def test_save_forces_a_cookie_and_touch_refreshes_it() -> None:
    clock = Clock()
    client = make_client(
        {**BASIC, "save": lambda s: s.save(), "touch": lambda s: s.touch()},
        clock=clock,
    )
    client.get("/login")
    clock.now += 50
    (saved,) = set_cookies(client.get("/save"))
    assert open_token(cookie_value(saved), now=clock.now).data == {"user": "alice"}
    (touched,) = set_cookies(client.get("/touch"))
    payload = open_token(cookie_value(touched), now=clock.now)
    assert payload.idle_expiry == clock.now + 1_209_600


def test_remember_me_lengthens_this_session_only() -> None:
    def remember(session: Session) -> Any:
        session["user"] = "alice"
        session.cookie.max_age = timedelta(days=30)

    # A fixed clock: with the real one, a second ticking over between the two
    # requests would take a second off the second cookie's Max-Age.
    clock = Clock()
    client = make_client({**BASIC, "remember": remember}, clock=clock)
    (line,) = set_cookies(client.get("/remember"))
    assert "Max-Age=2592000;" in line
    token = open_token(cookie_value(line), now=clock.now)
    assert token.cookie == {"max_age": 2_592_000}
    # The override travels inside the sealed value, so a later change keeps it.
    (again,) = set_cookies(client.get("/cart"))
    assert "Max-Age=2592000;" in again
    other = make_client(BASIC)
    (plain,) = set_cookies(other.get("/login"))
    assert "Max-Age=1209600;" in plain


def test_absolute_lifetime_caps_remember_me() -> None:
    def remember(session: Session) -> Any:
        session["user"] = "alice"
        session.cookie.max_age = 10**9

    client = make_client(
        {"remember": remember},
        cookie=CookieOptions(max_age=3600),
        absolute_lifetime=86_400,
    )
    (line,) = set_cookies(client.get("/remember"))
    max_age = int(re.search(r"Max-Age=(\d+)", line)[1])  # type: ignore[index]
    assert 86_398 <= max_age <= 86_400


# -- key rotation --


def test_rotation_reseals_old_cookies_under_the_new_key() -> None:
    old, new = generate_key(), generate_key()
    before = make_client(BASIC, secret=old)
    token = cookie_value(set_cookies(before.get("/login"))[0])
    after = make_client(BASIC, secret=[new, old])
    after.cookies.set("session", token)
    response = after.get("/view")
    assert response.json()["session"] == {"user": "alice"}
    (line,) = set_cookies(response)
    resealed = cookie_value(line)
    new_only = TokenCodec(KeyRing(new), "session").open(resealed).payload
    old_payload = TokenCodec(KeyRing(old), "session").open(token).payload
    assert new_only.session_id == old_payload.session_id
    assert new_only.issued_at_ms == old_payload.issued_at_ms
    assert new_only.idle_expiry == old_payload.idle_expiry
    # Once re-sealed, the next request is quiet again.
    after.cookies.clear()
    after.cookies.set("session", resealed)
    assert set_cookies(after.get("/view")) == []


def test_dropping_a_key_logs_out_its_sessions() -> None:
    old, new = generate_key(), generate_key()
    token = cookie_value(set_cookies(make_client(BASIC, secret=old).get("/login"))[0])
    client = make_client(BASIC, secret=new)
    client.cookies.set("session", token)
    assert client.get("/view").json()["session"] == {}


# -- bad cookies --


@pytest.mark.parametrize(
    "value",
    ["", "garbage", "A" * 200, "null", '"quoted"', "é", "x" * 5000],
)
def test_bad_cookie_gives_empty_session_and_is_cleared(value: str) -> None:
    client = make_client(BASIC)
    header = f"session={value}".encode("latin-1")
    response = client.get("/view", headers={"cookie": header})  # type: ignore[dict-item]
    assert response.status_code == 200
    assert response.json()["session"] == {}
    (line,) = set_cookies(response)
    assert line.startswith("session=;")
    assert is_expiring(line)


def test_tampered_cookie_is_cleared_and_replaced_on_write() -> None:
    client = make_client(BASIC)
    token = cookie_value(set_cookies(client.get("/login"))[0])
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    client.cookies.clear()
    client.cookies.set("session", tampered)
    response = client.get("/cart")
    (line,) = set_cookies(response)
    assert open_token(cookie_value(line)).data == {"cart": ["apple"]}


def test_cookie_sealed_for_another_name_is_rejected() -> None:
    client = make_client(BASIC, name="other")
    token = cookie_value(set_cookies(make_client(BASIC).get("/login"))[0])
    response = client.get("/view", headers={"cookie": f"other={token}"})
    assert response.json()["session"] == {}


def test_rejection_reason_is_logged_at_debug_without_the_cookie(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(BASIC)
    token = cookie_value(set_cookies(client.get("/login"))[0])
    tampered = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    with caplog.at_level(logging.DEBUG, logger="cookiesession"):
        client.get("/view", headers={"cookie": f"session={tampered}"})
    assert "rejected: tampered" in caplog.text
    assert tampered[:30] not in caplog.text


def test_expiring_cookie_keeps_path_domain_and_partitioned() -> None:
    options = CookieOptions(
        path="/app", domain="example.com", secure=True, partitioned=True
    )
    client = make_client(BASIC, cookie=options, base_url="https://testserver")
    response = client.get("/view", headers={"cookie": "session=bad"})
    (line,) = set_cookies(response)
    assert is_expiring(line)
    for attribute in ("Path=/app", "Domain=example.com", "Partitioned", "Secure"):
        assert f"; {attribute}" in line


def test_first_valid_of_duplicate_cookies_wins() -> None:
    client = make_client(BASIC)
    token = cookie_value(set_cookies(client.get("/login"))[0])
    client.cookies.clear()
    response = client.get("/view", headers={"cookie": f"session=bad; session={token}"})
    assert response.json()["session"] == {"user": "alice"}


# -- cookie attributes --


def test_all_attributes_are_rendered() -> None:
    options = CookieOptions(
        path="/p",
        domain="example.com",
        max_age=60,
        http_only=True,
        secure=True,
        same_site="strict",
        partitioned=True,
        priority="high",
    )
    client = make_client(BASIC, cookie=options, base_url="https://testserver")
    (line,) = set_cookies(client.get("/login"))
    value, *attributes = line.split("; ")
    assert value.startswith("session=")
    assert attributes[0] == "Max-Age=60"
    assert re.fullmatch(
        r"Expires=\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", attributes[1]
    )
    assert attributes[2:] == [
        "Path=/p",
        "Domain=example.com",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Partitioned",
        "Priority=High",
    ]


@pytest.mark.parametrize(
    ("base_url", "secure"),
    [("https://testserver", True), ("http://testserver", False)],
)
def test_secure_auto_follows_the_request_scheme(base_url: str, secure: bool) -> None:
    client = make_client(BASIC, base_url=base_url)
    (line,) = set_cookies(client.get("/login"))
    assert ("; Secure" in line) is secure


def test_secure_cookie_on_http_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    import cookiesession._middleware as module

    module._secure_on_http_warned = False
    client = make_client(BASIC, cookie=CookieOptions(secure=True))
    with caplog.at_level(logging.WARNING, logger="cookiesession"):
        client.get("/login")
        client.get("/cart")
    warnings = [r for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warnings) == 1


def test_other_set_cookie_headers_are_kept_and_ours_is_single() -> None:
    def handler(session: Session) -> Response:
        session["user"] = "alice"
        response = JSONResponse({})
        response.set_cookie("theme", "dark")
        response.set_cookie("session", "app-written")
        return response

    client = make_client({"mixed": handler})
    lines = set_cookies(client.get("/mixed"))
    assert sum(line.startswith("theme=dark") for line in lines) == 1
    ours = [line for line in lines if line.startswith("session=")]
    assert len(ours) == 1
    assert open_token(cookie_value(ours[0])).data == {"user": "alice"}


def test_vary_cookie_only_when_the_session_was_used() -> None:
    app = Starlette(
        routes=[
            Route("/used", lambda r: JSONResponse(dict(r.session))),
            Route("/unused", lambda r: JSONResponse({})),
        ]
    )
    app.add_middleware(SessionMiddleware, secret=KEY)
    client = TestClient(app)
    assert client.get("/used").headers.get("vary") == "Cookie"
    assert "vary" not in client.get("/unused").headers


def test_vary_is_merged_with_the_apps_own() -> None:
    def handler(session: Session) -> Response:
        session["x"] = 1
        return JSONResponse({}, headers={"vary": "Accept-Encoding"})

    app = Starlette(routes=[Route("/", lambda r: handler(r.session))])
    app.add_middleware(SessionMiddleware, secret=KEY)
    assert TestClient(app).get("/").headers["vary"] == "Accept-Encoding, Cookie"


# -- large sessions --


def big(size: int) -> Handler:
    def handler(session: Session) -> Any:
        # Incompressible and unguessable: random-looking text of `size` bytes.
        import hashlib

        blob = "".join(
            hashlib.sha256(str(i).encode()).hexdigest() for i in range(size // 64 + 1)
        )
        session["blob"] = blob[:size]

    return handler


@pytest.mark.parametrize("size", [5_000, 20_000, 60_000])
def test_large_sessions_are_chunked_under_4096_bytes_a_line(size: int) -> None:
    client = make_client({"big": big(size), "view": lambda s: len(s.get("blob", ""))})
    lines = set_cookies(client.get("/big", headers={}))
    assert len(lines) > 1
    for index, line in enumerate(lines):
        assert line.startswith(f"session.{index}=")
        assert len(f"Set-Cookie: {line}".encode()) <= 4096
    assert client.get("/view").json()["result"] == size


def test_chunks_are_read_in_numeric_order_past_ten() -> None:
    client = make_client({"big": big(40_000), "view": lambda s: len(s["blob"])})
    lines = set_cookies(client.get("/big"))
    assert len(lines) >= 11
    # Send them in string order (session.10 before session.2): still works.
    pairs = sorted(line.split(";", 1)[0] for line in lines)
    client.cookies.clear()
    response = client.get("/view", headers={"cookie": "; ".join(pairs)})
    assert response.json()["result"] == 40_000


def test_shrinking_session_expires_stale_chunks() -> None:
    client = make_client(
        {"big": big(20_000), "small": lambda s: s.__setitem__("blob", "x")}
    )
    count = len(set_cookies(client.get("/big")))
    lines = set_cookies(client.get("/small"))
    live = [line for line in lines if not is_expiring(line)]
    gone = sorted(line.split("=", 1)[0] for line in lines if is_expiring(line))
    assert [line.split("=", 1)[0] for line in live] == ["session"]
    assert gone == sorted(f"session.{i}" for i in range(count))


def test_growing_session_expires_the_single_cookie() -> None:
    client = make_client({**BASIC, "big": big(10_000)})
    client.get("/login")
    lines = set_cookies(client.get("/big"))
    assert [line for line in lines if line.startswith("session=")] == [
        next(line for line in lines if line.startswith("session="))
    ]
    assert is_expiring(next(line for line in lines if line.startswith("session=")))


def test_missing_chunk_gives_empty_session_and_clears_the_rest() -> None:
    client = make_client({"big": big(20_000), "view": dict})
    lines = set_cookies(client.get("/big"))
    pairs = [line.split(";", 1)[0] for line in lines]
    del pairs[1]
    client.cookies.clear()
    response = client.get("/view", headers={"cookie": "; ".join(pairs)})
    assert response.json()["result"] == {}
    assert all(is_expiring(line) for line in set_cookies(response))
    assert len(set_cookies(response)) == len(pairs)


def test_swapped_chunks_are_rejected() -> None:
    client = make_client({"big": big(20_000), "view": dict})
    values = [cookie_value(line) for line in set_cookies(client.get("/big"))]
    values[0], values[1] = values[1], values[0]
    header = "; ".join(f"session.{i}={v}" for i, v in enumerate(values))
    client.cookies.clear()
    assert client.get("/view", headers={"cookie": header}).json()["result"] == {}


def test_session_beyond_the_chunk_cap_raises_naming_the_size() -> None:
    client = make_client({"big": big(30_000)}, max_chunks=4)
    with pytest.raises(SessionTooLarge, match=r"the sealed session is \d+ bytes"):
        client.get("/big")


# -- data that cannot be stored --


def test_unstorable_data_raises_at_save_naming_the_key() -> None:
    def handler(session: Session) -> Any:
        session["when"] = object()
        session.save()

    client = make_client({"bad": handler})
    with pytest.raises(SessionDataError, match=r"session\['when'\]"):
        client.get("/bad")


def test_unstorable_data_raises_when_the_response_starts() -> None:
    def handler(session: Session) -> Response:
        session["s"] = {1, 2}
        return Response("ok")

    client = make_client({"bad": handler})
    with pytest.raises(SessionDataError, match=r"session\['s'\]: set"):
        client.get("/bad")


# -- websockets --


def websocket_client(**options: Any) -> TestClient:
    async def endpoint(websocket: WebSocket) -> None:
        session = websocket.session
        count = session.get("visits", 0) + 1
        session["visits"] = count
        await websocket.accept()
        await websocket.send_json({"visits": count, "user": session.get("user")})
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint), Route("/login", _login)])
    app.add_middleware(SessionMiddleware, secret=KEY, **options)
    return TestClient(app)


def _login(request: Request) -> Response:
    request.session["user"] = "alice"
    return JSONResponse({})


def test_websocket_sees_the_session_and_its_changes_ride_on_accept() -> None:
    client = websocket_client()
    client.get("/login")
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"visits": 1, "user": "alice"}
        headers = dict(websocket.extra_headers or [])  # type: ignore[attr-defined]
    assert headers  # accept carried headers
    cookie = headers[b"set-cookie"].decode()
    assert open_token(cookie_value(cookie)).data == {"user": "alice", "visits": 1}


# -- configuration --


def build(**options: Any) -> SessionMiddleware:
    options.setdefault("secret", KEY)
    return SessionMiddleware(Starlette(), **options)


@pytest.mark.parametrize(
    ("options", "error", "parameter"),
    [
        ({"secret": None}, ValueError, "secret"),
        ({"secret": []}, ValueError, "secret"),
        ({"secret": 42}, TypeError, "secret"),
        ({"name": ""}, ValueError, "name"),
        ({"name": "a b"}, ValueError, "name"),
        ({"name": "a;b"}, ValueError, "name"),
        ({"name": 3}, TypeError, "name"),
        ({"cookie": {"max_age": 1}}, TypeError, "cookie"),
        ({"resave": "yes"}, TypeError, "resave"),
        ({"rolling": 1}, TypeError, "rolling"),
        ({"save_uninitialized": None}, TypeError, "save_uninitialized"),
        ({"refresh_after": 0}, ValueError, "refresh_after"),
        ({"refresh_after": 1.5}, ValueError, "refresh_after"),
        ({"refresh_after": True}, ValueError, "refresh_after"),
        ({"absolute_lifetime": -1}, ValueError, "absolute_lifetime"),
        ({"absolute_lifetime": 0}, ValueError, "absolute_lifetime"),
        ({"absolute_lifetime": 10}, ValueError, "absolute_lifetime"),
        ({"revocation": object()}, TypeError, "revocation"),
        ({"revocation_failure": "maybe"}, ValueError, "revocation_failure"),
        ({"max_chunks": 0}, ValueError, "max_chunks"),
        ({"clock": 5}, TypeError, "clock"),
        (
            {"name": "__Host-s", "cookie": CookieOptions(secure=True, path="/a")},
            ValueError,
            "__Host-",
        ),
        (
            {"name": "__Host-s", "cookie": CookieOptions(secure=True, domain="a.b")},
            ValueError,
            "__Host-",
        ),
        ({"name": "__Secure-s"}, ValueError, "secure=True"),
        ({"secret_key": "k", "secret": KEY}, ValueError, "secret_key"),
        ({"cookie": CookieOptions(), "max_age": 5}, ValueError, "cookie"),
        ({"session_cookie": "s", "name": "t"}, ValueError, "session_cookie"),
    ],
)
def test_bad_configuration_raises_naming_the_parameter(
    options: dict[str, Any], error: type[Exception], parameter: str
) -> None:
    with pytest.raises(error, match=re.escape(parameter)):
        build(**options)


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"max_age": -1}, "max_age"),
        ({"max_age": "1"}, "max_age"),
        ({"max_age": timedelta(seconds=-5)}, "max_age"),
        ({"path": "relative"}, "path"),
        ({"path": "/a;b"}, "path"),
        ({"domain": "a;b"}, "domain"),
        ({"secure": "sometimes"}, "secure"),
        ({"same_site": "none"}, "same_site"),
        ({"same_site": "none", "secure": "auto"}, "same_site"),
        ({"same_site": "loose"}, "same_site"),
        ({"priority": "urgent"}, "priority"),
        ({"http_only": "yes"}, "http_only"),
    ],
)
def test_bad_cookie_options_raise_naming_the_parameter(
    options: dict[str, Any], parameter: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=parameter):
        CookieOptions(**options)


def test_good_prefixed_names_are_accepted() -> None:
    build(name="__Host-session", cookie=CookieOptions(secure=True))
    build(name="__Secure-session", cookie=CookieOptions(secure=True, domain="a.b"))


def test_same_site_none_with_secure_is_accepted() -> None:
    options = CookieOptions(same_site="none", secure=True)
    assert options.suffix(secure=True).endswith("SameSite=None")


# -- Starlette's keywords --


def test_starlette_keywords_keep_starlettes_meaning() -> None:
    client = make_client(
        BASIC,
        secret=None,
        secret_key="a secret key that is long enough for no warning",
        session_cookie="sid",
        max_age=60,
        path="/",
        same_site="strict",
        https_only=True,
        domain="example.com",
        base_url="https://testserver",
    )
    (line,) = set_cookies(client.get("/login"))
    assert line.startswith("sid=")
    for attribute in ("Max-Age=60", "SameSite=Strict", "Secure", "Domain=example.com"):
        assert attribute in line


def test_https_only_false_never_sets_secure_even_on_https() -> None:
    client = make_client(BASIC, https_only=False, base_url="https://testserver")
    (line,) = set_cookies(client.get("/login"))
    assert "Secure" not in line


@pytest.fixture(autouse=True)
def _no_leftover_warning_state() -> Iterator[None]:
    yield


# -- subjects -------------------------------------------------------------------


def test_subject_cannot_change_without_regenerate() -> None:
    def become_bob(session: Session) -> Any:
        session.subject = "bob"

    def as_alice(session: Session) -> Any:
        session.subject = "alice"

    client = make_client({"alice": as_alice, "bob": become_bob})
    client.get("/alice")
    with pytest.raises(ValueError, match="regenerate"):
        client.get("/bob")


def test_subject_can_change_after_regenerate() -> None:
    def switch(session: Session) -> Any:
        session.regenerate()
        session.subject = "bob"

    client = make_client(
        {"alice": lambda s: setattr(s, "subject", "alice"), "switch": switch}
    )
    client.get("/alice")
    (line,) = set_cookies(client.get("/switch"))
    assert open_token(cookie_value(line)).subject == "bob"


def test_sign_out_everywhere_rejects_every_earlier_session_of_the_subject() -> None:
    clock = Clock()
    store = MemoryRevocationStore(clock=clock)

    def login_as(session: Session) -> Any:
        session.regenerate()
        session.subject = "alice"
        session["user"] = "alice"

    def everywhere(session: Session) -> Any:
        session.sign_out_everywhere()
        # Log this browser straight back in: the new session survives.
        login_as(session)

    handlers = {**BASIC, "login": login_as, "everywhere": everywhere}
    laptop = make_client(handlers, revocation=store, clock=clock)
    phone = make_client(handlers, revocation=store, clock=clock)
    laptop.get("/login")
    phone.get("/login")
    # Same millisecond: a session issued at the instant of the sign-out goes
    # too, while the one made by the sign-out request itself survives.
    laptop.get("/everywhere")
    assert phone.get("/view").json()["session"] == {}
    assert laptop.get("/view").json()["session"] == {"user": "alice"}


def test_sign_out_everywhere_needs_a_subject() -> None:
    client = make_client({"out": lambda s: s.sign_out_everywhere()})
    with pytest.raises(ValueError, match="subject"):
        client.get("/out")


# -- leftovers ------------------------------------------------------------------


def test_saved_empty_session_is_kept_not_expired() -> None:
    client = make_client(BASIC, save_uninitialized=True)
    client.get("/view")
    assert set_cookies(client.get("/view")) == []


def test_stray_chunks_beside_a_live_single_cookie_are_expired() -> None:
    client = make_client(BASIC)
    token = cookie_value(set_cookies(client.get("/login"))[0])
    client.cookies.clear()
    header = f"session={token}; session.0=old; session.1=old"
    response = client.get("/view", headers={"cookie": header})
    assert response.json()["session"] == {"user": "alice"}
    expired = sorted(line.split("=", 1)[0] for line in set_cookies(response))
    assert expired == ["session.0", "session.1"]
    assert all(is_expiring(line) for line in set_cookies(response))


def test_a_bad_single_cookie_does_not_hide_a_valid_chunked_session() -> None:
    client = make_client({"big": big(10_000), "view": lambda s: len(s["blob"])})
    pairs = [line.split(";", 1)[0] for line in set_cookies(client.get("/big"))]
    client.cookies.clear()
    response = client.get("/view", headers={"cookie": "; ".join(["session=x", *pairs])})
    assert response.json()["result"] == 10_000
    (expired,) = set_cookies(response)
    assert expired.startswith("session=;")


def test_chunk_names_beyond_the_cap_are_ignored_not_expired() -> None:
    client = make_client(BASIC, max_chunks=4)
    header = "; ".join(f"session.{i}=x" for i in range(4, 300))
    response = client.get("/view", headers={"cookie": header})
    assert response.json()["session"] == {}
    assert set_cookies(response) == []


# -- remembered cookie values ------------------------------------------------------


def middleware_of(client: TestClient) -> SessionMiddleware:
    app: Any = client.app
    stack = app.middleware_stack  # built by the first request
    while not isinstance(stack, SessionMiddleware):
        stack = stack.app
    return stack


def test_an_older_cookie_replayed_opens_to_its_own_data_not_a_later_change() -> None:
    # The remembered value keeps bytes, not objects a handler changed.
    client = make_client(BASIC)
    first = cookie_value(set_cookies(client.get("/cart"))[0])
    client.get("/cart")  # appends in place to the list decoded from `first`
    client.cookies.clear()
    response = client.get("/view", headers={"cookie": f"session={first}"})
    assert response.json()["session"] == {"cart": ["apple"]}


def test_a_value_this_middleware_sealed_opens_without_decrypting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = Starlette(routes=[Route("/login", _login)])
    app.add_middleware(SessionMiddleware, secret=KEY)
    client = TestClient(app)
    client.get("/login")
    middleware = middleware_of(client)

    def no_decryption(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decrypted again")

    monkeypatch.setattr(TokenCodec, "open", no_decryption)
    _, template, _, _, stale = middleware._open(client.cookies["session"])
    assert template == {"user": "alice"}
    assert stale is False


class CountingOpens:
    """Wraps TokenCodec.open to count decryptions; each still happens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = TokenCodec.open

        def counted(codec: TokenCodec, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(codec, *args, **kwargs)

        monkeypatch.setattr(TokenCodec, "open", counted)


def counter_middleware() -> SessionMiddleware:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = scope["session"]
        session["n"] = session.get("n", 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return SessionMiddleware(app, secret=KEY)


def writes(
    middleware: SessionMiddleware, cookie: str | None, count: int, *, chain: bool
) -> list[str]:
    """`count` requests that increment the session; the cookies sent back.

    With `chain`, each request brings the cookie the one before it got, as
    a browser does; without, every one brings `cookie`.
    """
    got: list[str] = []

    async def run() -> None:
        current = cookie
        for _ in range(count):
            sent: list[Any] = []
            headers = (
                [] if current is None else [(b"cookie", b"session=" + current.encode())]
            )
            scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}

            async def receive() -> Any:
                return {"type": "http.request", "body": b""}

            async def send(message: Any, sent: list[Any] = sent) -> None:
                sent.append(message)

            await middleware(scope, receive, send)
            (line,) = [v.decode() for k, v in sent[0]["headers"] if k == b"set-cookie"]
            got.append(cookie_value(line))
            if chain:
                current = got[-1]

    asyncio.run(run())
    return got


def test_values_sealed_here_that_come_back_are_not_decrypted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    middleware = counter_middleware()
    opens = CountingOpens(monkeypatch)
    # A browser: every new value comes back.
    *_, last = writes(middleware, None, _CACHED_TOKENS + 10, chain=True)
    assert opens.count == 0
    assert open_token(last).data == {"n": _CACHED_TOKENS + 10}


def test_values_sealed_for_a_client_that_ignores_them_are_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    middleware = counter_middleware()
    (first,) = writes(middleware, None, 1, chain=True)
    # Every request brings `first`: only the value sealed for the first of
    # them, while `first` was still the latest, is remembered.
    sealed = writes(middleware, first, 10, chain=False)
    opens = CountingOpens(monkeypatch)
    for cookie in sealed:
        writes(middleware, cookie, 1, chain=False)
    assert opens.count == len(sealed) - 1
    # Once it follows Set-Cookie again, its values are remembered again.
    opens.count = 0
    writes(middleware, sealed[-1], 50, chain=True)
    assert opens.count == 1  # sealed[-1] itself was not remembered


def test_a_value_the_browser_replaced_is_let_go_and_still_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    middleware = counter_middleware()
    first, _ = writes(middleware, None, 2, chain=True)
    opens = CountingOpens(monkeypatch)
    # A request that was in flight with the old value when it was replaced.
    (late,) = writes(middleware, first, 1, chain=False)
    assert opens.count == 1
    assert open_token(late).data == {"n": 2}


def test_remembered_values_are_bounded() -> None:
    middleware = SessionMiddleware(Starlette(), secret=KEY)
    codec = TokenCodec(KeyRing(KEY), "session")
    for _ in range(_CACHED_TOKENS + 50):
        middleware._open(codec.seal(Payload(os.urandom(16), 0, 2**40, None)))
    remembered = len(middleware._recent) + len(middleware._older)
    assert _CACHED_TOKENS // 2 < remembered <= _CACHED_TOKENS


def test_websocket_with_a_bad_cookie_gets_a_fresh_session_and_the_clearing() -> None:
    client = websocket_client()
    with client.websocket_connect("/ws", headers={"cookie": "session=forged"}) as ws:
        assert ws.receive_json() == {"visits": 1, "user": None}
        headers = [
            (k.decode(), v.decode())
            for k, v in ws.extra_headers or []  # type: ignore[attr-defined]
        ]
    lines = [v for k, v in headers if k == "set-cookie"]
    assert len(lines) == 1
    assert open_token(cookie_value(lines[0])).data == {"visits": 1}


def test_websocket_that_leaves_the_session_alone_gets_no_headers() -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    app.add_middleware(SessionMiddleware, secret=KEY)
    with TestClient(app).websocket_connect("/ws") as ws:
        assert not ws.extra_headers  # type: ignore[attr-defined]
