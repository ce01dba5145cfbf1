"""Many users at once against two uvicorn workers that share one Redis.

Each virtual user logs in, fills a cart, reads its profile, logs out and then
replays the cookie it held before logging out. Nobody may see another user's
data, nothing may fail with a 5xx, every replay must be refused whichever
worker serves it, and the workers' memory must stay flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cookiesession import generate_key
from tests.live_server import free_port
from tests.load_app import WORKER_HEADER

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = ROOT / "test-artifacts" / "load-summary.json"

USERS = 24
FLOWS = 300
WARMUP_FLOWS = 48
REQUESTS_PER_FLOW = 7
WALL_CLOCK = 60.0
STARTUP = 30.0
REQUEST_TIMEOUT = 10.0
RSS_GROWTH_LIMIT_KB = 30 * 1024
WORKERS = 2
# Lines that never belong in the server log of a healthy run.
LOG_ALARMS = ("Traceback", "Exception")
# One TLS context for every client: building one per client (the default)
# costs more CPU than the plain-http requests the client then sends.
TLS = ssl.create_default_context()


@dataclass
class Server:
    """A running `uvicorn --workers 2` serving tests.load_app."""

    base: str
    log: Path
    prefix: str

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def alarms(self) -> list[str]:
        return [
            line
            for line in self.log_text().splitlines()
            if any(word in line for word in LOG_ALARMS)
        ]


def wait_until_up(server: Server, process: subprocess.Popen[bytes]) -> None:
    """Wait (bounded) for /health and for every worker to finish starting."""
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"uvicorn exited early:\n{server.log_text()}")
        started = server.log_text().count("Application startup complete")
        try:
            answer = httpx.get(server.base + "/health", timeout=1, trust_env=False)
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 200 and started >= WORKERS:
            return
        time.sleep(0.1)
    pytest.fail(f"uvicorn did not come up within {STARTUP} s:\n{server.log_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Shut uvicorn down gracefully, then make sure its whole group is gone."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


@contextlib.contextmanager
def serve_app(
    tmp_path: Path, redis_url: str, failure: str = "closed"
) -> Iterator[Server]:
    """Run tests.load_app under uvicorn with two workers; yield the server."""
    port = free_port()
    server = Server(
        base=f"http://127.0.0.1:{port}",
        log=tmp_path / f"uvicorn-{failure}.log",
        prefix=f"cookiesession-load-{uuid.uuid4().hex}",
    )
    env = {
        **os.environ,
        "COOKIESESSION_KEYS": generate_key(),
        "LOAD_REDIS_URL": redis_url,
        "LOAD_REDIS_PREFIX": server.prefix,
        "LOAD_FAILURE": failure,
        "LOAD_LOG": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.load_app:create_app",
        "--factory",
        "--workers",
        str(WORKERS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    with server.log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(server, process)
        yield server
    finally:
        stop(process)


def session_cookie(response: httpx.Response) -> str | None:
    """The value this response sets for the `session` cookie ("" if cleared)."""
    for line in response.headers.get_list("set-cookie"):
        name, _, rest = line.partition("=")
        if name == "session":
            value, _, attributes = rest.partition(";")
            return "" if "Max-Age=0" in attributes else value
    return None


@dataclass
class Tally:
    """What the clients saw: every request's latency, status and worker."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    workers: Counter[str] = field(default_factory=Counter)
    transport_errors: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    replays: int = 0
    replays_rejected: int = 0
    cross_worker_replays: int = 0

    async def send(
        self, client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        started = time.perf_counter()
        response = await client.request(method, path, **kwargs)
        self.latencies.append(time.perf_counter() - started)
        self.statuses[response.status_code] += 1
        self.workers[response.headers.get(WORKER_HEADER, "?")] += 1
        return response

    def merge(self, other: Tally) -> None:
        """Count `other`'s requests as this tally's too."""
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.workers.update(other.workers)
        self.transport_errors += other.transport_errors
        self.wrong += other.wrong

    def expect(self, flow: str, what: str, got: object, wanted: object) -> bool:
        if got != wanted:
            self.wrong.append(f"{flow} {what}: got {got!r}, wanted {wanted!r}")
        return got == wanted

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def client(base: str, *, keep_alive: bool = True) -> httpx.AsyncClient:
    limits = httpx.Limits(max_keepalive_connections=None if keep_alive else 0)
    return httpx.AsyncClient(
        base_url=base,
        timeout=REQUEST_TIMEOUT,
        trust_env=False,
        limits=limits,
        verify=TLS,
    )


async def user_flow(
    browser: httpx.AsyncClient, base: str, user: str, tally: Tally
) -> None:
    """Login, cart x3, profile, logout; then replay the old cookie elsewhere."""
    browser.cookies.clear()
    login = await tally.send(browser, "POST", "/login", json={"user": user})
    if not tally.expect(user, "login", login.status_code, 200):
        return

    items = [f"{user}-item-{i}" for i in range(3)]
    for count, item in enumerate(items, 1):
        added = await tally.send(browser, "POST", "/cart", json={"item": item})
        tally.expect(user, "cart", added.json(), {"cart": items[:count]})
    profile = await tally.send(browser, "GET", "/profile")
    tally.expect(user, "profile", profile.json(), {"user": user, "cart": items})

    saved = browser.cookies.get("session")
    logout = await tally.send(browser, "POST", "/logout")
    tally.expect(user, "logout", logout.status_code, 200)
    tally.expect(user, "logout cookie", session_cookie(logout), "")
    tally.expect(user, "jar after logout", browser.cookies.get("session"), None)

    async with client(base) as fresh:
        replay = await tally.send(
            fresh, "GET", "/profile", headers={"cookie": f"session={saved}"}
        )
    tally.replays += 1
    if tally.expect(user, "replay", replay.status_code, 401):
        tally.replays_rejected += 1
        if replay.headers[WORKER_HEADER] != logout.headers[WORKER_HEADER]:
            tally.cross_worker_replays += 1


async def virtual_user(
    base: str, users: Iterator[str], tally: Tally, stop_after: float, keep_alive: bool
) -> None:
    """Run flows from the shared `users` iterator until it runs dry.

    A user that keeps its connection alive stays with one worker, as a
    browser would; one that does not may land on either worker at every
    request, as behind a load balancer.
    """
    async with client(base, keep_alive=keep_alive) as browser:
        for user in users:
            if time.monotonic() > stop_after:
                return
            try:
                await user_flow(browser, base, user, tally)
            except httpx.TransportError as exc:
                tally.transport_errors.append(f"{user}: {type(exc).__name__}")


async def drive(base: str, names: list[str], concurrency: int, tally: Tally) -> None:
    users = iter(names)
    stop_after = time.monotonic() + WALL_CLOCK
    await asyncio.gather(
        *(
            virtual_user(base, users, tally, stop_after, keep_alive=n % 2 == 0)
            for n in range(concurrency)
        )
    )


def run_flows(base: str, names: list[str], concurrency: int) -> tuple[Tally, float]:
    """Run one flow per name, `concurrency` at a time, within the wall clock."""
    tally = Tally()
    started = time.monotonic()
    try:
        asyncio.run(
            asyncio.wait_for(drive(base, names, concurrency, tally), WALL_CLOCK + 5)
        )
    except asyncio.TimeoutError:
        pytest.fail(f"the load run did not finish within {WALL_CLOCK} s")
    return tally, time.monotonic() - started


def assert_clean(tally: Tally, flows: int) -> None:
    assert tally.transport_errors == []
    assert tally.server_errors() == 0, tally.statuses
    assert tally.wrong == []
    assert len(tally.latencies) == flows * REQUESTS_PER_FLOW
    assert tally.replays == flows
    assert tally.replays_rejected == flows


async def sample_rss_async(base: str, per_worker: int) -> dict[int, list[int]]:
    samples: dict[int, list[int]] = {}
    async with client(base, keep_alive=False) as probe:
        for _ in range(50):
            batch = await asyncio.gather(*(probe.get("/rss") for _ in range(8)))
            for answer in batch:
                reading = answer.json()
                samples.setdefault(reading["pid"], []).append(reading["rss_kb"])
            if len(samples) >= WORKERS and all(
                len(kb) >= per_worker for kb in samples.values()
            ):
                break
    return samples


def sample_rss(base: str, per_worker: int = 10) -> dict[int, int]:
    """Median RSS (KiB) per worker pid, over fresh connections to reach both."""
    samples = asyncio.run(sample_rss_async(base, per_worker))
    assert len(samples) == WORKERS, f"reached workers {sorted(samples)} only"
    return {pid: int(statistics.median(kb)) for pid, kb in samples.items()}


def forget_prefix(redis_url: str, prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as connection:
        for key in connection.scan_iter(match=f"{prefix}:*", count=1000):
            connection.delete(key)


def summarize(
    tally: Tally, elapsed: float, before: dict[int, int], after: dict[int, int]
) -> dict[str, Any]:
    cuts = statistics.quantiles(tally.latencies, n=100)
    return {
        "requests": len(tally.latencies),
        "flows": tally.replays,
        "concurrency": USERS,
        "server_errors": tally.server_errors(),
        "transport_errors": len(tally.transport_errors),
        "wrong_answers": len(tally.wrong),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(tally.latencies) / elapsed, 1),
        "p50_ms": round(cuts[49] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "max_ms": round(max(tally.latencies) * 1000, 1),
        "replays_rejected": tally.replays_rejected,
        "cross_worker_replays": tally.cross_worker_replays,
        "requests_per_worker": dict(tally.workers),
        "rss_kb": {str(pid): [before[pid], after[pid]] for pid in before},
    }


def one_line(summary: dict[str, Any]) -> str:
    rss = ", ".join(
        f"worker {pid} {start / 1024:.1f}->{end / 1024:.1f} MB"
        for pid, (start, end) in summary["rss_kb"].items()
    )
    return (
        f"load: {summary['requests']} requests in {summary['seconds']} s "
        f"({summary['requests_per_second']} req/s), "
        f"{summary['server_errors']} 5xx, {summary['transport_errors']} transport "
        f"errors, p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms; "
        f"replays rejected {summary['replays_rejected']}/{summary['flows']} "
        f"({summary['cross_worker_replays']} on the other worker); RSS {rss}"
    )


def test_many_users_stay_apart_and_every_logout_sticks_across_workers(
    tmp_path: Path, redis_url: str
) -> None:
    with serve_app(tmp_path, redis_url) as server:
        try:
            # A warm-up first, so that the RSS baseline already holds what a
            # worker allocates once (imports, Redis connections, caches).
            warm_names = [f"warm-{n:03d}" for n in range(WARMUP_FLOWS)]
            warmup, _ = run_flows(server.base, warm_names, USERS)
            assert_clean(warmup, WARMUP_FLOWS)
            before = sample_rss(server.base)

            names = [f"user-{n:04d}" for n in range(FLOWS)]
            tally, elapsed = run_flows(server.base, names, USERS)
            after = sample_rss(server.base)
        finally:
            forget_prefix(redis_url, server.prefix)

    summary = summarize(tally, elapsed, before, after)
    SUMMARY.parent.mkdir(exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n")
    print(one_line(summary))

    assert_clean(tally, FLOWS)
    # Both workers served, and logouts on one were honoured by the other.
    assert set(tally.workers) == {str(pid) for pid in before}
    assert tally.cross_worker_replays > 0
    assert before.keys() == after.keys(), "a worker was replaced during the run"
    for pid, start in before.items():
        assert after[pid] - start < RSS_GROWTH_LIMIT_KB, summary["rss_kb"]
    assert server.alarms() == []
    assert "cookiesession" not in server.log_text()
