"""Type-checked by `mypy --strict` (tests/test_examples.py runs it); never run.

The first half must pass as it is. Each line of `misuse` is a mistake that
mypy must report: strict mode turns on `warn_unused_ignores`, so a
`type: ignore[code]` that silences nothing fails the check, and every
ignore below proves that the mistake is caught, with that error code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypedDict, cast

from cookiesession import Session


class UserSession(TypedDict, total=False):
    user: str
    login_at: int
    cart: list[str]


def typed(session: dict[str, Any]) -> UserSession:
    return cast(UserSession, session)


def sign_in(session: Session, name: str, *, remember: bool) -> UserSession:
    session.regenerate()
    session.subject = name
    if remember:
        session.cookie.max_age = timedelta(days=30)
    data = typed(session)
    data["user"] = name
    data["login_at"] = 1_767_225_600
    data.setdefault("cart", []).append("book")
    return data


def cart_size(data: UserSession) -> int:
    return len(data.get("cart", []))


def user_name(data: UserSession) -> str | None:
    return data.get("user")


def misuse(data: UserSession, session: Session) -> None:
    data["user"] = 42  # type: ignore[typeddict-item]
    data["usr"] = "alice"  # type: ignore[typeddict-unknown-key]
    data.setdefault("cart", []).append(3)  # type: ignore[arg-type]
    login_at: str = data["login_at"]  # type: ignore[assignment]
    session.subject = 7  # type: ignore[assignment]
    session.cookie.max_age = "30 days"  # type: ignore[assignment]
    del login_at
