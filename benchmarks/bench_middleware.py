"""Per-request cost of session middleware over a bare Starlette app.

Contestants, each wrapping the same Starlette app:

- bare: the app alone, handlers that do not touch a session (the baseline);
- cookiesession: `SessionMiddleware(secret=...)`, no revocation store;
- cookiesession + revocation: the same with a `MemoryRevocationStore`
  holding 10,000 revoked ids;
- Starlette: `starlette.middleware.sessions.SessionMiddleware`;
- starsessions: `SessionMiddleware(store=CookieStore(...))` with
  `SessionAutoloadMiddleware` inside it, as starsessions requires.

All sessions last 14 days. Requests are driven in-process through a raw ASGI
call loop: a scope dict built here, a `receive` that returns one
`http.request`, a `send` that collects messages, one asyncio event loop
entered once per batch of requests. No sockets, no test client.

Scenarios: a request without a cookie whose handler leaves the session alone;
reads (`request.session.get("user_id")`) of a 1-key, ~1 KB and ~3 KB session;
writes (`request.session["counter"] = n`, a new n every request) to a 1-key and
a ~1 KB session. The sessions are bench_codec.py's. Every middleware makes its
own cookies: one request stores the session, its Set-Cookie is sent back on
every timed request, like a client that ignores Set-Cookie. The two writes
are run again as a browser makes them ("cookie sent back"): each request
brings the cookie the previous response set. The targets are stated on the
first kind.

Before anything is timed, each cell is checked: status 200, the expected body,
the written counter readable from the cookie sent back, and Set-Cookie present
exactly when expected (cookiesession: only on writes) or, for the other
middleware, the same way on every repeat. Cells then run interleaved in
shuffled rounds (see _harness.py), timed by this process's CPU clock: the
requests are pure CPU work here, and on a shared machine the CPU clock leaves
out the time spent waiting for a CPU.

    python benchmarks/bench_middleware.py             # about 70 seconds
    python benchmarks/bench_middleware.py --quick     # about 10 seconds
    python benchmarks/bench_middleware.py --output results/middleware.md
    python benchmarks/bench_middleware.py --profile   # cProfile, no timing
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import itertools
import json
import os
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# The working tree's cookiesession is the one measured, and the shared helper
# sits next to this file, however the script is started.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
import starsessions
from bench_codec import SESSIONS
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessions
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message
from starsessions.stores.cookie import CookieStore

import cookiesession

# CPU clock: see the module docstring; --clock wall for the wall clock.
FULL = _harness.Plan(rounds=19, batch_ms=80, seed=1, warmup_rounds=1, clock="cpu")
QUICK = _harness.Plan(rounds=7, batch_ms=25, seed=1, warmup_rounds=0, clock="cpu")

#: Requests per entry into the event loop; its start-up cost is shared by all.
REQUESTS_PER_CALL = 50
MAX_AGE = 14 * 24 * 3600
REVOKED_IDS = 10_000
USER_ID = 12345
CHECK_REPEATS = 3
PROFILE_REQUESTS = 20_000

# --------------------------------------------------------------------------
# Scenarios and contestants


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of request: its route and the session its cookie holds."""

    name: str
    path: str
    session: str | None
    #: Each request brings the cookie the one before it got, as a browser
    #: does; otherwise every request brings the first one.
    chained: bool = False

    @property
    def writes(self) -> bool:
        return self.path == "/write"


SCENARIOS = (
    Scenario("no cookie", "/idle", None),
    Scenario("read, 1-key", "/read", "1-key"),
    Scenario("read, 1 KB", "/read", "1 KB"),
    Scenario("write, 1-key", "/write", "1-key"),
    Scenario("write, 1 KB", "/write", "1 KB"),
    Scenario("read, 3 KB", "/read", "3 KB"),
    Scenario("write, 1-key, cookie sent back", "/write", "1-key", chained=True),
    Scenario("write, 1 KB, cookie sent back", "/write", "1 KB", chained=True),
)
BARE = "bare"
OURS = "cookiesession"
OURS_REVOCATION = "cookiesession + revocation"
STARLETTE = "Starlette"
STARSESSIONS = "starsessions"
CONTESTANTS = (BARE, OURS, OURS_REVOCATION, STARLETTE, STARSESSIONS)
MIDDLEWARE = CONTESTANTS[1:]

#: Highest accepted ratio of cookiesession's added cost to Starlette's.
TARGETS = {
    "no cookie": 1.0,
    "read, 1-key": 0.5,
    "read, 1 KB": 0.5,
    "write, 1-key": 0.5,
    "write, 1 KB": 0.5,
}

#: Most microseconds the memory revocation store may add to a request that
#: brings a cookie (one check; nothing to revoke).
REVOCATION_LIMIT_US = 1.0

_counter = itertools.count(1)


# --------------------------------------------------------------------------
# Apps


async def _idle(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _read(request: Request) -> Response:
    return PlainTextResponse(str(request.session.get("user_id")))


async def _write(request: Request) -> Response:
    value = next(_counter)
    request.session["counter"] = value
    return PlainTextResponse(str(value))


async def _bare_read(request: Request) -> Response:
    return PlainTextResponse(str(USER_ID))


async def _bare_write(request: Request) -> Response:
    return PlainTextResponse(str(next(_counter)))


async def _seed(request: Request) -> Response:
    data = copy.deepcopy(SESSIONS[request.path_params["name"]])
    request.session.update(data)
    return PlainTextResponse("seeded")


async def _peek(request: Request) -> Response:
    # starsessions keeps its own bookkeeping inside the session.
    data = {k: v for k, v in request.session.items() if k != "__metadata__"}
    return JSONResponse(data)


def _app(contestant: str, secret: str, store: Any) -> ASGIApp:
    if contestant == BARE:
        return Starlette(
            routes=[
                Route("/idle", _idle),
                Route("/read", _bare_read),
                Route("/write", _bare_write),
            ]
        )
    routes = [
        Route("/idle", _idle),
        Route("/read", _read),
        Route("/write", _write),
        Route("/seed/{name}", _seed),
        Route("/peek", _peek),
    ]
    middleware: list[Middleware]
    if contestant == OURS:
        middleware = [Middleware(cookiesession.SessionMiddleware, secret=secret)]
    elif contestant == OURS_REVOCATION:
        middleware = [
            Middleware(cookiesession.SessionMiddleware, secret=secret, revocation=store)
        ]
    elif contestant == STARLETTE:
        middleware = [Middleware(StarletteSessions, secret_key=secret, max_age=MAX_AGE)]
    elif contestant == STARSESSIONS:
        # The outer middleware reads the cookie; the autoload middleware
        # loads the session before the handler runs.
        middleware = [
            Middleware(
                starsessions.SessionMiddleware,
                store=CookieStore(secret_key=secret),
                lifetime=MAX_AGE,
            ),
            Middleware(starsessions.SessionAutoloadMiddleware),
        ]
    else:
        raise ValueError(f"unknown contestant {contestant!r}")
    return Starlette(routes=routes, middleware=middleware)


async def _revocation_store() -> cookiesession.MemoryRevocationStore:
    store = cookiesession.MemoryRevocationStore()
    now = time.time()
    for _ in range(REVOKED_IDS):
        await store.revoke(
            os.urandom(16), subject=None, issued_at_ms=int(now * 1000), until=now + 3600
        )
    return store


# --------------------------------------------------------------------------
# The ASGI driver

_REQUEST_MESSAGE: Message = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> Message:
    return _REQUEST_MESSAGE


def _scope(path: str, cookie: str | None) -> dict[str, Any]:
    headers = [
        (b"host", b"shop.example.com"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
    ]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin-1")))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("ascii"),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("shop.example.com", 443),
    }


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one request got back."""

    status: int
    body: bytes
    set_cookies: list[str]


async def _exchange(app: ASGIApp, scope: dict[str, Any]) -> Exchange:
    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    await app(dict(scope), _receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages[1:])
    set_cookies = [
        value.decode("latin-1")
        for key, value in start.get("headers", ())
        if key.lower() == b"set-cookie"
    ]
    return Exchange(start["status"], body, set_cookies)


class Driver:
    """A zero-argument callable that runs `ops` requests in one loop entry.

    With `chained`, each request sends the session cookie that the one
    before it got back (the chain goes on from batch to batch); every
    contestant's driver looks for it, so the bare app pays for the search.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app: ASGIApp,
        scope: dict[str, Any],
        ops: int,
        chained: bool = False,
    ) -> None:
        self.loop = loop
        self.app = app
        self.scope = scope
        self.ops = ops
        self.chained = chained

    async def _batch(self) -> None:
        app, scope, receive = self.app, self.scope, _receive
        messages: list[Message] = []
        append = messages.append

        async def send(message: Message) -> None:
            append(message)

        if self.chained:
            await self._chain(send, messages)
            return
        for _ in range(self.ops):
            messages.clear()
            # A fresh scope per request: middleware and routing write into it.
            await app(scope.copy(), receive, send)

    async def _chain(self, send: Any, messages: list[Message]) -> None:
        app, scope, receive = self.app, self.scope, _receive
        others = [h for h in scope["headers"] if h[0] != b"cookie"]
        cookie = next((v for k, v in scope["headers"] if k == b"cookie"), b"")
        for _ in range(self.ops):
            messages.clear()
            request = scope.copy()
            request["headers"] = [*others, (b"cookie", cookie)]
            await app(request, receive, send)
            for key, value in messages[0].get("headers", ()):
                if key == b"set-cookie" and value.startswith(b"session="):
                    cookie = value.split(b";", 1)[0]
        scope["headers"] = [*others, (b"cookie", cookie)]

    def __call__(self) -> None:
        self.loop.run_until_complete(self._batch())


async def _empty() -> None:
    return None


def _loop_entry_ns(loop: asyncio.AbstractEventLoop, samples: int = 2000) -> float:
    """CPU nanoseconds to enter the loop with a coroutine that returns at once."""
    start = time.process_time_ns()
    for _ in range(samples):
        loop.run_until_complete(_empty())
    return (time.process_time_ns() - start) / samples


# --------------------------------------------------------------------------
# Cookies and checks


class CheckFailed(RuntimeError):
    """A cell did not behave as expected before timing."""


def _cookie_header(set_cookies: Sequence[str]) -> str:
    """The Cookie header a browser would send back after these Set-Cookies."""
    pairs = []
    for line in set_cookies:
        pair, _, attributes = line.partition(";")
        lowered = attributes.lower()
        if "max-age=0" in lowered or "1970" in lowered:
            continue  # a deletion
        pairs.append(pair.strip())
    return "; ".join(pairs)


def _seeded_cookie(
    loop: asyncio.AbstractEventLoop, app: ASGIApp, contestant: str, session: str
) -> str:
    sent = loop.run_until_complete(_exchange(app, _scope(f"/seed/{session}", None)))
    if sent.status != 200 or not sent.set_cookies:
        raise CheckFailed(f"{contestant}: storing the {session} session sent no cookie")
    cookie = _cookie_header(sent.set_cookies)
    peek = loop.run_until_complete(_exchange(app, _scope("/peek", cookie)))
    if json.loads(peek.body) != SESSIONS[session]:
        raise CheckFailed(f"{contestant}: the {session} session did not read back")
    return cookie


@dataclass(frozen=True, slots=True)
class Cell:
    """One scenario for one contestant, ready to time."""

    scenario: Scenario
    contestant: str
    app: ASGIApp
    scope: dict[str, Any]
    cookie_bytes: int
    set_cookie: bool

    @property
    def name(self) -> str:
        return f"{self.scenario.name} | {self.contestant}"


def _expected_body(scenario: Scenario, body: bytes) -> bool:
    if scenario.path == "/idle":
        return body == b"ok"
    if scenario.path == "/read":
        return body == str(USER_ID).encode()
    return body.isdigit()


def _check_cell(loop: asyncio.AbstractEventLoop, cell: Cell) -> bool:
    """Check `cell` several times; return whether it sends Set-Cookie."""
    sends: set[bool] = set()
    for _ in range(CHECK_REPEATS):
        got = loop.run_until_complete(_exchange(cell.app, cell.scope))
        if got.status != 200 or not _expected_body(cell.scenario, got.body):
            raise CheckFailed(f"{cell.name}: status {got.status}, body {got.body!r}")
        sends.add(bool(got.set_cookies))
        if cell.scenario.writes and cell.contestant != BARE:
            _check_written(loop, cell, got)
    if len(sends) != 1:
        raise CheckFailed(f"{cell.name}: Set-Cookie sent on some repeats only")
    sent = sends.pop()
    if cell.contestant == BARE and sent:
        raise CheckFailed(f"{cell.name}: the bare app sent a cookie")
    if cell.contestant in (OURS, OURS_REVOCATION) and sent != cell.scenario.writes:
        raise CheckFailed(f"{cell.name}: Set-Cookie expected on writes only")
    return sent


def _check_written(loop: asyncio.AbstractEventLoop, cell: Cell, got: Exchange) -> None:
    if not got.set_cookies:
        raise CheckFailed(f"{cell.name}: a write sent no cookie")
    cookie = _cookie_header(got.set_cookies)
    peek = loop.run_until_complete(_exchange(cell.app, _scope("/peek", cookie)))
    expected = dict(SESSIONS[cell.scenario.session or ""], counter=int(got.body))
    if json.loads(peek.body) != expected:
        raise CheckFailed(f"{cell.name}: the written counter did not read back")


def _build_cells(loop: asyncio.AbstractEventLoop) -> list[Cell]:
    secret = cookiesession.generate_key()
    store = loop.run_until_complete(_revocation_store())
    apps = {name: _app(name, secret, store) for name in CONTESTANTS}
    cookies: dict[tuple[str, str], str] = {}
    for contestant in MIDDLEWARE:
        for session in SESSIONS:
            cookies[(contestant, session)] = _seeded_cookie(
                loop, apps[contestant], contestant, session
            )
    cells = []
    for scenario in SCENARIOS:
        for contestant in CONTESTANTS:
            cookie: str | None = None
            if scenario.session is not None:
                # The bare app gets Starlette's cookie: same header size.
                owner = STARLETTE if contestant == BARE else contestant
                cookie = cookies[(owner, scenario.session)]
            cell = Cell(
                scenario,
                contestant,
                apps[contestant],
                _scope(scenario.path, cookie),
                len(cookie.encode("latin-1")) if cookie else 0,
                set_cookie=False,
            )
            cells.append(replace(cell, set_cookie=_check_cell(loop, cell)))
    return cells


# --------------------------------------------------------------------------
# Report


def _us(value_ns: float) -> str:
    return f"{value_ns / 1e3:.1f}"


def _spread_us(values: Sequence[float]) -> str:
    stats = _harness.Stats.of(values)
    return f"{_us(stats.median)} ({_us(stats.p25)}-{_us(stats.p75)})"


def _ratio_stats(
    results: dict[str, _harness.Measurement], scenario: str, other: str
) -> _harness.Stats:
    bare = results[f"{scenario} | {BARE}"]
    ours = _harness.paired_differences(results[f"{scenario} | {OURS}"], bare)
    theirs = _harness.paired_differences(results[f"{scenario} | {other}"], bare)
    return _harness.Stats.of([a / b for a, b in zip(ours, theirs, strict=True)])


def _ratio_text(stats: _harness.Stats) -> str:
    return f"{stats.median:.2f}x ({stats.p25:.2f}-{stats.p75:.2f})"


def _behaviour_section(cells: Sequence[Cell]) -> list[str]:
    by_name = {cell.name: cell for cell in cells}
    rows = []
    for scenario in SCENARIOS:
        row = [scenario.name]
        for contestant in MIDDLEWARE:
            cell = by_name[f"{scenario.name} | {contestant}"]
            sent = "Set-Cookie" if cell.set_cookie else "none"
            row.append(
                f"{sent}; Cookie {cell.cookie_bytes} B" if cell.cookie_bytes else sent
            )
        rows.append(row)
    return [
        "## Behaviour checked before timing",
        "",
        f"Every cell was run {CHECK_REPEATS} times first: status 200, expected "
        "body, written counter read back from the returned cookie. The table "
        "shows whether the response carried Set-Cookie (the same on every "
        "repeat) and the size of the Cookie header each request sends.",
        "",
        _harness.markdown_table(["Scenario", *MIDDLEWARE], rows, "lllll"),
        "",
    ]


def _times_section(results: dict[str, _harness.Measurement]) -> list[str]:
    rows = []
    for scenario in SCENARIOS:
        rows.append(
            [scenario.name]
            + [
                _harness.format_range(results[f"{scenario.name} | {c}"].stats, digits=1)
                for c in CONTESTANTS
            ]
        )
    return [
        "## Time per request",
        "",
        "Microseconds per request, median over rounds (p25-p75).",
        "",
        _harness.markdown_table(["Scenario", *CONTESTANTS], rows, "lrrrrr"),
        "",
    ]


def _added_section(results: dict[str, _harness.Measurement]) -> list[str]:
    rows = []
    for scenario in SCENARIOS:
        bare = results[f"{scenario.name} | {BARE}"]
        row = [scenario.name]
        for contestant in MIDDLEWARE:
            cell = results[f"{scenario.name} | {contestant}"]
            row.append(_spread_us(_harness.paired_differences(cell, bare)))
        for other in (STARLETTE, STARSESSIONS):
            row.append(_ratio_text(_ratio_stats(results, scenario.name, other)))
        rows.append(row)
    header = ["Scenario", *MIDDLEWARE]
    header += ["cookiesession / Starlette", "cookiesession / starsessions"]
    return [
        "## Added over the bare app",
        "",
        "Microseconds added per request: the median of per-round differences "
        "from the bare app's batch of the same round (p25-p75). Ratios divide "
        "cookiesession's added cost by the other middleware's, round by round "
        "(median, p25-p75); below 1 means cookiesession adds less.",
        "",
        _harness.markdown_table(header, rows, "lrrrrrr"),
        "",
    ]


def _revocation_section(results: dict[str, _harness.Measurement]) -> list[str]:
    rows = []
    for scenario in SCENARIOS:
        on = results[f"{scenario.name} | {OURS_REVOCATION}"]
        off = results[f"{scenario.name} | {OURS}"]
        checked = "no cookie, no check" if scenario.session is None else "one check"
        rows.append(
            [scenario.name, checked, _spread_us(_harness.paired_differences(on, off))]
        )
    return [
        "## Revocation check",
        "",
        f"`MemoryRevocationStore` holding {REVOKED_IDS:,} revoked ids: "
        "microseconds per request with the store minus without it, median of "
        "per-round differences (p25-p75). Differences within the noise can be "
        "negative.",
        "",
        _harness.markdown_table(["Scenario", "Store", "Added us"], rows, "llr"),
        "",
    ]


def _verdict(stats: _harness.Stats, limit: float) -> str:
    """PASS when the median is within `limit`, marked when the IQR spans it."""
    verdict = "PASS" if stats.median <= limit else "MISS"
    if stats.p25 <= limit < stats.p75:
        verdict += " (borderline: the IQR spans the limit)"
    return verdict


def _targets_section(results: dict[str, _harness.Measurement]) -> list[str]:
    rows = []
    for scenario, limit in TARGETS.items():
        stats = _ratio_stats(results, scenario, STARLETTE)
        rows.append(
            [
                f"{scenario}: cookiesession adds <= {limit:.1f}x Starlette's cost",
                _ratio_text(stats),
                _verdict(stats, limit),
            ]
        )
    for case in SCENARIOS:
        if case.session is None:
            continue
        added = _harness.Stats.of(
            _harness.paired_differences(
                results[f"{case.name} | {OURS_REVOCATION}"],
                results[f"{case.name} | {OURS}"],
            )
        )
        rows.append(
            [
                f"{case.name}: the memory revocation store adds "
                f"<= {REVOCATION_LIMIT_US:.1f} us",
                f"{_us(added.median)} us ({_us(added.p25)}-{_us(added.p75)})",
                _verdict(added, REVOCATION_LIMIT_US * 1e3),
            ]
        )
    return [
        "## Targets",
        "",
        _harness.markdown_table(["Target", "Measured", "Result"], rows, "lrl"),
        "",
    ]


def _report(
    cells: Sequence[Cell],
    results: dict[str, _harness.Measurement],
    plan: _harness.Plan,
    entry_ns: float,
    elapsed_s: float,
) -> str:
    out = ["# Session middleware: cost per request", ""]
    env = _harness.environment_rows(
        ["cookiesession", "starlette", "starsessions", "itsdangerous", "cryptography"],
        {
            "Driver": "raw ASGI calls on one asyncio loop, "
            f"{REQUESTS_PER_CALL} requests per loop entry",
            "Loop entry": f"{entry_ns / 1e3:.1f} us per entry, "
            f"{entry_ns / REQUESTS_PER_CALL:.0f} ns per request, in every cell",
            "Method": plan.describe(),
            "Run time": f"{elapsed_s:.1f} s",
        },
    )
    out += [_harness.markdown_table(["", ""], env), ""]
    out += _behaviour_section(cells)
    out += _times_section(results)
    out += _added_section(results)
    out += _revocation_section(results)
    out += _targets_section(results)
    noisiest = max(results.values(), key=lambda m: m.stats.iqr_percent)
    out += [
        f"Widest spread: {noisiest.name}, IQR {noisiest.stats.iqr_percent:.1f}% "
        "of its median.",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------
# Profile

#: cookiesession functions whose cumulative time is one stage of a request.
STAGES = (
    ("_middleware.py", "__call__", "whole middleware, inner app included"),
    ("_middleware.py", "_read_cookies", "find the cookie in the headers"),
    ("_middleware.py", "_load", "open the cookie, build the Session"),
    ("_middleware.py", "_open", "  a remembered value, or TokenCodec.open"),
    ("_token.py", "open", "    TokenCodec.open: base64, decrypt, decode, check"),
    ("_token.py", "_b64decode", "      base64 decode"),
    ("crypto.py", "decrypt", "      XAES-256-GCM decrypt"),
    ("_serialize.py", "decode_pair", "      CBOR decode (header and data)"),
    ("_serialize.py", "pack", "    template: containers kept as CBOR bytes"),
    ("_middleware.py", "_remember", "    remember the opened value"),
    ("_session.py", "_from_template", "  Session from the template"),
    ("_session.py", "_thaw", "values the handler unpacked"),
    ("_middleware.py", "_commit", "response start: decide, seal, headers"),
    ("_middleware.py", "_renewed_token", "  change detection, and sealing if due"),
    ("_serialize.py", "dumps", "    validate and CBOR-encode the data"),
    ("_middleware.py", "_seal", "    seal a new token and remember it"),
    ("_token.py", "seal", "      TokenCodec.seal: header, encrypt, base64"),
    ("crypto.py", "seal", "        XAES-256-GCM: nonce and encryption"),
    ("_middleware.py", "_cookie_lines", "  Set-Cookie line"),
    ("_middleware.py", "_apply_headers", "  response headers"),
)

ProfileKey = tuple[str, int, str]


def _ours(key: ProfileKey) -> bool:
    return "/cookiesession/" in key[0]


def _app_side(key: ProfileKey) -> bool:
    # The wrapped app and the server's send are called by the middleware but
    # do the bare app's work, not the session's.
    return "/starlette/" in key[0] or Path(key[0]).name == Path(__file__).name


def _profiled(driver: Driver) -> dict[ProfileKey, Any]:
    profiler = cProfile.Profile()
    profiler.runcall(driver)
    stats = pstats.Stats(profiler)
    entries: dict[ProfileKey, Any] = stats.stats  # type: ignore[attr-defined]
    return entries


def _attributed(entries: dict[ProfileKey, Any]) -> dict[ProfileKey, tuple[int, float]]:
    """Calls and own seconds each function spends on cookiesession's behalf.

    cookiesession's own functions count whole; built-ins and library
    functions (cbor2, cryptography, the standard library) count only for the
    calls made directly from a cookiesession function. The wrapped app is
    left out.
    """
    spent: dict[ProfileKey, tuple[int, float]] = {}
    for key, (_, calls, own, _, callers) in entries.items():
        if _ours(key):
            spent[key] = (calls, own)
            continue
        edges = [edge for caller, edge in callers.items() if _ours(caller)]
        if edges and not _app_side(key):
            spent[key] = (sum(e[0] for e in edges), sum(e[2] for e in edges))
    return spent


def _label(key: ProfileKey) -> str:
    filename, line, function = key
    return f"{_short_path(filename)}:{line}({function})" if line else function


def _stage_rows(entries: dict[ProfileKey, Any], n: int) -> list[list[str]]:
    rows = []
    for module, function, meaning in STAGES:
        for key, (_, calls, _, cumulative, _) in entries.items():
            if _ours(key) and key[0].endswith("/" + module) and key[2] == function:
                rows.append(
                    [
                        f"`{module}:{function}`",
                        meaning.strip(),
                        f"{calls / n:g}",
                        f"{cumulative / n * 1e6:.2f}",
                    ]
                )
                break
    return rows


def _profile(cells: Sequence[Cell], loop: asyncio.AbstractEventLoop, top: int) -> str:
    """cProfile of cookiesession's cells: where a request's time goes."""
    n = PROFILE_REQUESTS
    out = [
        "# cookiesession per-request profile",
        "",
        f"cProfile over {n:,} requests per scenario, revocation off. Times are "
        "microseconds per request, inflated by the profiler (more so for many "
        "small calls): read them as shares, not as the timed cost. "
        "'cookiesession' below means its own functions plus the direct calls "
        "they make into built-ins and libraries (cbor2, cryptography).",
        "",
    ]
    bare = {c.scenario.name: c for c in cells if c.contestant == BARE}
    for cell in cells:
        if cell.contestant != OURS:
            continue
        chained = cell.scenario.chained
        base = _profiled(
            Driver(loop, bare[cell.scenario.name].app, cell.scope, n, chained)
        )
        entries = _profiled(Driver(loop, cell.app, cell.scope, n, chained))
        spent = _attributed(entries)
        ours_total = sum(own for _, own in spent.values())
        rows = [
            [
                _label(key),
                f"{calls / n:g}",
                f"{own / n * 1e6:.2f}",
                f"{100 * own / ours_total:.0f}%",
            ]
            for key, (calls, own) in sorted(spent.items(), key=lambda kv: -kv[1][1])[
                :top
            ]
        ]
        total = sum(entry[2] for entry in entries.values()) / n * 1e6
        bare_total = sum(entry[2] for entry in base.values()) / n * 1e6
        out += [
            f"## {cell.scenario.name}",
            "",
            f"Profiled: {total:.1f} us per request with cookiesession, "
            f"{bare_total:.1f} us for the bare app, {total - bare_total:.1f} us "
            f"added; {ours_total / n * 1e6:.1f} us attributed to cookiesession.",
            "",
            _harness.markdown_table(
                ["Stage", "What", "Calls/request", "Cumulative us"],
                _stage_rows(entries, n),
                "llrr",
            ),
            "",
            f"Top {top} functions by time spent for cookiesession:",
            "",
            _harness.markdown_table(
                ["Function", "Calls/request", "Own us", "Share"], rows, "lrrr"
            ),
            "",
        ]
    return "\n".join(out)


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", "/cookiesession/", "/lib/python3"):
        index = filename.find(marker)
        if index >= 0:
            return filename[index + len(marker) :].lstrip("/")
    return Path(filename).name


# --------------------------------------------------------------------------
# Main


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_plan_arguments(parser, FULL, QUICK)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print a cProfile breakdown of cookiesession's cells instead of timing",
    )
    parser.add_argument(
        "--top", type=int, default=15, help="functions per profile table (default 15)"
    )
    args = parser.parse_args(argv)
    plan = _harness.plan_from_args(args, FULL, QUICK)
    started = time.perf_counter()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        cells = _build_cells(loop)
        if args.profile:
            _harness.emit(_profile(cells, loop, args.top), args.output)
            return 0
        cases = [
            _harness.Case(
                cell.name,
                Driver(
                    loop,
                    cell.app,
                    cell.scope,
                    REQUESTS_PER_CALL,
                    chained=cell.scenario.chained,
                ),
                ops=REQUESTS_PER_CALL,
            )
            for cell in cells
        ]
        _progress(f"checks passed; timing {len(cases)} cells: {plan.describe()}")
        entry_ns = _loop_entry_ns(loop)
        results = _harness.run_interleaved(cases, plan, progress=_progress)
    finally:
        loop.close()
    text = _report(cells, results, plan, entry_ns, time.perf_counter() - started)
    _harness.emit(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
