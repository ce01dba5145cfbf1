"""Damaged cookies at the HTTP level: never an error, never someone's data."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from cookiesession import SessionMiddleware, generate_key

ALPHABET = string.ascii_letters + string.digits + "-_"


async def view(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


async def login(request: Request) -> JSONResponse:
    request.session["user"] = "alice"
    return JSONResponse({})


app = Starlette(routes=[Route("/", view), Route("/login", login)])
app.add_middleware(SessionMiddleware, secret=generate_key())
CLIENT = TestClient(app)
GOOD = CLIENT.get("/login").headers["set-cookie"].split(";")[0].split("=", 1)[1]
CLIENT.cookies.clear()
SLOW = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


def request_with(value: str) -> tuple[int, dict[str, object], list[str]]:
    response = CLIENT.get("/", headers={"cookie": f"session={value}"})
    lines = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    return response.status_code, response.json(), lines


def test_the_untouched_cookie_is_accepted() -> None:
    assert request_with(GOOD)[1] == {"user": "alice"}


@settings(max_examples=150, suppress_health_check=SLOW)
@given(st.integers(min_value=0), st.sampled_from(ALPHABET))
def test_changed_character_gives_empty_session_and_clears(
    position: int, replacement: str
) -> None:
    index = position % len(GOOD)
    if GOOD[index] == replacement:
        return
    status, body, lines = request_with(GOOD[:index] + replacement + GOOD[index + 1 :])
    assert status == 200
    assert body == {}
    assert len(lines) == 1
    assert lines[0].startswith("session=;")


@settings(max_examples=100, suppress_health_check=SLOW)
@given(st.integers(min_value=0, max_value=len(GOOD) - 1))
def test_truncated_cookie_gives_empty_session(length: int) -> None:
    status, body, _ = request_with(GOOD[:length])
    assert (status, body) == (200, {})


@settings(max_examples=100, suppress_health_check=SLOW)
@given(st.text(alphabet=ALPHABET, min_size=1, max_size=50))
def test_extended_cookie_gives_empty_session(suffix: str) -> None:
    status, body, _ = request_with(GOOD + suffix)
    assert (status, body) == (200, {})


@settings(max_examples=150, suppress_health_check=SLOW)
@given(
    st.text(
        alphabet=st.characters(
            min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";"
        ),
        max_size=400,
    )
)
def test_arbitrary_cookie_text_gives_empty_session(value: str) -> None:
    status, body, _ = request_with(value)
    assert (status, body) == (200, {})
