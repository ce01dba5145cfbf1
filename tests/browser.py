"""Drive Debian's Chromium through Playwright, and run the demo for it.

Playwright's own browser downloads are never used: the tests launch the
system `chromium` (installed by `.ci/install-browser`). Every address the
browser visits is on 127.0.0.1; names under `.test` (reserved by RFC 6761)
are mapped there by the browser's own resolver, so a test can give the same
server a second, non-loopback host name.
"""

from __future__ import annotations

import contextlib
import html
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from cookiesession import generate_key
from tests.conftest import _unavailable
from tests.live_server import free_port, wait_until_up

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
#: Chromium flags that work headless, as root, without a display; Playwright
#: adds headless mode and a fresh profile directory itself.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP *.test 127.0.0.1",
]
#: Milliseconds Playwright waits for a page or an element before failing.
TIMEOUT_MS = 10_000
_STARTUP_SECONDS = 15.0


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Launch headless Chromium; skips without it (fails under CI=true)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing: run .ci/install-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def demo_server(log: Path) -> Iterator[str]:
    """Run `python -m cookiesession demo` with a fresh key; yield its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "COOKIESESSION_KEYS"}
    command = [sys.executable, "-m", "cookiesession", "demo", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--key", generate_key()]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until_up(base, server, log, timeout=_STARTUP_SECONDS)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def on_host(base: str, host: str) -> str:
    """`base` with its host replaced, keeping scheme and port."""
    parts = urlsplit(base)
    return f"{parts.scheme}://{host}:{parts.port}"


async def _launcher(request: Request) -> Response:
    # The page another site would show: a link and a form, both aimed at
    # `?action=`; every other query parameter becomes a hidden form field.
    action = html.escape(request.query_params["action"], quote=True)
    fields = "".join(
        f'<input type="hidden" name="{html.escape(name, quote=True)}" '
        f'value="{html.escape(value, quote=True)}">'
        for name, value in request.query_params.multi_items()
        if name != "action"
    )
    return HTMLResponse(
        '<!doctype html><title>elsewhere</title><a id="link" href="'
        f'{action}">follow</a><form id="form" method="post" action="{action}">'
        f'{fields}<button id="submit" type="submit">submit</button></form>'
    )


def launcher_app() -> Starlette:
    """A page with a link and a form aimed at any URL, to be served elsewhere."""
    return Starlette(routes=[Route("/", _launcher)])


def sign_in(page: Page, base: str, username: str) -> None:
    """Sign in through the demo's HTML form."""
    page.goto(base + "/login")
    page.fill("#login-form input[name=username]", username)
    page.fill("#login-form input[name=password]", "any password")
    page.click("#login-button")
    page.wait_for_url(base + "/profile")


def flash(page: Page) -> list[str]:
    return page.locator("#flash .flash-message").all_inner_texts()
