"""The demo and the cookie attributes as a real browser (Chromium) handles them.

Run only these with `pytest -m browser`. They need Debian's `chromium` and
the `playwright` package; without either they are skipped locally and fail
under CI=true.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from cookiesession import CookieOptions, SessionMiddleware, generate_key
from cookiesession._demo import BIG_SIZE, IDLE_TIMEOUT, create_app
from tests.browser import (
    SCREENSHOTS,
    TIMEOUT_MS,
    chromium,
    demo_server,
    flash,
    launcher_app,
    on_host,
    sign_in,
)
from tests.live_server import serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

pytestmark = pytest.mark.browser

# RFC 6265bis caps a cookie's name plus value at 4096 bytes; the middleware
# keeps each whole Set-Cookie line, attributes included, within it.
LINE_LIMIT = 4096
VIEWPORT: ViewportSize = {"width": 900, "height": 700}
# Another site than 127.0.0.1, served from 127.0.0.1 (see tests/browser.py).
ELSEWHERE = "elsewhere.test"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def demo(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Depends on `browser` so that nothing starts when Chromium is missing.
    with demo_server(tmp_path_factory.mktemp("demo") / "demo.log") as base:
        yield base


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Pages in fresh contexts: each has its own, empty cookie jar."""
    contexts = []

    def make() -> Page:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()


def submit(page: Page, button: str, lands_on: str) -> None:
    """Click a form's button and wait until the page at `lands_on` loaded."""
    with page.expect_navigation(url=lands_on):
        page.click(button)


def cookies_by_name(page: Page) -> dict[str, Any]:
    return {cookie["name"]: cookie for cookie in page.context.cookies()}


def test_sign_in_cart_flash_and_sign_out(page: Page, demo: str) -> None:
    page.goto(demo + "/")
    assert page.inner_text("#status") == "Not signed in."
    assert page.context.cookies() == []

    page.click("#login-link")
    page.wait_for_url(demo + "/login")
    page.fill("#login-form input[name=username]", "alice")
    page.fill("#login-form input[name=password]", "correct horse")
    submit(page, "#login-button", demo + "/profile")
    assert page.inner_text("#user") == "alice"
    assert flash(page) == ["Welcome, alice!"]

    page.reload()
    assert page.inner_text("#user") == "alice"
    assert flash(page) == []

    page.click('nav a[href="/cart"]')
    page.wait_for_url(demo + "/cart")
    assert page.locator("#cart-empty").is_visible()
    for item in ("apple", "pear"):
        page.fill("#cart-form input[name=item]", item)
        submit(page, "#add-button", demo + "/cart")
    assert page.locator("#cart-items li").all_inner_texts() == ["apple", "pear"]

    submit(page, "#logout-button", demo + "/")
    assert flash(page) == ["Signed out."]
    assert page.inner_text("#status") == "Not signed in."
    page.goto(demo + "/profile")
    assert page.url == demo + "/login"
    assert flash(page) == ["Please sign in to see your profile."]


def test_session_cookie_attributes_as_chromium_stores_them(
    page: Page, demo: str
) -> None:
    sign_in(page, demo, "alice")

    (cookie,) = page.context.cookies()
    assert cookie["name"] == "session"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    # secure="auto" and plain http: no Secure, or the browser would drop it.
    assert cookie["secure"] is False
    assert cookie["domain"] == "127.0.0.1"
    assert cookie["path"] == "/"
    assert abs(cookie["expires"] - (time.time() + IDLE_TIMEOUT)) < 60


def test_page_script_cannot_read_the_session_cookie(page: Page, demo: str) -> None:
    sign_in(page, demo, "alice")
    # A cookie without HttpOnly shows that document.cookie works on the page.
    page.context.add_cookies([{"name": "visible", "value": "yes", "url": demo}])

    assert page.evaluate("document.cookie") == "visible=yes"
    assert set(cookies_by_name(page)) == {"session", "visible"}


def test_big_session_round_trips_through_chunked_cookies(page: Page, demo: str) -> None:
    page.goto(demo + "/big")
    assert page.locator("#big-none").is_visible()

    submit(page, "#big-button", demo + "/big")
    (message,) = flash(page)
    stored = re.fullmatch(r"Stored (\d+) bytes, SHA-256 ([0-9a-f]{64})\.", message)
    assert stored is not None, message
    size, digest = stored.groups()
    assert int(size) == BIG_SIZE

    cookies = cookies_by_name(page)
    assert len(cookies) >= 3
    assert set(cookies) == {f"session.{index}" for index in range(len(cookies))}
    for cookie in cookies.values():
        assert len(cookie["name"]) + len(cookie["value"]) < LINE_LIMIT
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"

    page.reload()
    assert flash(page) == []
    assert page.inner_text("#big-size") == size
    assert page.inner_text("#big-sha256") == digest

    submit(page, "#big-clear-button", demo + "/big")
    assert page.locator("#big-none").is_visible()
    assert not [name for name in cookies_by_name(page) if name.startswith("session.")]


def test_secure_cookie_over_http_sticks_only_on_loopback(
    new_page: Callable[[], Page],
) -> None:
    with serve(create_app(generate_key(), secure=True)) as base:
        # Chromium counts http://127.0.0.1 (and localhost) as potentially
        # trustworthy (W3C Secure Contexts, "Is origin potentially
        # trustworthy?") and lets such an origin set and receive Secure
        # cookies over plain http, so the session sticks there.
        loopback = new_page()
        sign_in(loopback, base, "alice")
        assert loopback.inner_text("#user") == "alice"
        (cookie,) = loopback.context.cookies()
        assert cookie["secure"] is True

        # The same server under a name that is not loopback (resolved to
        # 127.0.0.1 by the browser only): plain http there is insecure, and
        # Chromium drops every Secure cookie it is sent (RFC 6265bis, storage
        # model: no Secure cookie from a non-secure scheme), so the sign-in
        # does not stick and the login form comes back.
        named = on_host(base, "app.test")
        page = new_page()
        page.goto(named + "/login")
        page.fill("#login-form input[name=username]", "alice")
        page.fill("#login-form input[name=password]", "correct horse")
        submit(page, "#login-button", named + "/login")
        assert page.context.cookies() == []
        assert page.locator("#login-form").is_visible()
        assert flash(page) == []  # the flash message was in a dropped cookie
        page.goto(named + "/profile")
        assert page.url == named + "/login"


async def _sign_in_alice(request: Request) -> Response:
    request.session["user"] = "alice"
    return PlainTextResponse("signed in")


async def _whoami(request: Request) -> Response:
    user = request.session.get("user", "nobody")
    fetch_site = request.headers.get("sec-fetch-site", "none")
    return HTMLResponse(
        f'<p id="user">{user}</p><p id="method">{request.method}</p>'
        f'<p id="fetch-site">{fetch_site}</p>'
    )


SameSite = Literal["strict", "lax"]


def echo_app(same_site: SameSite) -> Starlette:
    """`/sign-in` starts a session; `/whoami` shows what came with a request."""
    app = Starlette(
        routes=[
            Route("/sign-in", _sign_in_alice),
            Route("/whoami", _whoami, methods=["GET", "POST"]),
        ]
    )
    options = CookieOptions(same_site=same_site)
    app.add_middleware(SessionMiddleware, secret=generate_key(), cookie=options)
    return app


@pytest.fixture(scope="module")
def sites(browser: Browser) -> Iterator[dict[str, str]]:
    """Base URLs: an echo app per SameSite value, and a launcher page."""
    with contextlib.ExitStack() as stack:
        bases = {
            name: stack.enter_context(serve(echo_app(name)))
            for name in ("strict", "lax")
        }
        bases["launcher"] = stack.enter_context(serve(launcher_app()))
        yield bases


# The launcher runs on 127.0.0.1 on another port: another origin, but the same
# site, because a site ignores the port (RFC 6265bis, "Same-site and
# Cross-site Requests"). Under ELSEWHERE it is another site.
@pytest.mark.parametrize(
    ("same_site", "launcher_host", "control", "carried"),
    [
        ("strict", "127.0.0.1", "#link", True),
        ("strict", "127.0.0.1", "#submit", True),
        ("strict", ELSEWHERE, "#link", False),
        ("strict", ELSEWHERE, "#submit", False),
        ("lax", "127.0.0.1", "#link", True),
        ("lax", "127.0.0.1", "#submit", True),
        # RFC 6265bis, retrieval algorithm: Lax goes with a cross-site request
        # only if it is a top-level navigation by a safe method, so a GET link
        # carries it and a POST form does not.
        ("lax", ELSEWHERE, "#link", True),
        ("lax", ELSEWHERE, "#submit", False),
    ],
)
def test_same_site_as_chromium_enforces_it(
    page: Page,
    sites: dict[str, str],
    *,
    same_site: SameSite,
    launcher_host: str,
    control: str,
    carried: bool,
) -> None:
    app = sites[same_site]
    page.goto(app + "/sign-in")
    (cookie,) = page.context.cookies()
    assert cookie["sameSite"] == same_site.capitalize()

    query = urlencode({"action": app + "/whoami"})
    page.goto(f"{on_host(sites['launcher'], launcher_host)}/?{query}")
    page.click(control)
    page.wait_for_url(app + "/whoami")

    # The browser's own verdict on the request, sent to the app.
    expected_site = "same-site" if launcher_host == "127.0.0.1" else "cross-site"
    assert page.inner_text("#fetch-site") == expected_site
    assert page.inner_text("#method") == ("GET" if control == "#link" else "POST")
    assert page.inner_text("#user") == ("alice" if carried else "nobody")


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/login", {"username": "mallory", "password": "x"}),
        ("/cart/add", {"item": "spam"}),
        ("/logout", {}),
    ],
    ids=["login", "cart-add", "logout"],
)
def test_cross_site_form_post_leaves_the_signed_in_session_alone(
    page: Page, demo: str, sites: dict[str, str], path: str, fields: dict[str, str]
) -> None:
    sign_in(page, demo, "alice")

    # The POST arrives without alice's cookie (SameSite=Lax). Were it
    # answered with a fresh session cookie, Chromium would store that over
    # alice's (RFC 6265bis allows it on any top-level navigation); the demo
    # refuses cross-origin writes before the session middleware runs.
    query = urlencode({"action": demo + path, **fields})
    page.goto(f"{on_host(sites['launcher'], ELSEWHERE)}/?{query}")
    with page.expect_response(re.compile(re.escape(demo + path))) as answer:
        page.click("#submit")
    assert answer.value.status == 403
    assert answer.value.headers.get("set-cookie") is None

    page.goto(demo + "/profile")
    assert page.url == demo + "/profile"
    assert page.inner_text("#user") == "alice"


def test_screenshots_of_every_demo_page(page: Page, demo: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=path, full_page=True)
        return path

    page.goto(demo + "/login")
    shots = [shoot("login")]
    sign_in(page, demo, "alice")
    shots.append(shoot("profile"))
    page.goto(demo + "/")
    shots.append(shoot("home"))
    page.goto(demo + "/cart")
    for item in ("apple", "pear"):
        page.fill("#cart-form input[name=item]", item)
        submit(page, "#add-button", demo + "/cart")
    shots.append(shoot("cart"))
    page.goto(demo + "/big")
    submit(page, "#big-button", demo + "/big")
    shots.append(shoot("big"))

    for path in shots:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
        assert len(data) > 5_000, f"{path} looks blank"
