"""Sign-in, profile, cart, flash messages and sign-out as a FastAPI JSON API.

Run it with a key (or without, for a throwaway one):

    export COOKIESESSION_KEYS=$(python -m cookiesession keygen)
    uvicorn examples.fastapi_app:app

Session contents are typed with a `TypedDict`: the `typed_session`
dependency returns the session as a `UserSession`, so mypy checks every key
and value type in the handlers. The cast is a promise, not a check: data is
only what this app wrote, but an older release of the app may have written
other shapes, so read defensively where that matters.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Any, TypedDict, cast

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from cookiesession import (
    KeyRing,
    MemoryRevocationStore,
    Session,
    SessionMiddleware,
    generate_key,
)

REMEMBER_ME = 30 * 24 * 3600  # seconds


class UserSession(TypedDict, total=False):
    """What this app keeps in the session; total=False: any key may be absent."""

    user: str
    login_at: int
    cart: list[str]
    flash: list[str]


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
    """The session object itself, for regenerate(), destroy(), cookie..."""
    return cast(Session, request.session)


def typed_session(request: Request) -> UserSession:
    """The same session, typed: keys and value types checked by mypy."""
    return cast(UserSession, request.session)


RawSession = Annotated[Session, Depends(session_of)]
Data = Annotated[UserSession, Depends(typed_session)]


def current_user(data: Data) -> str:
    """The signed-in user's name; 401 for everyone else."""
    user = data.get("user")
    if user is None:
        raise HTTPException(status_code=401, detail="sign in first")
    return user


User = Annotated[str, Depends(current_user)]


class Login(BaseModel):
    """The sign-in body; this example accepts any non-empty password."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1)
    remember: bool = False


class Item(BaseModel):
    """One cart item."""

    item: str = Field(min_length=1, max_length=100)


app = FastAPI()
app.add_middleware(
    SessionMiddleware, secret=load_keys(), revocation=MemoryRevocationStore()
)


@app.get("/")
async def home(data: Data) -> dict[str, Any]:
    """Who is signed in, and the messages queued since (shown once)."""
    return {"user": data.get("user"), "flash": data.pop("flash", [])}


@app.post("/login")
async def login(body: Login, session: RawSession, data: Data) -> dict[str, Any]:
    """Start a new session for the user (replace the password check)."""
    # A new session id at login defeats session fixation; `data` is the same
    # object, now empty.
    session.regenerate()
    data["user"] = body.username
    data["login_at"] = int(time.time())
    session.subject = body.username  # enables sign_out_everywhere()
    if body.remember:
        session.cookie.max_age = REMEMBER_ME
    data["flash"] = [f"Welcome, {body.username}!"]
    return {"user": body.username, "remember": body.remember}


@app.get("/profile")
async def profile(user: User, data: Data) -> dict[str, Any]:
    """Signed-in users only."""
    return {"user": user, "login_at": data.get("login_at")}


@app.get("/cart")
async def cart(data: Data) -> list[str]:
    """The cart's items."""
    return data.get("cart", [])


@app.post("/cart")
async def add_to_cart(body: Item, data: Data) -> list[str]:
    """Add an item; the in-place change is noticed and saved."""
    items = data.setdefault("cart", [])
    items.append(body.item)
    return items


@app.post("/logout")
async def logout(session: RawSession, data: Data) -> dict[str, bool]:
    """End the session; its cookie is refused from now on."""
    session.destroy()
    data["flash"] = ["Signed out."]  # starts a new, anonymous session
    return {"signed_out": True}
