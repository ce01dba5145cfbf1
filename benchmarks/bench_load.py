"""Load run over real HTTP: uvicorn on 127.0.0.1, with and without cookiesession.

Each variant has its own uvicorn server in a subprocess (port chosen by the
kernel, loopback only) serving the demo app's routes (`cookiesession._demo`).
A client of `N` concurrent virtual users (one `httpx.AsyncClient` and cookie
jar each) repeats the demo's JSON flow until a fixed number of requests is
done:

    POST /api/login -> POST /api/cart x3 -> GET /api/session -> POST /api/logout

Variants:

- none: the demo's routes and origin check without any session middleware;
  each request gets a session object that nothing loads or saves (the
  baseline);
- cookiesession: the demo app as `python -m cookiesession demo` builds it
  (`create_app`: SessionMiddleware with `refresh_after=0.5`);
- cookiesession + revocation: the same with a `MemoryRevocationStore`, so
  logout revokes the session id.

The requests are split over a few rounds; each round runs every variant once,
in a shuffled order, so a slow phase of the machine does not land on one
variant only. Each segment starts with a short warm-up that is not counted.
With a session, every flow is checked (the session shows the user and three
cart items); any failed check, HTTP error or non-2xx answer counts as an error.
Each variant stops at its time limit whatever happened, and every server is
terminated at the end, also on errors. On a machine with two or more CPUs the
servers are pinned to one CPU and the client to another.

    python benchmarks/bench_load.py                  # 3996 requests a variant
    python benchmarks/bench_load.py --quick          # 798 requests a variant
    python benchmarks/bench_load.py --output results/load.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import random
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

FULL_REQUESTS = 4000
QUICK_REQUESTS = 800
CONCURRENCY = 16
TIME_LIMIT_S = 60.0
START_TIMEOUT_S = 15.0
WARMUP_FLOWS = 32
ROUNDS = 3
FLOW_LENGTH = 6
CART = ("sku-1", "sku-2", "sku-3")
VARIANTS = ("none", "cookiesession", "cookiesession + revocation")
SERVER_CPU = 0
CLIENT_CPU = 1


# --------------------------------------------------------------------------
# The server side (runs in the subprocess)


class _ScratchSession:
    """Gives each request a session object that nothing loads or saves.

    The demo's handlers then run as they are, and no session middleware does
    any work: the baseline.
    """

    def __init__(self, app: Any) -> None:
        from cookiesession import Session

        self.app = app
        self.session_class = Session

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["session"] = self.session_class()
        await self.app(scope, receive, send)


def _build_app(variant: str) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    import cookiesession
    from cookiesession import _demo

    if variant == "none":
        app = Starlette(
            routes=_demo._routes(),
            middleware=[
                Middleware(_demo._SameOriginWrites),
                Middleware(_ScratchSession),
            ],
        )
        app.state.revocation = False
        return app
    store = (
        cookiesession.MemoryRevocationStore()
        if variant == "cookiesession + revocation"
        else None
    )
    return _demo.create_app(cookiesession.generate_key(), revocation=store)


def serve(variant: str, cpu: int | None) -> None:
    """Bind a free loopback port, print it, and serve until terminated."""
    import uvicorn

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    app = _build_app(variant)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets
    # only when their protocol says TCP; with Nagle's algorithm left on, a
    # response written in two parts waits for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    print(f"port {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


# --------------------------------------------------------------------------
# The client side


@contextlib.contextmanager
def _server(variant: str, cpu: int | None) -> Iterator[tuple[str, int]]:
    """Start the server subprocess; yield its base URL and pid; always stop it."""
    command = [sys.executable, __file__, "--serve", variant]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        stdout = cast(Any, process.stdout)
        ready, _, _ = select.select([stdout], [], [], START_TIMEOUT_S)
        line = stdout.readline() if ready else ""
        if not line.startswith("port "):
            raise RuntimeError(f"the {variant} server did not start")
        yield f"http://127.0.0.1:{int(line.split()[1])}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@dataclass(slots=True)
class Tally:
    """What one variant's client saw."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    requests: int = 0
    first_error: str = ""

    def fail(self, message: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = message


async def _wait_ready(base_url: str, deadline: float) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
        while True:
            try:
                if (await client.get("/api/session")).status_code == 200:
                    return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /api/session")
            await asyncio.sleep(0.05)


async def _flow(client: Any, user: str, checked: bool, tally: Tally | None) -> None:
    """One login-cart-session-logout flow; record into `tally` if given."""
    steps: list[tuple[str, str, dict[str, str] | None]] = [
        ("POST", "/api/login", {"username": user}),
        *(("POST", "/api/cart", {"item": item}) for item in CART),
        ("GET", "/api/session", None),
        ("POST", "/api/logout", {}),
    ]
    for method, path, body in steps:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, json=body)
        except Exception as exc:  # any failure of the request counts as an error
            if tally is None:
                raise
            tally.requests += 1
            tally.fail(f"{method} {path}: {type(exc).__name__}")
            return
        elapsed = time.perf_counter() - started
        if tally is None:
            response.raise_for_status()
            continue
        tally.requests += 1
        tally.latencies.append(elapsed)
        if response.status_code != 200:
            tally.fail(f"{method} {path}: HTTP {response.status_code}")
            return
        if checked and path == "/api/session":
            seen = response.json()
            if seen.get("user") != user or seen.get("cart") != list(CART):
                tally.fail(f"the session showed {seen!r}")


def _cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by process `pid` (Linux /proc), or None."""
    # schedstat counts nanoseconds on the CPU, per thread; stat's utime and
    # stime (fields 14 and 15 of proc(5)) only clock ticks, for the process.
    try:
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    else:
        return total / 1e9
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass(slots=True)
class Run:
    """One variant's client side, summed over its segments (one per round)."""

    variant: str
    budget_s: float
    tally: Tally = field(default_factory=Tally)
    seconds: float = 0.0
    server_cpu_s: float | None = 0.0
    client_cpu_s: float = 0.0
    rates: list[float] = field(default_factory=list)
    timed_out: bool = False

    def cpu_per_request(self) -> tuple[float | None, float | None]:
        """Server and client CPU microseconds per timed request."""
        n = self.tally.requests
        if not n or not self.seconds:
            return None, None
        server = None if self.server_cpu_s is None else self.server_cpu_s / n * 1e6
        return server, self.client_cpu_s / n * 1e6


@dataclass(slots=True)
class _Clock:
    """Wall clock and both sides' CPU times at the start or end of a segment."""

    wall: float
    server_cpu: float | None
    client_cpu: float

    @classmethod
    def now(cls, server_pid: int) -> _Clock:
        return cls(time.perf_counter(), _cpu_seconds(server_pid), time.process_time())


async def _segment(
    server: tuple[str, int], run: Run, flows: range, concurrency: int
) -> None:
    """Run `flows` against the server with warm users; add the result to `run`."""
    import httpx

    base_url, pid = server
    checked = run.variant != "none"
    next_flow = iter(flows)
    requests_before = run.tally.requests
    marks: list[_Clock] = []
    warmed = 0
    go = asyncio.Event()

    async def user(index: int) -> None:
        nonlocal warmed
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=base_url, timeout=10.0, limits=limits
        ) as client:
            try:
                for warm in range(-(-WARMUP_FLOWS // concurrency)):
                    await _flow(client, f"warm-{index}-{warm}", checked, None)
            finally:
                warmed += 1
                if warmed == concurrency:
                    # The clock starts once every user is warm and connected.
                    marks.append(_Clock.now(pid))
                    go.set()
            await go.wait()
            for flow in next_flow:
                await _flow(client, f"user-{flow}", checked, run.tally)

    tasks = [asyncio.create_task(user(i)) for i in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        end = _Clock.now(pid)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if marks:
            start = marks[0]
            seconds = end.wall - start.wall
            run.seconds += seconds
            run.client_cpu_s += end.client_cpu - start.client_cpu
            if (
                run.server_cpu_s is None
                or start.server_cpu is None
                or end.server_cpu is None
            ):
                run.server_cpu_s = None
            else:
                run.server_cpu_s += end.server_cpu - start.server_cpu
            if seconds > 0:
                run.rates.append((run.tally.requests - requests_before) / seconds)


async def _measure(
    server: tuple[str, int], run: Run, flows: range, concurrency: int
) -> None:
    """One segment of `run`, stopped when the variant's time budget runs out."""
    if run.timed_out:
        return
    started = time.monotonic()
    await _wait_ready(server[0], started + START_TIMEOUT_S)
    try:
        await asyncio.wait_for(
            _segment(server, run, flows, concurrency), timeout=run.budget_s
        )
    except asyncio.TimeoutError:
        run.timed_out = True
        run.tally.fail("time limit reached")
    run.budget_s -= time.monotonic() - started


# --------------------------------------------------------------------------
# Report


def _percentile_ms(values: list[float], q: float) -> str:
    return f"{_harness.quantile(values, q) * 1e3:.2f}" if values else "-"


def _row(run: Run) -> list[str]:
    tally = run.tally
    rate = tally.requests / run.seconds if run.seconds > 0 else 0.0
    server, client = run.cpu_per_request()
    spread = f"{min(run.rates):.0f}-{max(run.rates):.0f}" if run.rates else "-"
    return [
        run.variant,
        str(tally.requests),
        str(tally.errors),
        f"{run.seconds:.2f}",
        f"{rate:.0f}",
        spread,
        _percentile_ms(tally.latencies, 0.50),
        _percentile_ms(tally.latencies, 0.99),
        _percentile_ms(tally.latencies, 1.0),
        "-" if server is None else f"{server:.0f}",
        "-" if client is None else f"{client:.0f}",
    ]


def _stack() -> str:
    # What uvicorn's "auto" settings pick.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn, {loop} event loop, {http} HTTP parser, one worker"


def _report(
    runs: list[Run], args: argparse.Namespace, pinned: bool, elapsed_s: float
) -> str:
    out = ["# Load over HTTP", ""]
    env = _harness.environment_rows(
        ["cookiesession", "starlette", "uvicorn", "httpx", "h11"],
        {
            "Server": _stack() + ", 127.0.0.1, port from the kernel",
            "Client": f"httpx.AsyncClient x {args.concurrency} virtual users, one "
            "keep-alive connection and cookie jar each",
            "CPUs": f"server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}"
            if pinned
            else "not pinned (fewer than two usable CPUs)",
            "Flow": "the demo's JSON API: login, cart add x3, session, logout "
            "(6 requests)",
            "Warm-up": f"{-(-WARMUP_FLOWS // args.concurrency)} flow(s) per user "
            "and segment, not counted",
            "Rounds": f"{args.rounds}, each running every variant once, in an "
            f"order shuffled every round (seed {args.seed}); the table sums them",
            "Time limit": f"{args.time_limit:g} s per variant, warm-ups included",
            "Run time": f"{elapsed_s:.1f} s",
        },
    )
    out += [_harness.markdown_table(["", ""], env), ""]
    out += [
        "## Results",
        "",
        "Requests per second over all timed segments (and the lowest and "
        "highest round); latency is per request as the client saw it, in "
        "milliseconds, client work included. The CPU columns divide each "
        "process's CPU time during the timed segments by the "
        "requests: the server's column is where the middleware's cost shows; "
        "the side using about one CPU-second per second is the bottleneck.",
        "",
        _harness.markdown_table(
            [
                "Variant",
                "Requests",
                "Errors",
                "Seconds",
                "Requests/s",
                "Per round",
                "p50 ms",
                "p99 ms",
                "max ms",
                "Server CPU us/req",
                "Client CPU us/req",
            ],
            [_row(run) for run in runs],
            "lrrrrrrrrrr",
        ),
        "",
    ]
    base = next((r for r in runs if r.variant == "none"), None)
    notes = []
    for run in runs:
        if run.tally.first_error:
            notes.append(f"- {run.variant}: first error: {run.tally.first_error}")
        if base is not None and run is not base and run.seconds and base.seconds:
            ours = run.tally.requests / run.seconds
            theirs = base.tally.requests / base.seconds
            p50 = statistics.median(run.tally.latencies or [0.0])
            base_p50 = statistics.median(base.tally.latencies or [0.0])
            server, _ = run.cpu_per_request()
            base_server, _ = base.cpu_per_request()
            cpu = (
                ""
                if server is None or base_server is None
                else f", {server - base_server:+.0f} us server CPU per request"
            )
            notes.append(
                f"- {run.variant}: {100 * (ours / theirs - 1):+.1f}% requests/s, "
                f"{(p50 - base_p50) * 1e3:+.2f} ms p50{cpu}, against no "
                "middleware."
            )
    out += [*notes, ""]
    errors = sum(run.tally.errors for run in runs)
    requests = sum(run.tally.requests for run in runs)
    out += [
        "## Target",
        "",
        _harness.markdown_table(
            ["Target", "Measured", "Result"],
            [
                [
                    "no errors, every variant done within its time limit",
                    f"{errors} errors in {requests} requests",
                    "PASS" if errors == 0 else "MISS",
                ]
            ],
            "lrl",
        ),
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------
# Main


def _pinning() -> bool:
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is None:
        return False
    usable = affinity(0)
    return SERVER_CPU in usable and CLIENT_CPU in usable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument(
        "--requests",
        type=int,
        help=f"requests per variant, rounded down to whole flows of "
        f"{FLOW_LENGTH} (default {FULL_REQUESTS}, quick {QUICK_REQUESTS})",
    )
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"rounds the requests are split over (default {ROUNDS})",
    )
    parser.add_argument("--seed", type=int, default=1, help="shuffle seed")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=TIME_LIMIT_S,
        help=f"seconds a variant's client may run (default {TIME_LIMIT_S:g})",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="variants to run",
    )
    parser.add_argument(
        "--output", type=Path, help="also write the Markdown report to this file"
    )
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.cpu)
        return 0

    requests = args.requests or (QUICK_REQUESTS if args.quick else FULL_REQUESTS)
    flows = requests // FLOW_LENGTH
    if min(flows, args.concurrency, args.rounds, args.time_limit) <= 0:
        raise SystemExit("--requests, --concurrency, --rounds, --time-limit: > 0")
    started = time.perf_counter()
    pinned = _pinning()
    affinity = os.sched_getaffinity(0) if pinned else set()
    runs = {variant: Run(variant, args.time_limit) for variant in args.variants}
    try:
        with contextlib.ExitStack() as stack:
            # Every server is up for the whole run; only one is busy at a time.
            servers = {
                variant: stack.enter_context(
                    _server(variant, SERVER_CPU if pinned else None)
                )
                for variant in args.variants
            }
            if pinned:
                os.sched_setaffinity(0, {CLIENT_CPU})
            _rounds(servers, runs, flows, args)
    finally:
        if pinned:
            os.sched_setaffinity(0, affinity)
    text = _report(list(runs.values()), args, pinned, time.perf_counter() - started)
    _harness.emit(text, args.output)
    return 0 if all(run.tally.errors == 0 for run in runs.values()) else 1


def _rounds(
    servers: dict[str, tuple[str, int]],
    runs: dict[str, Run],
    flows: int,
    args: argparse.Namespace,
) -> None:
    rng = random.Random(args.seed)
    order = list(runs)
    bounds = [flows * i // args.rounds for i in range(args.rounds + 1)]
    for index in range(args.rounds):
        rng.shuffle(order)
        segment = range(bounds[index], bounds[index + 1])
        for variant in order:
            asyncio.run(
                _measure(servers[variant], runs[variant], segment, args.concurrency)
            )
        print(f"round {index + 1}/{args.rounds}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
