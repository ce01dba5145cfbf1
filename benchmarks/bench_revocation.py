"""Cost of the revocation check, and memory per revoked id.

Measures, with the working tree's cookiesession:

- `MemoryRevocationStore.is_revoked` in a store of 100,000 revoked ids: a hit,
  a miss, and a miss that also looks up a subject. Each is compared with
  awaiting a coroutine of the same signature that returns at once, so the
  "store overhead" column is the cost beyond the `await` itself.
- `RedisRevocationStore.is_revoked` against a real Redis (one GET without a
  subject, one MGET with one), sequential calls.
- Bytes per entry of a memory store holding 1,000,000 revoked ids, with
  tracemalloc, and the pause of one fold at `max_entries`=100,000.
- Redis round trips per request through `SessionMiddleware`: a connection
  class that counts what it sends, requests driven through httpx's ASGI
  transport (no cookie, reads, writes, a login that regenerates, a logout).

Every figure is the median of several rounds, with the p25-p75 spread; cases
run interleaved, the garbage collector paused while timing.

    python benchmarks/bench_revocation.py
    python benchmarks/bench_revocation.py --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import logging
import os
import random
import secrets
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

# Measure the working tree's cookiesession however the script is started.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import redis
import redis.asyncio
import redis.exceptions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cookiesession import Session, SessionMiddleware, generate_key
from cookiesession._revocation import (
    MemoryRevocationStore,
    RedisRevocationStore,
    RevocationStoreError,
)

Check = Callable[..., Awaitable[bool]]
#: `MemoryRevocationStore._revoked`: the check as the middleware makes it.
SyncCheck = Callable[[bytes, str | None, int], bool]

MEMORY_ENTRIES = 100_000
MEMORY_LOOPS = 200_000
MEMORY_ROUNDS = 9
REDIS_LOOPS = 2_000
REDIS_ROUNDS = 5
FOOTPRINT_ENTRIES = 1_000_000
FOLD_ENTRIES = 100_000


async def awaited_noop(
    session_id: bytes, *, subject: str | None, issued_at_ms: int
) -> bool:
    return False


async def time_batch(
    check: Check | SyncCheck, session_id: bytes, subject: str | None, loops: int
) -> float:
    """Nanoseconds per call of `loops` sequential checks, awaited if async."""
    issued = int(time.time() * 1000)
    if not inspect.iscoroutinefunction(check):
        sync = cast(SyncCheck, check)
        start = time.perf_counter_ns()
        for _ in range(loops):
            sync(session_id, subject, issued)
        return (time.perf_counter_ns() - start) / loops
    start = time.perf_counter_ns()
    for _ in range(loops):
        await check(session_id, subject=subject, issued_at_ms=issued)
    return (time.perf_counter_ns() - start) / loops


async def run_rounds(
    cases: Mapping[str, tuple[Check | SyncCheck, bytes, str | None]],
    loops: int,
    rounds: int,
) -> dict[str, list[float]]:
    """Per-call times of every case, one batch each per round, shuffled."""
    results: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    rng = random.Random(1)
    for name in order:  # warm-up
        await time_batch(*cases[name], loops=max(1, loops // 10))
    gc.disable()
    try:
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                results[name].append(await time_batch(*cases[name], loops=loops))
    finally:
        gc.enable()
    return results


def spread(values: list[float], scale: float) -> tuple[str, str]:
    """Median and p25-p75 range, divided by `scale`, as text."""
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    median = statistics.median(values)
    return f"{median / scale:.2f}", f"{low / scale:.2f}-{high / scale:.2f}"


MIDDLEWARE_CHECK = "miss, with subject, as the middleware asks (no coroutine)"
#: Most nanoseconds the memory store's check may take.
MEMORY_CHECK_LIMIT_NS = 1000.0


async def memory_rows() -> tuple[list[list[str]], float]:
    """The table rows, and the middleware's check in nanoseconds (median)."""
    store = MemoryRevocationStore()
    until = time.time() + 3600
    revoked = os.urandom(16)
    await store.revoke(revoked, subject=None, issued_at_ms=1, until=until)
    for _ in range(MEMORY_ENTRIES - 2):
        await store.revoke(os.urandom(16), subject=None, issued_at_ms=1, until=until)
    await store.revoke_subject("someone", before_ms=1, until=until)
    assert len(store) == MEMORY_ENTRIES

    missing = os.urandom(16)
    assert await store.is_revoked(revoked, subject=None, issued_at_ms=2)
    assert not await store.is_revoked(missing, subject="alice", issued_at_ms=2)
    cases: dict[str, tuple[Check | SyncCheck, bytes, str | None]] = {
        "await of a no-op coroutine": (awaited_noop, missing, None),
        "hit": (store.is_revoked, revoked, None),
        "miss": (store.is_revoked, missing, None),
        "miss, with subject": (store.is_revoked, missing, "alice"),
        MIDDLEWARE_CHECK: (store._revoked, missing, "alice"),
    }
    results = await run_rounds(cases, MEMORY_LOOPS, MEMORY_ROUNDS)

    baseline = statistics.median(results["await of a no-op coroutine"])
    rows = []
    for name, values in results.items():
        median, iqr = spread(values, 1.0)
        overhead = statistics.median(values) - baseline
        awaited = not name.startswith(("await", "miss, with subject, as"))
        extra = f"{overhead:.0f} ns" if awaited else "-"
        rows.append([f"memory, {name}", f"{median} ns", f"{iqr} ns", extra])
    return rows, statistics.median(results[MIDDLEWARE_CHECK])


async def redis_rows(url: str) -> list[list[str]]:
    prefix = f"bench-{secrets.token_hex(6)}"
    store = RedisRevocationStore(url, prefix=prefix, timeout=1.0)
    try:
        revoked, missing = os.urandom(16), os.urandom(16)
        await store.revoke(
            revoked, subject="alice", issued_at_ms=1, until=time.time() + 120
        )
        assert await store.is_revoked(revoked, subject="alice", issued_at_ms=2)
        cases: dict[str, tuple[Check, bytes, str | None]] = {
            "hit, with subject (MGET)": (store.is_revoked, revoked, "alice"),
            "miss, with subject (MGET)": (store.is_revoked, missing, "alice"),
            "miss, no subject (GET)": (store.is_revoked, missing, None),
        }
        results = await run_rounds(cases, REDIS_LOOPS, REDIS_ROUNDS)
    finally:
        await store.aclose()

    # The entry would expire in two minutes anyway; leave nothing behind.
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    rows = []
    for name, values in results.items():
        median, iqr = spread(values, 1000.0)
        rows.append([f"redis, {name}", f"{median} us", f"{iqr} us", "-"])
    return rows


class _CountingConnection(redis.asyncio.Connection):
    """A real connection that counts its writes: each is one round trip.

    A pipeline goes out as one write, a lone command as one.
    """

    writes = 0

    async def send_packed_command(
        self, command: Any, check_health: bool = True
    ) -> None:
        _CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


def _session(request: Request) -> Session:
    session: Session = request.session  # type: ignore[assignment]
    return session


async def _login(request: Request) -> Response:
    session = _session(request)
    session.regenerate()
    session["user"] = "alice"
    session.subject = "alice"
    return PlainTextResponse("ok")


async def _read(request: Request) -> Response:
    return PlainTextResponse(str(request.session.get("user")))


async def _write(request: Request) -> Response:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return PlainTextResponse("ok")


async def _logout(request: Request) -> Response:
    _session(request).destroy()
    return PlainTextResponse("ok")


async def _everywhere(request: Request) -> Response:
    _session(request).sign_out_everywhere()
    return PlainTextResponse("ok")


#: (request, path, whether it only checks): in order, one browser.
ROUND_TRIP_STEPS = (
    ("no cookie, read", "/read", True),
    ("new session, write", "/write", True),
    ("read, no subject", "/read", True),
    ("write, no subject", "/write", True),
    ("login: regenerate() ends the anonymous session", "/login", False),
    ("read, with subject", "/read", True),
    ("write, with subject", "/write", True),
    ("logout: destroy() of a session with a subject", "/logout", False),
    ("login with no cookie", "/login", False),
    ("sign_out_everywhere(): the session, then its subject", "/everywhere", False),
)


async def redis_round_trips(url: str) -> list[tuple[str, int, bool]]:
    """Commands each request of `ROUND_TRIP_STEPS` sends to Redis."""
    prefix = f"bench-{secrets.token_hex(6)}"
    client = redis.asyncio.Redis.from_url(url, connection_class=_CountingConnection)
    app = Starlette(
        routes=[
            Route("/login", _login),
            Route("/read", _read),
            Route("/write", _write),
            Route("/logout", _logout),
            Route("/everywhere", _everywhere),
        ]
    )
    store = RedisRevocationStore(client=client, prefix=prefix, timeout=1.0)
    app.add_middleware(SessionMiddleware, secret=generate_key(), revocation=store)
    counts = []
    transport = httpx.ASGITransport(app=app)
    try:
        # Connected, and the script loaded, before counting.
        await store.revoke(
            os.urandom(16), subject=None, issued_at_ms=1, until=time.time() + 5
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="https://bench.example"
        ) as http:
            for name, path, checks_only in ROUND_TRIP_STEPS:
                before = _CountingConnection.writes
                response = await http.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: status {response.status_code}")
                counts.append((name, _CountingConnection.writes - before, checks_only))
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
    except redis.exceptions.RedisError as exc:
        raise RevocationStoreError(type(exc).__name__) from None
    finally:
        await client.aclose()
    return counts


async def footprint() -> tuple[float, float]:
    """Bytes per revoked id at 1M entries, and seconds to fill the store."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    store = MemoryRevocationStore(max_entries=FOOTPRINT_ENTRIES)
    now_ms = int(time.time() * 1000)
    until = time.time() + 86_400
    for n in range(FOOTPRINT_ENTRIES):
        # Distinct ids, issue times and lifetimes, as in real use.
        await store.revoke(
            os.urandom(16),
            subject=None,
            issued_at_ms=now_ms - n,
            until=until + n / 1000,
        )
    elapsed = time.perf_counter() - started
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(store) == FOOTPRINT_ENTRIES
    return used / FOOTPRINT_ENTRIES, elapsed


async def fold_pause() -> float:
    """Milliseconds one revoke takes when it makes a full store fold."""
    store = MemoryRevocationStore(max_entries=FOLD_ENTRIES)
    until = time.time() + 3600
    for n in range(FOLD_ENTRIES):
        await store.revoke(
            os.urandom(16), subject=None, issued_at_ms=n, until=until + n
        )
    logging.getLogger("cookiesession").disabled = True
    start = time.perf_counter()
    await store.revoke(os.urandom(16), subject=None, issued_at_ms=0, until=until)
    return (time.perf_counter() - start) * 1000


def table(rows: list[list[str]]) -> str:
    header = ["is_revoked", "per call (median)", "p25-p75", "store overhead"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


async def main(redis_url: str) -> None:
    rows, check_ns = await memory_rows()
    trips: list[tuple[str, int, bool]] = []
    try:
        rows += await redis_rows(redis_url)
        trips = await redis_round_trips(redis_url)
    except RevocationStoreError as exc:
        rows.append(["redis", f"unavailable ({exc})", "-", "-"])
    per_entry, fill_seconds = await footprint()
    pause_ms = await fold_pause()

    print(f"Python {sys.version.split()[0]} on {sys.platform}\n")
    print(table(rows))
    print()
    if trips:
        print("Redis round trips per request through the middleware, one browser:\n")
        print("| Request | Round trips |\n|---|---|")
        for name, count, _ in trips:
            print(f"| {name} | {count} |")
        print()
    print("### Targets\n")
    print("| Target | Measured | Result |\n|---|---|---|")
    verdict = "PASS" if check_ns <= MEMORY_CHECK_LIMIT_NS else "MISS"
    print(
        f"| memory store check, as the middleware makes it, under "
        f"{MEMORY_CHECK_LIMIT_NS / 1000:.0f} us | {check_ns:.0f} ns | {verdict} |"
    )
    if trips:
        most = max(count for _, count, checks_only in trips if checks_only)
        verdict = "PASS" if most <= 1 else "MISS"
        print(
            "| Redis: a request that only checks (read or write) adds one round "
            f"trip at most | at most {most} | {verdict} |"
        )
    else:
        print("| Redis: one round trip at most | Redis unavailable | MISS |")
    print()
    print(
        f"Memory store, {FOOTPRINT_ENTRIES:,} revoked ids: {per_entry:.0f} bytes "
        f"per entry ({per_entry * FOOTPRINT_ENTRIES / 1e6:.0f} MB, tracemalloc); "
        f"filled in {fill_seconds:.1f} s while traced."
    )
    print(
        f"One fold at max_entries={FOLD_ENTRIES:,}: {pause_ms:.0f} ms "
        "(the revoke that triggers it waits that long)."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    asyncio.run(main(parser.parse_args().redis_url))
