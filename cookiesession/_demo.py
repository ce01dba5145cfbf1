"""A small demo site: sign in, profile, cart, flash messages, sign out.

`python -m cookiesession demo` serves it. The pages are plain HTML strings
with stable element ids (forms `#login-form`, `#cart-form`...; `#flash`,
`#user`, `#cart-items`), and `/api/...` offers the same flows as JSON.

Forms are parsed here from `application/x-www-form-urlencoded` bodies, so the
demo needs no multipart parser.

SameSite=Lax keeps the session cookie off cross-site POSTs (RFC 6265bis,
section 8.8.2), but that alone is not enough: a cross-site form could still
sign the visitor in as someone else, or replace their session with the fresh
one the app answers with. `_SameOriginWrites` refuses state-changing requests
that the browser marks as coming from another origin.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Literal, cast
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cookiesession._keys import KeyRing, SecretLike
from cookiesession._middleware import SessionMiddleware
from cookiesession._options import CookieOptions
from cookiesession._revocation import RevocationStore
from cookiesession._session import Session

__all__ = ["BIG_SIZE", "IDLE_TIMEOUT", "REMEMBER_ME", "create_app"]

#: Lifetime of a session without "remember me": it ends this many seconds
#: after its cookie was last issued (re-issued at half-time, see create_app).
IDLE_TIMEOUT = 2 * 3600
#: Lifetime of a "remember me" session, set per session.
REMEMBER_ME = 30 * 24 * 3600
#: Bytes `/big` stores: more than fits one cookie, so the session is split
#: over `session.0`, `session.1`, ... (4096 bytes a line, RFC 6265bis 5.7).
BIG_SIZE = 9 * 1024

_MAX_BODY = 8 * 1024
_MAX_NAME = 64
_MAX_ITEM = 100
# Each item costs cookie space; a cap keeps the session far from the chunk
# limit, where saving would fail with SessionTooLarge.
_MAX_CART = 20
_FORM_TYPE = "application/x-www-form-urlencoded"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Pages show personal data: keep them out of shared caches, and allow no
# script at all, so that a missed escape could not run anything.
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
_CSS = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
nav { display: flex; gap: 1rem; align-items: center; border-bottom: 1px solid #ccc;
      padding-bottom: .5rem; }
nav form { margin-left: auto; }
#flash p { background: #eef6ee; border: 1px solid #9c9; padding: .4rem .8rem; }
label { display: block; margin: .4rem 0; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""


def _e(value: object) -> str:
    """HTML-escape any value for element content and quoted attributes."""
    return html.escape(str(value), quote=True)


def _session(request: Request) -> Session:
    # SessionMiddleware stores a Session; Starlette types it as a plain dict.
    return cast(Session, request.session)


def _user(session: Session) -> str | None:
    user = session.get("user")
    return user if isinstance(user, str) else None


def _cart(session: Session) -> list[str]:
    cart = session.get("cart")
    if not isinstance(cart, list):
        return []
    return [item for item in cart if isinstance(item, str)]


def _flash(session: Session, message: str) -> None:
    # A list mutated in place: the middleware finds nested changes by content.
    session.setdefault("flash", []).append(message)


def _iso(timestamp: object) -> str:
    if not isinstance(timestamp, int):
        return "unknown"
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _redirect(url: str) -> RedirectResponse:
    # 303 See Other: the browser follows a POST with a GET (RFC 9110, 15.4.4).
    return RedirectResponse(url, status_code=303, headers=_HEADERS)


def _nav(user: str | None) -> str:
    links = (
        '<a href="/">Home</a> <a href="/profile">Profile</a> '
        '<a href="/cart">Cart</a> <a href="/big">Big session</a>'
    )
    if user is None:
        return f'<nav>{links} <a id="login-link" href="/login">Sign in</a></nav>'
    return (
        f"<nav>{links}"
        '<form id="logout-form" method="post" action="/logout">'
        '<button id="logout-button" type="submit">Sign out</button></form></nav>'
    )


def _page(session: Session, title: str, body: str) -> HTMLResponse:
    """A full page; pending flash messages are shown on it, and only on it."""
    messages = session.pop("flash", [])
    if not isinstance(messages, list):
        messages = []
    flash = "".join(f'<p class="flash-message">{_e(m)}</p>' for m in messages)
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} - cookiesession demo</title><style>{_CSS}</style>"
        f"</head><body>{_nav(_user(session))}"
        f'<div id="flash">{flash}</div><main><h1>{_e(title)}</h1>{body}</main>'
        "</body></html>\n"
    )
    return HTMLResponse(document, headers=_HEADERS)


async def _body(request: Request) -> bytes:
    # Read at most _MAX_BODY bytes, whatever Content-Length claims.
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise HTTPException(413, "request body too large")
    return body


async def _form(request: Request) -> dict[str, str]:
    """The first value of each field of a url-encoded form."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != _FORM_TYPE:
        raise HTTPException(415, f"send the form as {_FORM_TYPE}")
    text = (await _body(request)).decode("utf-8", "replace")
    try:
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=16)
    except ValueError:
        raise HTTPException(400, "too many form fields") from None
    return {name: values[0] for name, values in fields.items()}


async def _json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; anything else is a 400 error."""
    try:
        value = json.loads(await _body(request))
    except ValueError:
        raise HTTPException(400, "the body must be JSON") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return value


def _clean_name(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    name = value.strip()
    return name if 0 < len(name) <= _MAX_NAME and name.isprintable() else None


def _sign_in(session: Session, username: str, *, remember: bool) -> None:
    """Start a fresh session for `username`, keeping an anonymous cart."""
    cart = _cart(session)
    # A new id at login: an id planted or seen before login is worthless, and
    # with a revocation store the old cookie stops working everywhere.
    session.regenerate()
    session["user"] = username
    session["login_at"] = int(time.time())
    session.subject = username
    if cart:
        session["cart"] = cart
    if remember:
        session.cookie.max_age = REMEMBER_ME


def _add_to_cart(session: Session, value: object) -> str | None:
    """Add an item; returns an error message, or None on success."""
    if not isinstance(value, str) or not 0 < len(value.strip()) <= _MAX_ITEM:
        return f"An item needs 1 to {_MAX_ITEM} characters."
    if len(_cart(session)) >= _MAX_CART:
        return f"The cart holds at most {_MAX_CART} items."
    if not isinstance(session.get("cart"), list):
        session["cart"] = []
    session["cart"].append(value.strip())
    return None


# -- HTML pages ---------------------------------------------------------------


async def home(request: Request) -> Response:
    """Home: who is signed in, and where to go."""
    session = _session(request)
    user = _user(session)
    if user is None:
        status = '<p id="status">Not signed in.</p>'
    else:
        status = (
            f'<p id="status">Signed in as <strong id="user">{_e(user)}</strong>.</p>'
        )
    body = (
        f"{status}<p>This session lives in an encrypted cookie. Sign in, fill the "
        "cart, store a big session, then sign out: a copy of the old cookie "
        "is refused afterwards, because the demo keeps a revocation list.</p>"
        "<p>JSON API: <code>GET /api/session</code>, <code>POST /api/login</code>, "
        "<code>POST /api/cart</code>, <code>POST /api/logout</code>, "
        "<code>POST /api/sign-out-everywhere</code>.</p>"
    )
    return _page(session, "Home", body)


async def login_form(request: Request) -> Response:
    """The sign-in form."""
    body = (
        '<p id="demo-note">Demo only: any user name with any non-empty password '
        "signs in. Nothing is checked against a user database.</p>"
        '<form id="login-form" method="post" action="/login">'
        '<label>User name <input name="username" maxlength="64" required '
        'autocomplete="username"></label>'
        '<label>Password <input name="password" type="password" required '
        'autocomplete="current-password"></label>'
        '<label><input name="remember" type="checkbox" value="yes"> '
        f"Remember me for {REMEMBER_ME // 86400} days</label>"
        '<button id="login-button" type="submit">Sign in</button></form>'
    )
    return _page(_session(request), "Sign in", body)


async def login(request: Request) -> Response:
    """Sign in from the form, then show the profile."""
    form = await _form(request)
    session = _session(request)
    username = _clean_name(form.get("username"))
    if username is None or not form.get("password"):
        _flash(
            session, f"Enter a user name (1 to {_MAX_NAME} characters) and a password."
        )
        return _redirect("/login")
    _sign_in(session, username, remember="remember" in form)
    _flash(session, f"Welcome, {username}!")
    return _redirect("/profile")


async def profile(request: Request) -> Response:
    """The signed-in user's page; anyone else is sent to sign in."""
    session = _session(request)
    user = _user(session)
    if user is None:
        _flash(session, "Please sign in to see your profile.")
        return _redirect("/login")
    if session.cookie.max_age == REMEMBER_ME:
        lifetime = f"remembered for {REMEMBER_ME // 86400} days"
    else:
        # Re-issued at half-time (refresh_after=0.5), so the last visit gives
        # between half and all of IDLE_TIMEOUT.
        lifetime = (
            f"ends {IDLE_TIMEOUT // 7200} to {IDLE_TIMEOUT // 3600} hours "
            "after the last visit"
        )
    body = (
        f'<p>User: <strong id="user">{_e(user)}</strong></p>'
        f'<p>Session id starts with <code id="session-id">{session.id[:8]}</code></p>'
        f'<p>Signed in at <span id="login-at">{_iso(session.get("login_at"))}</span>'
        f'; this session <span id="lifetime">{lifetime}</span>.</p>'
        '<form id="everywhere-form" method="post" action="/sign-out-everywhere">'
        '<button id="everywhere-button" type="submit">Sign out everywhere'
        "</button></form>"
    )
    return _page(session, "Profile", body)


async def cart(request: Request) -> Response:
    """The cart, with forms to add an item and to empty it."""
    session = _session(request)
    items = "".join(f"<li>{_e(item)}</li>" for item in _cart(session))
    empty = "" if items else '<p id="cart-empty">The cart is empty.</p>'
    body = (
        f'<ul id="cart-items">{items}</ul>{empty}'
        '<form id="cart-form" method="post" action="/cart/add">'
        f'<label>Item <input name="item" maxlength="{_MAX_ITEM}" required></label>'
        '<button id="add-button" type="submit">Add</button></form>'
        '<form id="clear-form" method="post" action="/cart/clear">'
        '<button id="clear-button" type="submit">Empty the cart</button></form>'
    )
    return _page(session, "Cart", body)


async def cart_add(request: Request) -> Response:
    """Add the form's `item` to the cart."""
    form = await _form(request)
    session = _session(request)
    error = _add_to_cart(session, form.get("item"))
    if error is not None:
        _flash(session, error)
    return _redirect("/cart")


async def cart_clear(request: Request) -> Response:
    """Empty the cart."""
    session = _session(request)
    session.pop("cart", None)
    _flash(session, "The cart is empty now.")
    return _redirect("/cart")


async def logout(request: Request) -> Response:
    """Sign out: the old session is destroyed, and revoked with a store."""
    session = _session(request)
    session.destroy()
    # Written after destroy(): this starts a new, anonymous session that
    # only carries the message.
    _flash(session, "Signed out.")
    return _redirect("/")


async def sign_out_everywhere(request: Request) -> Response:
    """Sign this user out of every session, on every device."""
    session = _session(request)
    if _user(session) is None:
        return _redirect("/login")
    session.sign_out_everywhere()
    if request.app.state.revocation:
        _flash(session, "Signed out on every device.")
    else:
        _flash(
            session, "Signed out here. Without a revocation store, other copies last."
        )
    return _redirect("/")


async def big_page(request: Request) -> Response:
    """Size and checksum of the big value, if one is stored."""
    session = _session(request)
    value = session.get("big")
    if isinstance(value, bytes):
        digest = hashlib.sha256(value).hexdigest()
        state = (
            f'<p>Stored: <span id="big-size">{len(value)}</span> bytes, SHA-256 '
            f'<code id="big-sha256">{digest}</code></p>'
        )
    else:
        state = '<p id="big-none">Nothing stored.</p>'
    body = (
        f"{state}<p>{BIG_SIZE} random bytes do not fit one cookie, so the "
        "session is split over several (<code>session.0</code>, "
        "<code>session.1</code>, ...).</p>"
        '<form id="big-form" method="post" action="/big">'
        '<button id="big-button" type="submit">Store a big session</button></form>'
        '<form id="big-clear-form" method="post" action="/big/clear">'
        '<button id="big-clear-button" type="submit">Remove it</button></form>'
    )
    return _page(session, "Big session", body)


async def big_store(request: Request) -> Response:
    """Store BIG_SIZE random bytes in the session."""
    session = _session(request)
    value = os.urandom(BIG_SIZE)
    session["big"] = value
    _flash(
        session,
        f"Stored {len(value)} bytes, SHA-256 {hashlib.sha256(value).hexdigest()}.",
    )
    return _redirect("/big")


async def big_clear(request: Request) -> Response:
    """Remove the big value; the extra cookies are cleared."""
    session = _session(request)
    session.pop("big", None)
    return _redirect("/big")


# -- JSON API -----------------------------------------------------------------


def _state(session: Session) -> dict[str, Any]:
    return {
        "user": _user(session),
        "cart": _cart(session),
        "is_new": session.is_new,
        "remember": session.cookie.max_age == REMEMBER_ME,
    }


async def api_session(request: Request) -> Response:
    """The session as JSON: user, cart, whether it is new."""
    return JSONResponse(_state(_session(request)), headers=_HEADERS)


async def api_login(request: Request) -> Response:
    """Sign in from `{"username": str, "remember": bool}` (demo: no password)."""
    body = await _json_object(request)
    username = _clean_name(body.get("username"))
    remember = body.get("remember", False)
    if username is None or not isinstance(remember, bool):
        return JSONResponse(
            {"error": f"username: 1 to {_MAX_NAME} characters; remember: a bool"},
            status_code=400,
        )
    session = _session(request)
    _sign_in(session, username, remember=remember)
    return JSONResponse(_state(session), headers=_HEADERS)


async def api_cart(request: Request) -> Response:
    """Add `{"item": str}` to the cart."""
    body = await _json_object(request)
    session = _session(request)
    error = _add_to_cart(session, body.get("item"))
    if error is not None:
        return JSONResponse({"error": error}, status_code=400)
    return JSONResponse(_state(session), headers=_HEADERS)


async def api_logout(request: Request) -> Response:
    """Sign out; the old session is revoked when a store is configured."""
    _session(request).destroy()
    return JSONResponse({"signed_out": True}, headers=_HEADERS)


async def api_sign_out_everywhere(request: Request) -> Response:
    """Revoke every session of the signed-in user (needs a revocation store)."""
    session = _session(request)
    if _user(session) is None:
        return JSONResponse({"error": "not signed in"}, status_code=401)
    session.sign_out_everywhere()
    everywhere = bool(request.app.state.revocation)
    return JSONResponse(
        {"signed_out": True, "everywhere": everywhere}, headers=_HEADERS
    )


class _SameOriginWrites:
    """Refuse unsafe-method requests from other origins, before any session.

    Browsers send `Sec-Fetch-Site` (Fetch Metadata) and `Origin` on POSTs;
    either one naming another origin gets a 403, so neither the handler nor
    the session middleware runs and no cookie is set.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in _SAFE_METHODS:
            headers = Headers(scope=scope)
            site = headers.get("sec-fetch-site")
            origin = headers.get("origin")
            expected = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            if (site is not None and site not in ("same-origin", "none")) or (
                origin is not None and origin != expected
            ):
                response = PlainTextResponse("cross-origin request refused", 403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    secret: SecretLike | Iterable[SecretLike] | KeyRing,
    *,
    revocation: RevocationStore | None = None,
    secure: bool | Literal["auto"] = "auto",
) -> Starlette:
    """The demo app, wrapped in `SessionMiddleware`.

    Args:
        secret: a key, a list of keys (the first encrypts, every one
            decrypts), or a `KeyRing`.
        revocation: a revocation store; without one, sign-out clears the
            cookie but a copy of it stays valid until it expires.
        secure: the cookie's Secure attribute; "auto" sets it on https only.
    """
    middleware = [
        Middleware(_SameOriginWrites),
        Middleware(
            SessionMiddleware,
            secret=secret,
            cookie=CookieOptions(max_age=IDLE_TIMEOUT, secure=secure),
            # Re-issue an active session's cookie once half its idle time has
            # passed, so the idle timeout slides with use.
            refresh_after=0.5,
            revocation=revocation,
        ),
    ]
    app = Starlette(routes=_routes(), middleware=middleware)
    app.state.revocation = revocation is not None
    return app


def _routes() -> list[Route]:
    """The demo's pages and JSON endpoints, without any middleware."""
    return [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/profile", profile),
        Route("/cart", cart),
        Route("/cart/add", cart_add, methods=["POST"]),
        Route("/cart/clear", cart_clear, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/sign-out-everywhere", sign_out_everywhere, methods=["POST"]),
        Route("/big", big_page, methods=["GET"]),
        Route("/big", big_store, methods=["POST"]),
        Route("/big/clear", big_clear, methods=["POST"]),
        Route("/api/session", api_session),
        Route("/api/login", api_login, methods=["POST"]),
        Route("/api/cart", api_cart, methods=["POST"]),
        Route("/api/logout", api_logout, methods=["POST"]),
        Route("/api/sign-out-everywhere", api_sign_out_everywhere, methods=["POST"]),
    ]
