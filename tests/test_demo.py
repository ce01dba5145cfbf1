"""The demo site: every flow through TestClient, and once over real HTTP."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from cookiesession import MemoryRevocationStore, generate_key
from cookiesession._demo import BIG_SIZE, IDLE_TIMEOUT, REMEMBER_ME, create_app
from tests.live_server import free_port, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
LINE_LIMIT = 4096  # RFC 6265bis section 5.7, "Set-Cookie: " included


def client(*, revocation: bool = True) -> TestClient:
    store = MemoryRevocationStore() if revocation else None
    return TestClient(create_app(generate_key(), revocation=store))


def flash_of(response: httpx.Response) -> list[str]:
    found = re.search(r'<div id="flash">(.*?)</div>', response.text)
    assert found is not None, "every page has a #flash container"
    return [html.unescape(m) for m in re.findall(r"<p[^>]*>(.*?)</p>", found.group(1))]


def cart_of(response: httpx.Response) -> list[str]:
    found = re.search(r'<ul id="cart-items">(.*?)</ul>', response.text)
    assert found is not None
    return [html.unescape(m) for m in re.findall(r"<li>(.*?)</li>", found.group(1))]


def user_of(response: httpx.Response) -> str | None:
    found = re.search(r'id="user">(.*?)<', response.text)
    return None if found is None else html.unescape(found.group(1))


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def sign_in(
    c: TestClient | httpx.Client, name: str = "alice", **extra: str
) -> httpx.Response:
    form = {"username": name, "password": "any password", **extra}
    response = c.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/profile"
    return response


def client_with_cookie(c: TestClient, cookie: str) -> TestClient:
    """A second client of the same app, holding only `cookie`."""
    return TestClient(c.app, headers={"cookie": f"session={cookie}"})


def test_full_flow_sign_in_profile_cart_flash_sign_out() -> None:
    c = client()

    response = c.get("/profile", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    page = c.get("/login")
    assert flash_of(page) == ["Please sign in to see your profile."]
    assert 'id="login-form"' in page.text
    assert "any non-empty password" in page.text

    sign_in(c)
    profile = c.get("/profile")
    assert user_of(profile) == "alice"
    assert flash_of(profile) == ["Welcome, alice!"]
    assert re.search(r'id="session-id">[0-9a-f]{8}<', profile.text)
    assert flash_of(c.get("/profile")) == [], "a flash message is shown once"

    for item in ("apple", "pear"):
        response = c.post("/cart/add", data={"item": item}, follow_redirects=False)
        assert response.status_code == 303
    assert cart_of(c.get("/cart")) == ["apple", "pear"]

    response = c.post("/logout", follow_redirects=False)
    assert response.status_code == 303
    home = c.get("/")
    assert flash_of(home) == ["Signed out."]
    assert 'id="status">Not signed in' in home.text
    assert c.get("/profile", follow_redirects=False).status_code == 303
    assert cart_of(c.get("/cart")) == []


def test_remember_me_sets_a_max_age_of_30_days() -> None:
    remembered = sign_in(client(), remember="yes")
    (line,) = set_cookies(remembered)
    assert f"; Max-Age={REMEMBER_ME};" in line

    (line,) = set_cookies(sign_in(client()))
    assert f"; Max-Age={IDLE_TIMEOUT};" in line

    c = client()
    response = c.post("/api/login", json={"username": "bob", "remember": True})
    assert response.json()["remember"] is True
    assert f"; Max-Age={REMEMBER_ME};" in set_cookies(response)[0]


def test_sign_in_needs_a_name_and_a_password() -> None:
    c = client()
    response = c.post("/login", data={"username": "alice", "password": ""})
    assert flash_of(response) == [
        "Enter a user name (1 to 64 characters) and a password."
    ]
    assert c.get("/api/session").json()["user"] is None


def test_sign_in_gives_a_new_session_id_and_keeps_the_cart() -> None:
    c = client()
    c.post("/cart/add", data={"item": "book"})
    anonymous = c.cookies["session"]

    sign_in(c)
    assert cart_of(c.get("/cart")) == ["book"]
    first = re.findall(r'id="session-id">(\w+)<', c.get("/profile").text)
    sign_in(c, "bob")
    second = re.findall(r'id="session-id">(\w+)<', c.get("/profile").text)
    assert first != second

    # regenerate() revoked the anonymous session: its cookie is refused.
    replay = client_with_cookie(c, anonymous).get("/api/session").json()
    assert replay == {"user": None, "cart": [], "is_new": True, "remember": False}


def test_replay_of_the_cookie_after_logout_gets_no_session() -> None:
    c = client()
    sign_in(c)
    before_logout = c.cookies["session"]
    assert client_with_cookie(c, before_logout).get("/api/session").json()["user"]

    c.post("/logout")
    replay = client_with_cookie(c, before_logout).get("/api/session")
    assert replay.json()["user"] is None
    assert replay.json()["is_new"] is True
    # The refused cookie is cleared in the same response.
    assert any(line.startswith("session=; Max-Age=0") for line in set_cookies(replay))


def test_without_a_revocation_store_a_copied_cookie_outlives_logout() -> None:
    # What the revocation store is for: without one, logout only clears the
    # browser's copy of the cookie.
    c = client(revocation=False)
    sign_in(c)
    before_logout = c.cookies["session"]
    c.post("/logout")
    assert client_with_cookie(c, before_logout).get("/api/session").json()["user"]


def test_big_session_round_trips_through_chunked_cookies() -> None:
    c = client()
    response = c.post("/big", follow_redirects=False)
    lines = set_cookies(response)
    names = [line.split("=", 1)[0] for line in lines]
    assert len(names) >= 3
    assert names == [f"session.{i}" for i in range(len(names))]
    for line in lines:
        assert len("Set-Cookie: ") + len(line) <= LINE_LIMIT

    page = c.get("/big")
    assert re.search(rf'id="big-size">{BIG_SIZE}<', page.text)
    digest = re.search(r'id="big-sha256">([0-9a-f]{64})<', page.text)
    assert digest is not None
    (message,) = flash_of(page)
    assert message == f"Stored {BIG_SIZE} bytes, SHA-256 {digest.group(1)}."

    response = c.post("/big/clear", follow_redirects=False)
    cleared = [line.split("=", 1)[0] for line in set_cookies(response)]
    assert sorted(cleared) == sorted(names)
    assert all("Max-Age=0" in line for line in set_cookies(response))
    assert 'id="big-none"' in c.get("/big").text
    assert not c.cookies


def test_pages_escape_what_users_typed() -> None:
    c = client()
    name = '<script>alert("x")</script>'
    sign_in(c, name)
    profile = c.get("/profile")
    assert "<script>" not in profile.text
    assert user_of(profile) == name
    assert flash_of(profile) == [f"Welcome, {name}!"]

    c.post("/cart/add", data={"item": "<b>bold</b>"})
    page = c.get("/cart")
    assert "<b>bold" not in page.text
    assert cart_of(page) == ["<b>bold</b>"]


def test_pages_forbid_scripts_and_caching() -> None:
    response = client().get("/")
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_forms_must_be_url_encoded_and_small() -> None:
    c = client()
    response = c.post("/login", json={"username": "alice", "password": "x"})
    assert response.status_code == 415
    response = c.post("/cart/add", data={"item": "x" * 10_000})
    assert response.status_code == 413


def test_cart_refuses_empty_and_overlong_items() -> None:
    c = client()
    assert flash_of(c.post("/cart/add", data={"item": " "})) == [
        "An item needs 1 to 100 characters."
    ]
    assert c.post("/api/cart", json={"item": "x" * 101}).status_code == 400
    assert c.post("/api/cart", json={"item": 3}).status_code == 400
    for number in range(20):
        c.post("/api/cart", json={"item": f"item {number}"})
    full = c.post("/api/cart", json={"item": "one more"})
    assert full.json() == {"error": "The cart holds at most 20 items."}


def test_json_api_flow() -> None:
    c = client()
    assert c.get("/api/session").json() == {
        "user": None,
        "cart": [],
        "is_new": True,
        "remember": False,
    }
    assert c.post("/api/login", json={"username": "alice"}).json()["user"] == "alice"
    assert c.post("/api/cart", json={"item": "tea"}).json()["cart"] == ["tea"]
    state = c.get("/api/session").json()
    assert state == {
        "user": "alice",
        "cart": ["tea"],
        "is_new": False,
        "remember": False,
    }

    assert c.post("/api/logout").json() == {"signed_out": True}
    assert c.get("/api/session").json()["user"] is None


def test_json_api_refuses_bad_bodies() -> None:
    c = client()
    assert c.post("/api/login", content=b"{nope").status_code == 400
    assert c.post("/api/login", json=["alice"]).status_code == 400
    assert c.post("/api/login", json={"username": ""}).status_code == 400
    response = c.post("/api/login", json={"username": "a", "remember": "yes"})
    assert response.status_code == 400
    assert c.post("/api/sign-out-everywhere").status_code == 401


def test_sign_out_everywhere_ends_every_session_of_that_user() -> None:
    laptop = client()
    app = laptop.app
    phone, other = TestClient(app), TestClient(app)
    laptop.post("/api/login", json={"username": "alice"})
    phone.post("/api/login", json={"username": "alice"})
    other.post("/api/login", json={"username": "bob"})
    # Revocation covers sessions issued before the sign-out's millisecond.
    time.sleep(0.005)

    response = laptop.post("/api/sign-out-everywhere")
    assert response.json() == {"signed_out": True, "everywhere": True}
    assert laptop.get("/api/session").json()["user"] is None
    assert phone.get("/api/session").json()["user"] is None
    assert other.get("/api/session").json()["user"] == "bob"

    phone.post("/api/login", json={"username": "alice"})
    assert phone.get("/api/session").json()["user"] == "alice"


def test_sign_out_everywhere_page_says_what_it_did() -> None:
    c = client(revocation=False)
    assert c.post("/sign-out-everywhere", follow_redirects=False).status_code == 303
    sign_in(c)
    page = c.post("/sign-out-everywhere")
    assert flash_of(page) == [
        "Signed out here. Without a revocation store, other copies last."
    ]


# -- over real HTTP -------------------------------------------------------------


def replay_state(base: str, cookie_header: str) -> Any:
    """GET /api/session with exactly these cookies, from a cookie-less client."""
    response = httpx.get(
        base + "/api/session", headers={"cookie": cookie_header}, trust_env=False
    )
    return response.json()


def test_demo_command_over_real_http(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if k != "COOKIESESSION_KEYS"}
    command = [sys.executable, "-m", "cookiesession", "demo", "--port", str(port)]
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*command, "--key", generate_key()],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(base, server, log)
        startup = log.read_text()
        assert f"cookiesession demo: {base}/\n" in startup
        assert "keys: from --key" in startup
        assert "revocation: in memory" in startup
        assert "WARNING" not in startup

        # trust_env=False: a proxy from the environment must not see loopback.
        with httpx.Client(base_url=base, trust_env=False) as browser:
            sign_in(browser)
            assert flash_of(browser.get("/profile")) == ["Welcome, alice!"]
            browser.post("/cart/add", data={"item": "apple"})
            assert cart_of(browser.get("/cart")) == ["apple"]
            browser.post("/big")
            page = browser.get("/big")
            assert re.search(rf'id="big-size">{BIG_SIZE}<', page.text)
            assert len(browser.cookies) >= 3
            before_logout = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
            assert replay_state(base, before_logout)["user"] == "alice"

            browser.post("/logout")
            assert browser.get("/profile").status_code == 303

        replay = replay_state(base, before_logout)
        assert replay["user"] is None
        assert replay["is_new"] is True
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://elsewhere.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
    ids=["origin", "fetch-metadata-cross-site", "fetch-metadata-same-site"],
)
def test_cross_origin_writes_are_refused_before_the_session(
    headers: dict[str, str],
) -> None:
    c = client()
    response = c.post(
        "/login",
        data={"username": "mallory", "password": "x"},
        headers=headers,
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert set_cookies(response) == []


def test_same_origin_writes_are_served() -> None:
    c = client()
    response = c.post(
        "/login",
        data={"username": "alice", "password": "x"},
        headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert set_cookies(response) != []
