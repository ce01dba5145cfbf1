"""The command line: keygen, rotate, inspect, demo start-up."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from cookiesession import (
    KeyRing,
    Payload,
    Session,
    SessionMiddleware,
    TokenCodec,
    generate_key,
)
from cookiesession._cli import main

KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")
ENV = "COOKIESESSION_KEYS"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def cookie_from_middleware(key: str, data: dict[str, Any]) -> tuple[str, str]:
    """A cookie sealed by the real middleware: (Cookie header, session id)."""

    async def fill(request: Request) -> Response:
        session: Session = request.scope["session"]
        session.update(data)
        session.subject = "alice"
        session.cookie.max_age = 3600
        return JSONResponse({"id": session.id})

    app = Starlette(routes=[Route("/", fill)])
    app.add_middleware(SessionMiddleware, secret=key)
    response = TestClient(app).get("/")
    pairs = [line.split(";", 1)[0] for line in response.headers.get_list("set-cookie")]
    return "; ".join(pairs), response.json()["id"]


def sealed(key: str, **changes: Any) -> str:
    """A token made with TokenCodec directly, valid for an hour by default."""
    now = int(time.time())
    fields: dict[str, Any] = {
        "session_id": bytes(range(16)),
        "issued_at_ms": now * 1000,
        "absolute_expiry": now + 3600,
        "idle_expiry": None,
        "data": {"user": "alice"},
    }
    fields.update(changes)
    return TokenCodec(KeyRing(key), "session").seal(Payload(**fields))


def data_of(out: str) -> Any:
    return json.loads(out.split("\ndata:\n", 1)[1])


# -- keygen -------------------------------------------------------------------


def test_keygen_prints_one_new_key(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "keygen")
    assert (status, err) == (0, "")
    assert KEY_TEXT.fullmatch(out.rstrip("\n"))
    assert out.count("\n") == 1
    assert run(capsys, "keygen")[1] != out
    KeyRing(out.strip())


# -- rotate -------------------------------------------------------------------


def test_rotate_puts_a_new_key_first_and_keeps_the_old_ones(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [generate_key(), generate_key()]
    monkeypatch.setenv(ENV, ",".join(old))
    status, out, err = run(capsys, "rotate")
    assert (status, err) == (0, "")
    keys = out.strip().split(",")
    assert len(keys) == 3
    assert keys[1:] == old
    assert KEY_TEXT.fullmatch(keys[0])
    assert keys[0] not in old


def test_rotate_reads_whitespace_separated_keys_from_the_named_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [generate_key(), generate_key()]
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("APP_KEYS", f" {old[0]}\n {old[1]} ")
    status, out, _ = run(capsys, "rotate", "--env", "APP_KEYS")
    assert status == 0
    assert out.strip().split(",")[1:] == old


def test_rotate_keep_drops_the_oldest_keys(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [generate_key() for _ in range(3)]
    monkeypatch.setenv(ENV, ",".join(old))
    status, out, _ = run(capsys, "rotate", "--keep", "2")
    assert status == 0
    keys = out.strip().split(",")
    assert len(keys) == 2
    assert keys[1] == old[0]
    assert run(capsys, "rotate", "--keep", "0")[0] == 2


@pytest.mark.parametrize("value", [None, "", " , "])
def test_rotate_without_keys_fails(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
) -> None:
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    status, out, err = run(capsys, "rotate")
    assert (status, out) == (1, "")
    assert f"environment variable {ENV} holds no key" in err


def test_rotate_refuses_a_key_listed_twice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    monkeypatch.setenv(ENV, f"{key},{key}")
    status, out, err = run(capsys, "rotate")
    assert (status, out) == (1, "")
    assert "duplicates" in err
    assert key not in err


# -- inspect ------------------------------------------------------------------


def test_inspect_opens_a_cookie_set_by_the_middleware(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    data = {"user": "alice", "cart": ["tea", "cake"], "blob": b"\x00\xff"}
    header, session_id = cookie_from_middleware(key, data)
    monkeypatch.setenv(ENV, key)

    token = header.split("=", 1)[1]
    for argument in (token, header, f"Cookie: {header}"):
        status, out, err = run(capsys, "inspect", argument)
        assert (status, err) == (0, "")
        assert f"key id:      {KeyRing(key).primary.id.hex()} (key 1 of 1" in out
        assert f"session id:  {session_id}\n" in out
        assert 'subject:     "alice"\n' in out
        assert 'cookie:      {"max_age": 3600}\n' in out
        assert "stale key:   no\n" in out
        assert re.search(r"issued at:   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", out)
        assert data_of(out) == {
            "user": "alice",
            "cart": ["tea", "cake"],
            "blob": {"$base64": base64.b64encode(b"\x00\xff").decode()},
        }


def test_inspect_joins_chunked_cookies_in_numeric_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    # More than ten chunks, so that name.10 sorts before name.2 as text; more
    # than sixteen, the token codec's own default bound, which the
    # middleware's default of 24 chunks exceeds.
    big = bytes(range(256)) * 200
    header, session_id = cookie_from_middleware(key, {"big": big})
    pairs = header.split("; ")
    assert len(pairs) > 16
    assert pairs[0].startswith("session.0=")
    monkeypatch.setenv(ENV, key)

    shuffled = "; ".join(reversed(pairs))
    status, out, err = run(capsys, "inspect", shuffled)
    assert (status, err) == (0, "")
    assert f"session id:  {session_id}\n" in out
    assert base64.b64decode(data_of(out)["big"]["$base64"]) == big

    gap = "; ".join(pair for pair in pairs if not pair.startswith("session.3="))
    assert run(capsys, "inspect", gap)[:3] == (1, "", "rejected: malformed\n")


def test_inspect_reads_the_cookie_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    monkeypatch.setenv(ENV, key)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"session={sealed(key)}\n"))
    status, out, _ = run(capsys, "inspect", "-")
    assert status == 0
    assert data_of(out) == {"user": "alice"}


def test_inspect_marks_a_cookie_sealed_with_an_older_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = generate_key(), generate_key()
    monkeypatch.setenv(ENV, f"{new},{old}")
    status, out, _ = run(capsys, "inspect", sealed(old))
    assert status == 0
    assert f"key id:      {KeyRing(old).primary.id.hex()} (key 2 of 2 in {ENV})" in out
    assert "stale key:   yes" in out


def tampered(token: str) -> str:
    middle = len(token) // 2
    flipped = "B" if token[middle] == "A" else "A"
    return token[:middle] + flipped + token[middle + 1 :]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda key: tampered(sealed(key)), "tampered"),
        (lambda key: sealed(key, absolute_expiry=int(time.time()) - 1), "expired"),
        (lambda key: sealed(generate_key()), "unknown-key"),
        (lambda key: sealed(key) + "!", "malformed"),
    ],
    ids=["tampered", "expired", "unknown-key", "malformed"],
)
def test_inspect_reports_why_a_cookie_is_rejected(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make: Any,
    reason: str,
) -> None:
    key = generate_key()
    monkeypatch.setenv(ENV, key)
    status, out, err = run(capsys, "inspect", make(key))
    assert (status, out, err) == (1, "", f"rejected: {reason}\n")


def test_inspect_binds_the_cookie_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    monkeypatch.setenv(ENV, key)
    token = sealed(key)
    # The name is part of the associated data: another name does not open.
    assert run(capsys, "inspect", token, "--name", "other")[2] == "rejected: tampered\n"
    status, _, err = run(capsys, "inspect", f"other={token}", "--name", "other")
    assert err == "rejected: tampered\n"
    status, out, err = run(capsys, "inspect", "theme=dark; lang=en")
    assert (status, out) == (1, "")
    assert "no cookie named session" in err


def test_inspect_needs_keys(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    status, out, err = run(capsys, "inspect", "abc")
    assert (status, out) == (1, "")
    assert ENV in err


def test_inspect_logs_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = generate_key()
    monkeypatch.setenv(ENV, key)
    caplog.set_level(logging.DEBUG)
    run(capsys, "inspect", sealed(key))
    run(capsys, "inspect", tampered(sealed(key)))
    assert caplog.records == []


# -- help and usage -------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["demo"], ["keygen"], ["rotate"], ["inspect"]])
def test_every_command_has_help(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    status, out, _ = run(capsys, *command, "--help")
    assert status == 0
    assert out.startswith(f"usage: cookiesession {' '.join(command)}".rstrip())


@pytest.mark.parametrize(
    "argv", [[], ["nope"], ["rotate", "--keep", "x"], ["demo", "--port", "70000"]]
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert "usage: cookiesession" in err


def test_python_dash_m_runs_the_same_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cookiesession", "keygen"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert KEY_TEXT.fullmatch(done.stdout.strip())


# -- demo -----------------------------------------------------------------------


class FakeUvicorn:
    """Stands in for `uvicorn.run`, recording what it was asked to serve."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def run(self, app: object, **options: Any) -> None:
        self.calls.append({"app": app, **options})


@pytest.fixture
def uvicorn(monkeypatch: pytest.MonkeyPatch) -> FakeUvicorn:
    fake = FakeUvicorn()
    monkeypatch.setitem(sys.modules, "uvicorn", fake)
    return fake


def test_demo_without_a_key_warns_that_sessions_end_on_restart(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uvicorn: FakeUvicorn,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    status, out, _ = run(capsys, "demo", "--port", "8123")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "cookiesession demo: http://127.0.0.1:8123/"
    key = lines[1].removeprefix("development key: ")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)
    assert lines[2].startswith("WARNING: no key given")
    assert "changes on every restart" in lines[2]
    assert lines[3] == "revocation: in memory (this process only)"
    (call,) = uvicorn.calls
    assert (call["host"], call["port"]) == ("127.0.0.1", 8123)
    assert isinstance(call["app"], Starlette)


def test_demo_prints_the_key_it_uses_so_it_can_be_passed_back(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uvicorn: FakeUvicorn,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    _, out, _ = run(capsys, "demo")
    key = out.splitlines()[1].removeprefix("development key: ")
    sealed = TestClient(uvicorn.calls[0]["app"]).post(
        "/api/login", json={"username": "alice"}
    )
    token = sealed.cookies["session"]
    opened = TokenCodec(KeyRing(key), "session").open(token)
    assert opened.payload.data["user"] == "alice"


def test_demo_takes_keys_from_the_environment_then_from_key(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uvicorn: FakeUvicorn,
) -> None:
    env_key, flag_key = generate_key(), generate_key()
    monkeypatch.setenv(ENV, env_key)
    _, out, _ = run(capsys, "demo")
    assert f"keys: 1 from {ENV} (current key id " in out
    assert KeyRing(env_key).primary.id.hex() in out
    assert "WARNING" not in out
    assert env_key not in out

    _, out, _ = run(capsys, "demo", "--key", flag_key)
    assert (
        f"keys: from --key (current key id {KeyRing(flag_key).primary.id.hex()})" in out
    )
    assert flag_key not in out


def test_demo_warns_when_listening_beyond_loopback(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uvicorn: FakeUvicorn,
) -> None:
    monkeypatch.setenv(ENV, generate_key())
    _, out, _ = run(capsys, "demo", "--host", "0.0.0.0")
    assert "WARNING: listening on 0.0.0.0" in out
    _, out, _ = run(capsys, "demo", "--host", "::1")
    assert "http://[::1]:8000/" in out
    assert "WARNING" not in out


def test_demo_with_redis_hides_the_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uvicorn: FakeUvicorn,
) -> None:
    pytest.importorskip("redis")
    monkeypatch.setenv(ENV, generate_key())
    url = "redis://user:hunter2@127.0.0.1:6379/0"
    status, out, _ = run(capsys, "demo", "--redis", url)
    assert status == 0
    assert "revocation: Redis at redis://user:***@127.0.0.1:6379/0\n" in out
    assert "hunter2" not in out

    # redis-py also reads a password from the query string.
    _, out, _ = run(capsys, "demo", "--redis", "redis://[::1]/0?password=hunter2")
    assert "revocation: Redis at redis://[::1]/0?***\n" in out
    assert "hunter2" not in out


def test_demo_refuses_a_bad_key(
    capsys: pytest.CaptureFixture[str], uvicorn: FakeUvicorn
) -> None:
    key = generate_key()
    status, out, err = run(capsys, "demo", "--key", f"{key},{key}")
    assert (status, out) == (1, "")
    assert "duplicates" in err
    assert uvicorn.calls == []


def test_demo_without_uvicorn_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import uvicorn` raise ImportError.
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    status, out, err = run(capsys, "demo")
    assert (status, out) == (2, "")
    assert "pip install 'cookiesession[demo]'" in err
