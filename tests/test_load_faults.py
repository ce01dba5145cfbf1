"""Two uvicorn workers while their Redis goes away and comes back.

With `revocation_failure="closed"` a cookie the store cannot check gives a
fresh session, but the cookie is left in place so that it works again once
Redis answers; with "open" it is accepted and each worker logs one WARNING
for the outage. In both modes nothing fails with a 5xx, and after Redis
restarts on the same port (the app keeps running) logouts revoke again.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.load_app import WORKER_HEADER
from tests.redis_server import RedisServer
from tests.test_load import (
    WORKERS,
    Server,
    Tally,
    client,
    drive,
    serve_app,
    session_cookie,
)

BUDGET = 45.0
RECOVERY = 10.0
LOG_WAIT = 3.0
RECOVERED_STREAK = 3
# A request checks its cookie once, and each check gives up after 0.25 s.
OUTAGE_LATENCY_LIMIT = 2.0
USERS = [f"user-{n}" for n in range(6)]


def url_of(redis_server: RedisServer) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/0"


def cart_of(user: str) -> list[str]:
    return [f"{user}-apple", f"{user}-pear"]


async def sign_in(tally: Tally, base: str, user: str) -> str:
    """Log `user` in, fill the cart; return the session cookie's value."""
    async with client(base) as browser:
        login = await tally.send(browser, "POST", "/login", json={"user": user})
        assert login.status_code == 200
        for item in cart_of(user):
            added = await tally.send(browser, "POST", "/cart", json={"item": item})
            assert added.status_code == 200
        cookie = browser.cookies.get("session")
    assert cookie
    return cookie


async def on_both_workers(
    tally: Tally, base: str, cookie: str, width: int = 4
) -> list[httpx.Response]:
    """GET /profile with `cookie` until both workers have answered.

    Each request has a connection of its own, `width` of them at a time.
    """
    answers: list[httpx.Response] = []
    headers = {"cookie": f"session={cookie}"}
    async with client(base, keep_alive=False) as probe:
        for _ in range(25):
            batch = await asyncio.gather(
                *(
                    tally.send(probe, "GET", "/profile", headers=headers)
                    for _ in range(width)
                )
            )
            answers.extend(batch)
            if len({answer.headers[WORKER_HEADER] for answer in answers}) == WORKERS:
                return answers
    pytest.fail(f"only one worker answered {len(answers)} requests")


def statuses(answers: list[httpx.Response]) -> set[int]:
    return {answer.status_code for answer in answers}


def pids_of(lines: list[str]) -> Counter[str]:
    """How many of `lines` each worker logged (its pid is in brackets)."""
    return Counter(re.findall(r"\[(\d+)\]", "\n".join(lines)))


async def logged(server: Server, pattern: str, everywhere: bool = True) -> list[str]:
    """Server log lines matching `pattern`, waiting (bounded) for some.

    With `everywhere`, waits until every worker has logged one.
    """
    deadline = time.monotonic() + LOG_WAIT
    while True:
        found = re.findall(f"^.*{pattern}.*$", server.log_text(), re.MULTILINE)
        enough = len(pids_of(found)) == WORKERS if everywhere else bool(found)
        if enough or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def log_out(tally: Tally, base: str, cookie: str) -> httpx.Response:
    async with client(base) as browser:
        browser.cookies.set("session", cookie)
        return await tally.send(browser, "POST", "/logout")


async def flows_revoke_everywhere(tally: Tally, base: str, tag: str) -> None:
    """Full user flows, then one logged-out cookie replayed on both workers."""
    flows = Tally()
    await drive(base, [f"{tag}-{n}" for n in range(12)], 6, flows)
    assert flows.wrong == []
    assert flows.transport_errors == []
    assert flows.replays_rejected == flows.replays == 12
    tally.merge(flows)

    user = f"{tag}-everywhere"
    cookie = await sign_in(tally, base, user)
    assert session_cookie(await log_out(tally, base, cookie)) == ""
    assert statuses(await on_both_workers(tally, base, cookie)) == {401}


async def while_redis_is_down(
    tally: Tally, server: Server, cookies: dict[str, str], mode: str
) -> None:
    for user, cookie in cookies.items():
        answers = await on_both_workers(tally, server.base, cookie)
        if mode == "closed":
            assert statuses(answers) == {401}
            # Not cleared: the session comes back with the store.
            assert {session_cookie(answer) for answer in answers} == {None}
        else:
            assert statuses(answers) == {200}
            wanted = {"user": user, "cart": cart_of(user)}
            assert all(answer.json() == wanted for answer in answers)

    # A login needs no check of an old cookie, so it still works.
    newcomer = await sign_in(tally, server.base, "newcomer")
    wanted_status = 401 if mode == "closed" else 200
    assert statuses(await on_both_workers(tally, server.base, newcomer)) == {
        wanted_status
    }

    warnings = await logged(
        server, f"WARNING .* revocation store unavailable: failing {mode}"
    )
    assert set(pids_of(warnings).values()) == {1}, warnings


async def until_recovered(
    tally: Tally, base: str, held: dict[str, str], revoked: str
) -> float:
    """Seconds until held cookies work and the revoked one is refused again.

    Recovered means: on both workers, for several rounds in a row, every held
    cookie gives its own profile and the revoked one gives 401.
    """
    started = good_since = time.monotonic()
    streak = 0
    while streak < RECOVERED_STREAK:
        if time.monotonic() - started > RECOVERY:
            pytest.fail(f"sessions were not checked again within {RECOVERY} s")
        if streak == 0:
            good_since = time.monotonic()
        good = True
        for user, cookie in held.items():
            answers = await on_both_workers(tally, base, cookie, width=16)
            wanted = {"user": user, "cart": cart_of(user)}
            good &= all(answer.json() == wanted for answer in answers)
        answers = await on_both_workers(tally, base, revoked, width=16)
        good &= statuses(answers) == {401}
        streak = streak + 1 if good else 0
    return good_since - started


async def outage_and_recovery(
    tally: Tally, server: Server, redis_server: RedisServer, mode: str
) -> None:
    await flows_revoke_everywhere(tally, server.base, "before")
    cookies = {user: await sign_in(tally, server.base, user) for user in USERS}
    for user, cookie in cookies.items():
        for answer in await on_both_workers(tally, server.base, cookie):
            assert answer.json() == {"user": user, "cart": cart_of(user)}

    await asyncio.to_thread(redis_server.stop)
    during = len(tally.latencies)
    await while_redis_is_down(tally, server, cookies, mode)
    slowest = max(tally.latencies[during:])
    assert slowest < OUTAGE_LATENCY_LIMIT

    await asyncio.to_thread(redis_server.start)
    probe = await sign_in(tally, server.base, "probe")
    assert session_cookie(await log_out(tally, server.base, probe)) == ""
    recovered = await until_recovered(tally, server.base, cookies, probe)
    await flows_revoke_everywhere(tally, server.base, "after")
    back = await logged(server, "WARNING .* revocation store answering again")
    assert len(pids_of(back)) == WORKERS, back
    print(
        f"outage ({mode}): slowest request {slowest * 1000:.0f} ms, "
        f"sessions back after {recovered:.2f} s, "
        f"{len(tally.latencies)} requests {dict(tally.statuses)}"
    )


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_sessions_survive_a_redis_outage_and_revocation_resumes_after_it(
    mode: str, tmp_path: Path, own_redis: RedisServer
) -> None:
    tally = Tally()
    with serve_app(tmp_path, url_of(own_redis), failure=mode) as server:
        try:
            asyncio.run(
                asyncio.wait_for(
                    outage_and_recovery(tally, server, own_redis, mode), BUDGET
                )
            )
        except asyncio.TimeoutError:
            pytest.fail(f"the outage scenario did not finish within {BUDGET} s")

    assert tally.server_errors() == 0, tally.statuses
    assert server.alarms() == []
    assert " ERROR " not in server.log_text()


async def logout_while_redis_is_down(
    server: Server, redis_server: RedisServer
) -> httpx.Response:
    tally = Tally()
    cookie = await sign_in(tally, server.base, "leaving")
    await asyncio.to_thread(redis_server.stop)
    return await log_out(tally, server.base, cookie)


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_logout_while_redis_is_down_clears_the_cookie_and_logs_an_error(
    mode: str, tmp_path: Path, own_redis: RedisServer
) -> None:
    with serve_app(tmp_path, url_of(own_redis), failure=mode) as server:
        logout = asyncio.run(
            asyncio.wait_for(logout_while_redis_is_down(server, own_redis), BUDGET)
        )
        assert logout.status_code == 200
        assert session_cookie(logout) == ""
        errors = asyncio.run(
            logged(server, "ERROR .* could not revoke", everywhere=False)
        )
        assert len(errors) == 1, errors

    assert server.alarms() == []


async def restart_without_traffic(
    server: Server, redis_server: RedisServer, mode: str
) -> set[int]:
    """Statuses of the first checks after Redis restarted while nobody asked."""
    tally = Tally()
    held = await sign_in(tally, server.base, "held")
    leaving = await sign_in(tally, server.base, "leaving")
    # Concurrent checks make each worker pool several Redis connections.
    for _ in range(3):
        await on_both_workers(tally, server.base, held, width=16)

    await asyncio.to_thread(redis_server.stop)
    await asyncio.to_thread(redis_server.start)
    assert tally.server_errors() == 0
    if mode == "closed":
        # Redis answers: a held session must not be turned away.
        answers = await on_both_workers(tally, server.base, held, width=16)
        return statuses(answers) - {200}
    # Redis answers: a logged-out cookie must not be accepted unchecked.
    assert (await log_out(tally, server.base, leaving)).status_code == 200
    answers = await on_both_workers(tally, server.base, leaving, width=16)
    return statuses(answers) - {401}


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_every_check_after_a_redis_restart_reaches_the_new_redis(
    mode: str, tmp_path: Path, own_redis: RedisServer
) -> None:
    with serve_app(tmp_path, url_of(own_redis), failure=mode) as server:
        unexpected = asyncio.run(
            asyncio.wait_for(restart_without_traffic(server, own_redis, mode), BUDGET)
        )
    assert unexpected == set()
