"""Sign-in, profile, cart, flash messages and sign-out with Starlette.

Run it with a key (or without, for a throwaway one):

    export COOKIESESSION_KEYS=$(python -m cookiesession keygen)
    uvicorn examples.starlette_app:app

The whole session lives in the encrypted cookie; the in-memory revocation
store only remembers signed-out sessions, so an old cookie stops working.
"""

from __future__ import annotations

import html
import os
import sys
import time
from typing import cast
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from cookiesession import (
    KeyRing,
    MemoryRevocationStore,
    Session,
    SessionMiddleware,
    generate_key,
)

REMEMBER_ME = 30 * 24 * 3600  # seconds


def load_keys() -> KeyRing:
    """Keys from COOKIESESSION_KEYS, or a throwaway key with a warning."""
    if os.environ.get("COOKIESESSION_KEYS", "").strip():
        return KeyRing.from_env()
    print(
        "WARNING: COOKIESESSION_KEYS is not set; using a temporary key, so "
        "every session ends when the server restarts.",
        file=sys.stderr,
    )
    return KeyRing(generate_key())


def session_of(request: Request) -> Session:
    """`request.session` with its real type, for regenerate() and destroy()."""
    return cast(Session, request.session)


def flash(request: Request, message: str) -> None:
    """Queue a message for the next page shown."""
    session_of(request).setdefault("flash", []).append(message)


def page(request: Request, body: str) -> HTMLResponse:
    """Wrap `body` in a page that shows (and so removes) queued messages."""
    messages = session_of(request).pop("flash", [])
    notes = "".join(f"<p class='flash'>{html.escape(m)}</p>" for m in messages)
    nav = "<a href='/'>Home</a> <a href='/profile'>Profile</a> <a href='/cart'>Cart</a>"
    return HTMLResponse(
        f"<!doctype html><nav>{nav}</nav><div id='flash'>{notes}</div>{body}"
    )


async def form_of(request: Request) -> dict[str, str]:
    """A url-encoded form body, parsed without a multipart library."""
    text = (await request.body()).decode(errors="replace")
    fields = parse_qs(text, max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}


async def home(request: Request) -> Response:
    """Who is signed in."""
    user = request.session.get("user")
    if user is None:
        return page(request, "<p>Not signed in. <a href='/login'>Sign in</a></p>")
    logout = "<form method='post' action='/logout'><button>Sign out</button></form>"
    return page(request, f"<p id='user'>{html.escape(user)}</p>{logout}")


async def login_form(request: Request) -> Response:
    """The sign-in form; this example accepts any non-empty password."""
    return page(
        request,
        "<form id='login-form' method='post' action='/login'>"
        "<input name='username' required> <input name='password' type='password' "
        "required> <label><input name='remember' type='checkbox'> Remember me"
        "</label> <button>Sign in</button></form>",
    )


async def login(request: Request) -> Response:
    """Check the form, then start a new session for the user."""
    form = await form_of(request)
    username = form.get("username", "").strip()
    # Replace with a real password check.
    if not username or not form.get("password"):
        flash(request, "User name and password, please.")
        return RedirectResponse("/login", status_code=303)
    session = session_of(request)
    # A new session id at login defeats session fixation.
    session.regenerate()
    session["user"] = username
    session["login_at"] = int(time.time())
    session.subject = username  # enables sign_out_everywhere()
    if "remember" in form:
        session.cookie.max_age = REMEMBER_ME
    flash(request, f"Welcome, {username}!")
    return RedirectResponse("/profile", status_code=303)


async def profile(request: Request) -> Response:
    """Signed-in users only."""
    user = request.session.get("user")
    if user is None:
        flash(request, "Please sign in first.")
        return RedirectResponse("/login", status_code=303)
    return page(request, f"<h1>Profile</h1><p id='user'>{html.escape(user)}</p>")


async def cart(request: Request) -> Response:
    """Show the cart; POST adds the form's item."""
    session = session_of(request)
    if request.method == "POST":
        item = (await form_of(request)).get("item", "").strip()[:100]
        if item:
            # An in-place change: the middleware notices it and saves.
            session.setdefault("cart", []).append(item)
        return RedirectResponse("/cart", status_code=303)
    items = "".join(f"<li>{html.escape(i)}</li>" for i in session.get("cart", []))
    return page(
        request,
        f"<ul id='cart-items'>{items}</ul><form method='post' action='/cart'>"
        "<input name='item' required> <button>Add</button></form>",
    )


async def logout(request: Request) -> Response:
    """End the session; its cookie is refused from now on."""
    session_of(request).destroy()
    flash(request, "Signed out.")  # starts a new, anonymous session
    return RedirectResponse("/", status_code=303)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/profile", profile),
        Route("/cart", cart, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ],
    middleware=[
        Middleware(
            SessionMiddleware, secret=load_keys(), revocation=MemoryRevocationStore()
        )
    ],
)
