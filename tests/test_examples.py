"""The example apps: each flow through TestClient, and their typing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient

from cookiesession import generate_key

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REMEMBER_ME = 30 * 24 * 3600


def load(name: str, monkeypatch: pytest.MonkeyPatch, *, key: bool = True) -> ModuleType:
    """A fresh copy of an example module: its own app, key and store."""
    if key:
        monkeypatch.setenv("COOKIESESSION_KEYS", generate_key())
    else:
        monkeypatch.delenv("COOKIESESSION_KEYS", raising=False)
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs: pydantic and FastAPI resolve the module's
    # postponed annotations through sys.modules.
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_examples_and_the_typed_session_pattern_pass_mypy_strict() -> None:
    # tests/typing_check.py holds deliberate mistakes under coded
    # `type: ignore`s; strict mode fails on an unused one, so a pass proves
    # that mypy reports each mistake.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "tests/typing_check.py",
            "examples/",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_example_without_keys_warns_and_uses_a_temporary_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load("starlette_app", monkeypatch, key=False)
    assert "WARNING: COOKIESESSION_KEYS is not set" in capsys.readouterr().err
    assert TestClient(module.app).get("/").status_code == 200


def test_starlette_example_full_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    client = TestClient(load("starlette_app", monkeypatch).app)

    response = client.get("/profile", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert "Please sign in first." in client.get("/login").text

    form = {"username": "alice", "password": "pw", "remember": "on"}
    response = client.post("/login", data=form, follow_redirects=False)
    assert response.headers["location"] == "/profile"
    assert f"; Max-Age={REMEMBER_ME};" in response.headers["set-cookie"]
    profile = client.get("/profile").text
    assert "<p id='user'>alice</p>" in profile
    assert "Welcome, alice!" in profile
    assert "Welcome" not in client.get("/profile").text

    client.post("/cart", data={"item": "tea"})
    client.post("/cart", data={"item": "<cake>"})
    assert "<ul id='cart-items'><li>tea</li><li>&lt;cake&gt;</li></ul>" in (
        client.get("/cart").text
    )

    before_logout = client.cookies["session"]
    home = client.post("/logout").text
    assert "Signed out." in home
    assert "Not signed in" in home
    assert client.get("/profile", follow_redirects=False).status_code == 303

    replay = TestClient(client.app, headers={"cookie": f"session={before_logout}"})
    assert "Not signed in" in replay.get("/").text


def test_starlette_example_refuses_an_empty_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = TestClient(load("starlette_app", monkeypatch).app)
    page = client.post("/login", data={"username": "alice", "password": ""})
    assert "User name and password, please." in page.text
    assert "Not signed in" in client.get("/").text


def test_fastapi_example_full_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    client = TestClient(load("fastapi_app", monkeypatch).app)

    assert client.get("/profile").status_code == 401
    credentials = {"username": "alice", "password": "pw", "remember": True}
    response = client.post("/login", json=credentials)
    assert response.json() == {"user": "alice", "remember": True}
    assert f"; Max-Age={REMEMBER_ME};" in response.headers["set-cookie"]
    assert client.get("/").json() == {"user": "alice", "flash": ["Welcome, alice!"]}
    assert client.get("/").json() == {"user": "alice", "flash": []}
    assert client.get("/profile").json()["user"] == "alice"

    assert client.post("/cart", json={"item": "tea"}).json() == ["tea"]
    assert client.post("/cart", json={"item": "cake"}).json() == ["tea", "cake"]
    assert client.get("/cart").json() == ["tea", "cake"]

    before_logout = client.cookies["session"]
    assert client.post("/logout").json() == {"signed_out": True}
    assert client.get("/").json() == {"user": None, "flash": ["Signed out."]}
    assert client.get("/profile").status_code == 401

    replay = TestClient(client.app, headers={"cookie": f"session={before_logout}"})
    assert replay.get("/profile").status_code == 401


def test_fastapi_example_validates_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    client = TestClient(load("fastapi_app", monkeypatch).app)
    assert client.post("/login", json={"username": "alice"}).status_code == 422
    assert (
        client.post("/login", json={"username": "", "password": "x"}).status_code == 422
    )
    assert client.post("/cart", json={"item": ""}).status_code == 422
    assert "session" not in client.cookies


def test_fastapi_example_without_remember_me_uses_the_default_lifetime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = TestClient(load("fastapi_app", monkeypatch).app)
    response = client.post("/login", json={"username": "bob", "password": "pw"})
    assert "; Max-Age=1209600;" in response.headers["set-cookie"]


def test_typed_session_example_counts_visits(monkeypatch: pytest.MonkeyPatch) -> None:
    client = TestClient(load("typed_session", monkeypatch).app)
    for number in (1, 2, 3):
        assert client.get("/").text == f"visit number {number}\n"
