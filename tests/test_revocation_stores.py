"""The contract every revocation store keeps, run against each store."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, NamedTuple, Protocol
from unittest import mock

import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from cookiesession import _revocation
from cookiesession._revocation import (
    MemoryRevocationStore,
    RedisRevocationStore,
    RevocationStore,
    hash_session_id,
)

Body = Callable[[RevocationStore], Coroutine[Any, Any, None]]

# How long "short-lived" entries live: short, as the Redis tests really wait,
# yet long enough that a stalled machine does not see an entry expire before
# the test has looked at it.
SHORT = 1.0
LONG = 60.0


def new_id() -> bytes:
    return os.urandom(16)


class Env(Protocol):
    """How a contract test drives one kind of store."""

    def now(self) -> float:
        """The store's current time."""

    async def pass_instant(self, instant: float) -> None:
        """Return once the store's clock has reached `instant`."""

    def count(self) -> int:
        """Live entries the store holds."""

    def run(self, body: Body) -> None:
        """Run `body` in a new event loop with a store of this environment."""


class StoreContract:
    """Behaviour every `RevocationStore` must show; subclasses supply `env`."""

    @pytest.fixture
    def env(self) -> Env:
        raise NotImplementedError

    def test_is_a_revocation_store(self, env: Env) -> None:
        async def body(store: RevocationStore) -> None:
            assert isinstance(store, RevocationStore)

        env.run(body)

    def test_revoked_session_is_revoked(self, env: Env) -> None:
        alone, with_subject = new_id(), new_id()
        issued = int(env.now() * 1000)

        async def body(store: RevocationStore) -> None:
            until = env.now() + LONG
            await store.revoke(alone, subject=None, issued_at_ms=issued, until=until)
            await store.revoke(
                with_subject, subject="alice", issued_at_ms=issued, until=until
            )
            assert await store.is_revoked(alone, subject=None, issued_at_ms=issued)
            assert await store.is_revoked(
                with_subject, subject="alice", issued_at_ms=issued
            )

        env.run(body)

    def test_cookies_from_before_the_subject_was_set_are_revoked_too(
        self, env: Env
    ) -> None:
        # An anonymous session that later logged in: its early cookies carry
        # the same id without a subject.
        session = new_id()
        issued = int(env.now() * 1000)

        async def body(store: RevocationStore) -> None:
            until = env.now() + LONG
            await store.revoke(
                session, subject="alice", issued_at_ms=issued, until=until
            )
            assert await store.is_revoked(session, subject=None, issued_at_ms=issued)

        env.run(body)

    def test_other_sessions_are_not_revoked(self, env: Env) -> None:
        revoked = new_id()
        issued = int(env.now() * 1000)

        async def body(store: RevocationStore) -> None:
            until = env.now() + LONG
            await store.revoke(
                revoked, subject="alice", issued_at_ms=issued, until=until
            )
            for subject in (None, "alice", "bob"):
                assert not await store.is_revoked(
                    new_id(), subject=subject, issued_at_ms=issued
                )

        env.run(body)

    def test_entries_are_forgotten_once_until_passes(self, env: Env) -> None:
        session = new_id()
        issued = int(env.now() * 1000)

        async def body(store: RevocationStore) -> None:
            until = env.now() + SHORT
            await store.revoke(session, subject=None, issued_at_ms=issued, until=until)
            await store.revoke_subject("alice", before_ms=issued + 1, until=until)
            assert env.count() == 2

            await env.pass_instant(until)
            assert not await store.is_revoked(
                session, subject=None, issued_at_ms=issued
            )
            assert not await store.is_revoked(
                new_id(), subject="alice", issued_at_ms=issued
            )
            assert env.count() == 0

        env.run(body)

    def test_until_in_the_past_writes_nothing(self, env: Env) -> None:
        session = new_id()
        issued = int(env.now() * 1000) - 10_000

        async def body(store: RevocationStore) -> None:
            past = env.now() - 1.0
            await store.revoke(
                session, subject="alice", issued_at_ms=issued, until=past
            )
            await store.revoke_subject("alice", before_ms=issued + 1, until=past)
            assert env.count() == 0
            assert not await store.is_revoked(
                session, subject="alice", issued_at_ms=issued
            )
            # Nor does it raise the cut-off of an entry that is still alive.
            await store.revoke_subject("bob", before_ms=issued, until=env.now() + LONG)
            await store.revoke_subject("bob", before_ms=issued + 500, until=past)
            assert not await store.is_revoked(
                new_id(), subject="bob", issued_at_ms=issued + 1
            )

        env.run(body)

    def test_subject_revocation_rejects_sessions_issued_before_only(
        self, env: Env
    ) -> None:
        cut = int(env.now() * 1000)

        async def body(store: RevocationStore) -> None:
            await store.revoke_subject("alice", before_ms=cut, until=env.now() + LONG)

            async def revoked(subject: str | None, issued: int) -> bool:
                return await store.is_revoked(
                    new_id(), subject=subject, issued_at_ms=issued
                )

            assert await revoked("alice", cut - 1)
            assert await revoked("alice", 0)
            assert not await revoked("alice", cut)
            assert not await revoked("alice", cut + 1)
            assert not await revoked("bob", cut - 1)
            assert not await revoked(None, cut - 1)

        env.run(body)

    def test_subject_without_revocation_is_not_revoked(self, env: Env) -> None:
        async def body(store: RevocationStore) -> None:
            for subject in ("alice", "", "ünïcødé \N{SNOWMAN}", "a:{b}:u:*"):
                assert not await store.is_revoked(
                    new_id(), subject=subject, issued_at_ms=0
                )

        env.run(body)

    def test_subject_cutoff_is_never_lowered(self, env: Env) -> None:
        cut = int(env.now() * 1000)

        async def body(store: RevocationStore) -> None:
            until = env.now() + LONG
            await store.revoke_subject("alice", before_ms=cut, until=until)
            await store.revoke_subject("alice", before_ms=cut - 5_000, until=until)
            assert await store.is_revoked(
                new_id(), subject="alice", issued_at_ms=cut - 1
            )

        env.run(body)

    def test_a_later_call_never_shortens_an_entry(self, env: Env) -> None:
        session = new_id()
        cut = int(env.now() * 1000)

        async def body(store: RevocationStore) -> None:
            now = env.now()
            long, short = now + LONG, now + SHORT
            await store.revoke(session, subject=None, issued_at_ms=cut, until=long)
            await store.revoke(session, subject=None, issued_at_ms=cut, until=short)
            await store.revoke_subject("alice", before_ms=cut, until=long)
            # A higher cut-off with a shorter life: both maxima are kept.
            await store.revoke_subject("alice", before_ms=cut + 500, until=short)

            await env.pass_instant(short)
            assert await store.is_revoked(session, subject=None, issued_at_ms=cut)
            assert await store.is_revoked(
                new_id(), subject="alice", issued_at_ms=cut + 499
            )
            assert env.count() == 2

        env.run(body)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MemoryEnv:
    def __init__(self) -> None:
        self.clock = FakeClock(1_700_000_000.0)
        self.store = MemoryRevocationStore(clock=self.clock)

    def now(self) -> float:
        return self.clock.now

    async def pass_instant(self, instant: float) -> None:
        # Exactly the instant: an entry must be gone from `until` on.
        self.clock.now = max(self.clock.now, instant)

    def count(self) -> int:
        return len(self.store)

    def run(self, body: Body) -> None:
        asyncio.run(body(self.store))


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def env(self) -> MemoryEnv:
        return MemoryEnv()

    def test_entry_lasts_until_the_exact_instant(self) -> None:
        clock = FakeClock(1000.0)
        store = MemoryRevocationStore(clock=clock)
        session = new_id()

        async def body() -> None:
            await store.revoke(session, subject=None, issued_at_ms=1, until=1010.0)
            clock.now = 1009.999
            assert await store.is_revoked(session, subject=None, issued_at_ms=1)
            assert len(store) == 1
            clock.now = 1010.0
            assert not await store.is_revoked(session, subject=None, issued_at_ms=1)
            assert len(store) == 0

        asyncio.run(body())

    def test_full_store_folds_but_never_forgets(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        clock = FakeClock(1000.0)
        store = MemoryRevocationStore(max_entries=20, clock=clock)
        # Issue times ascending, lifetimes shuffled.
        sessions = [(new_id(), 100 + n, 2000.0 + n * 7 % 60) for n in range(60)]

        async def body() -> None:
            for session, issued, until in sessions:
                await store.revoke(
                    session, subject=None, issued_at_ms=issued, until=until
                )
                assert len(store) <= 20
            # However time moves, each stays revoked until its own `until`.
            for now in sorted({until - 0.5 for _, _, until in sessions}):
                clock.now = now
                for session, issued, until in sessions:
                    if until > now:
                        assert await store.is_revoked(
                            session, subject=None, issued_at_ms=issued
                        )
            # Issued after every revoked session: untouched by the watermark.
            assert not await store.is_revoked(
                new_id(), subject=None, issued_at_ms=10_000
            )
            clock.now = 2060.0
            assert len(store) == 0
            assert not await store.is_revoked(new_id(), subject=None, issued_at_ms=1)

        with caplog.at_level(logging.WARNING, logger="cookiesession"):
            asyncio.run(body())
        folds = [r for r in caplog.records if r.name == "cookiesession"]
        assert all(r.levelno == logging.WARNING for r in folds)
        assert "max_entries=20" in folds[0].getMessage()
        # Each fold makes room for a tenth of the cap, not for one entry.
        assert 1 <= len(folds) <= (60 - 20) // 2

    def test_fold_keeps_an_entry_that_outlives_the_watermark(self) -> None:
        clock = FakeClock(1000.0)
        store = MemoryRevocationStore(max_entries=10, clock=clock)
        short, long = new_id(), new_id()

        async def body() -> None:
            # Same issue time; the fold takes the short-lived one.
            await store.revoke(short, subject=None, issued_at_ms=5, until=1100.0)
            await store.revoke(long, subject=None, issued_at_ms=5, until=1200.0)
            for n in range(9):
                await store.revoke(
                    new_id(), subject=None, issued_at_ms=10 + n, until=1100.0
                )
            clock.now = 1150.0
            assert await store.is_revoked(long, subject=None, issued_at_ms=5)
            assert not await store.is_revoked(short, subject=None, issued_at_ms=6)

        asyncio.run(body())

    def test_folding_covers_subject_entries_too(self) -> None:
        clock = FakeClock(1000.0)
        store = MemoryRevocationStore(max_entries=3, clock=clock)

        async def body() -> None:
            for n in range(6):
                await store.revoke_subject(
                    f"user{n}", before_ms=100 + n, until=1500.0 + n
                )
            for n in range(6):
                assert await store.is_revoked(
                    new_id(), subject=f"user{n}", issued_at_ms=99 + n
                )
            assert len(store) <= 3

        asyncio.run(body())

    def test_fold_watermark_expires_with_the_entries_it_replaced(self) -> None:
        clock = FakeClock(1000.0)
        store = MemoryRevocationStore(max_entries=2, clock=clock)
        bystander = new_id()

        async def body() -> None:
            for n in range(3):
                await store.revoke(
                    new_id(), subject=None, issued_at_ms=10 + n, until=1100.0 + n
                )
            # Over-revocation while folded: never revoked, issued long ago.
            assert await store.is_revoked(bystander, subject=None, issued_at_ms=1)

            clock.now = 1102.0
            assert not await store.is_revoked(bystander, subject=None, issued_at_ms=1)
            assert len(store) == 0

        asyncio.run(body())

    @pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
    def test_max_entries_must_be_a_positive_int(self, bad: object) -> None:
        with pytest.raises(ValueError, match="max_entries"):
            MemoryRevocationStore(max_entries=bad)  # type: ignore[arg-type]


class Revoke(NamedTuple):
    session: int
    life: int


class Cut(NamedTuple):
    subject: str
    before_ms: int
    life: int


class Advance(NamedTuple):
    seconds: int


# The model's sessions: (subject, issued_at_ms), issue times in no set order.
MODEL_SESSIONS = [((None, "a", "b", "c")[n % 4], n * 37 % 100) for n in range(12)]
steps = st.lists(
    st.one_of(
        st.builds(Revoke, st.integers(0, len(MODEL_SESSIONS) - 1), st.integers(1, 40)),
        st.builds(Cut, st.sampled_from("abc"), st.integers(0, 100), st.integers(1, 40)),
        st.builds(Advance, st.integers(0, 30)),
    ),
    max_size=40,
)


@pytest.mark.parametrize(
    ("max_entries", "fold_share"), [(2, 10), (4, 2), (6, 3), (1000, 10)]
)
@settings(max_examples=150, deadline=None)
@given(script=steps)
def test_memory_store_never_revokes_less_than_a_plain_model(
    max_entries: int, fold_share: int, script: list[Revoke | Cut | Advance]
) -> None:
    clock = FakeClock(0.0)
    store = MemoryRevocationStore(max_entries=max_entries, clock=clock)
    ids = [bytes([n]) * 16 for n in range(len(MODEL_SESSIONS))]
    revoked: dict[int, float] = {}
    # Every cut as asked, and per subject the merged (max, max) entry.
    asked: list[tuple[str, int, float]] = []
    merged: dict[str, tuple[int, float]] = {}
    # A store that is never full answers exactly like the merged model; a
    # folding one may revoke more, but never less than was asked.
    exact = max_entries >= len(ids) + 3

    def model_says(n: int, *, as_merged: bool) -> bool:
        subject, issued = MODEL_SESSIONS[n]
        if revoked.get(n, -1.0) > clock.now:
            return True
        if as_merged:
            before, until = merged.get(subject or "", (0, -1.0))
            return until > clock.now and issued < before
        return any(
            cut_subject == subject and until > clock.now and issued < before
            for cut_subject, before, until in asked
        )

    async def body() -> None:
        for step in script:
            if isinstance(step, Revoke):
                subject, issued = MODEL_SESSIONS[step.session]
                until = clock.now + step.life
                revoked[step.session] = max(revoked.get(step.session, -1.0), until)
                await store.revoke(
                    ids[step.session], subject=subject, issued_at_ms=issued, until=until
                )
            elif isinstance(step, Cut):
                until = clock.now + step.life
                asked.append((step.subject, step.before_ms, until))
                before, old_until = merged.get(step.subject, (0, -1.0))
                if old_until <= clock.now:
                    before = 0
                merged[step.subject] = (
                    max(before, step.before_ms),
                    max(until, old_until),
                )
                await store.revoke_subject(
                    step.subject, before_ms=step.before_ms, until=until
                )
            else:
                clock.now += step.seconds

            assert len(store) <= max_entries
            for n, (subject, issued) in enumerate(MODEL_SESSIONS):
                got = await store.is_revoked(
                    ids[n], subject=subject, issued_at_ms=issued
                )
                if exact:
                    assert got == model_says(n, as_merged=True)
                elif model_says(n, as_merged=False):
                    assert got, "a revocation was forgotten"

    with mock.patch.object(_revocation, "_FOLD_SHARE", fold_share):
        asyncio.run(body())


class RedisEnv:
    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"cstest-{secrets.token_hex(8)}"
        self.inspect = redis.Redis.from_url(url)

    def now(self) -> float:
        return time.time()

    async def pass_instant(self, instant: float) -> None:
        # Redis expires on a millisecond clock; wait a little past the instant.
        await asyncio.sleep(max(0.0, instant - time.time()) + 0.02)

    def key_names(self) -> list[str]:
        return sorted(
            key.decode() for key in self.inspect.scan_iter(match=f"{self.prefix}:*")
        )

    def count(self) -> int:
        return len(self.key_names())

    def store(self) -> RedisRevocationStore:
        return RedisRevocationStore(self.url, prefix=self.prefix)

    def run(self, body: Body) -> None:
        async def main() -> None:
            store = self.store()
            try:
                await body(store)
            finally:
                await store.aclose()

        asyncio.run(main())

    def cleanup(self) -> None:
        keys = self.key_names()
        if keys:
            self.inspect.delete(*keys)
        self.inspect.close()


class TestRedisStore(StoreContract):
    @pytest.fixture
    def env(self, redis_url: str) -> Iterator[RedisEnv]:
        env = RedisEnv(redis_url)
        yield env
        env.cleanup()

    def test_two_stores_sharing_redis_see_each_others_revocations(
        self, env: RedisEnv
    ) -> None:
        session = new_id()
        cut = int(env.now() * 1000)

        async def body(first: RevocationStore) -> None:
            second = env.store()
            try:
                until = env.now() + LONG
                await first.revoke(
                    session, subject="alice", issued_at_ms=cut, until=until
                )
                await second.revoke_subject("bob", before_ms=cut, until=until)
                assert await second.is_revoked(
                    session, subject="alice", issued_at_ms=cut
                )
                assert await first.is_revoked(
                    new_id(), subject="bob", issued_at_ms=cut - 1
                )
            finally:
                await second.aclose()

        env.run(body)

    def test_a_revocation_with_a_subject_survives_a_flushed_script_cache(
        self, env: RedisEnv
    ) -> None:
        # As after a Redis restart: the script must be loaded again, and
        # both keys of the pair written.
        session = new_id()

        async def body(store: RevocationStore) -> None:
            until = env.now() + LONG
            await store.revoke(session, subject="alice", issued_at_ms=5, until=until)
            env.inspect.script_flush()
            other = new_id()
            await store.revoke(other, subject="alice", issued_at_ms=5, until=until)
            for revoked in (session, other):
                assert await store.is_revoked(revoked, subject="alice", issued_at_ms=5)
                assert await store.is_revoked(revoked, subject=None, issued_at_ms=5)
            assert env.count() == 4

        env.run(body)

    def test_key_names_hold_the_prefix_and_digests_only(self, env: RedisEnv) -> None:
        subject = "alice@example.com"
        with_subject, alone = new_id(), new_id()

        async def body(store: RevocationStore) -> None:
            until = env.now() + LONG
            await store.revoke(
                with_subject, subject=subject, issued_at_ms=1, until=until
            )
            await store.revoke(alone, subject=None, issued_at_ms=1, until=until)
            await store.revoke_subject(subject, before_ms=2, until=until)

        env.run(body)
        keys = env.key_names()
        # The session with a subject is written under its subject's tag and,
        # for its cookies from before it had a subject, under its own.
        assert len(keys) == 4
        for key in keys:
            assert key.startswith(env.prefix + ":{")
            for secret in (subject, "alice", with_subject.hex(), alone.hex()):
                assert secret not in key
        # A session with a subject lives in its subject's slot (one MGET).
        (subject_key,) = [key for key in keys if ":u:" in key]
        slot = key_slot(subject_key.encode())
        same_slot = [key for key in keys if key_slot(key.encode()) == slot]
        assert len(same_slot) == 2  # the subject key and the session key
        assert {tag(key) for key in same_slot} == {tag(subject_key)}
        # Log lines name a session by a prefix of its key digest.
        assert any(f":s:{hash_session_id(alone)}" in key for key in keys)

    def test_entry_ttl_matches_until(self, env: RedisEnv) -> None:
        session = new_id()
        until = time.time() + LONG

        async def body(store: RevocationStore) -> None:
            await store.revoke(session, subject="alice", issued_at_ms=1, until=until)
            await store.revoke_subject("alice", before_ms=2, until=until + 30)

        env.run(body)
        ttls = {key.split(":")[2]: env.inspect.pttl(key) for key in env.key_names()}
        remaining_ms = (until - time.time()) * 1000
        assert abs(ttls["s"] - remaining_ms) < 250
        assert abs(ttls["u"] - (remaining_ms + 30_000)) < 250

    def test_given_client_is_left_open(self, redis_url: str) -> None:
        async def body() -> None:
            client = redis.asyncio.Redis.from_url(redis_url)
            store = RedisRevocationStore(client=client, prefix="unused")
            await store.aclose()
            assert await client.ping()
            await client.aclose()

        asyncio.run(body())

    @pytest.mark.parametrize(
        ("kwargs", "word"),
        [
            ({}, "url and client"),
            ({"url": "redis://x", "client": object()}, "url and client"),
            ({"url": "redis://x", "prefix": ""}, "prefix"),
            ({"url": "redis://x", "prefix": "a{b}"}, "prefix"),
            ({"url": "redis://x", "timeout": 0}, "timeout"),
            ({"url": "redis://x", "timeout": float("inf")}, "timeout"),
        ],
    )
    def test_bad_arguments_are_refused_at_construction(
        self, kwargs: dict[str, object], word: str
    ) -> None:
        with pytest.raises(ValueError, match=word):
            RedisRevocationStore(**kwargs)  # type: ignore[arg-type]


def tag(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


def test_redis_store_without_redis_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("redis", "redis.asyncio", "redis.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'cookiesession\[redis\]'"):
        RedisRevocationStore("redis://127.0.0.1:6379/0")


def test_package_imports_without_redis() -> None:
    code = (
        "import sys; sys.modules['redis'] = None; "
        "import cookiesession._revocation as r; r.MemoryRevocationStore()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_hash_session_id_is_short_stable_and_opaque() -> None:
    session = new_id()
    name = hash_session_id(session)
    assert len(name) == 12
    assert int(name, 16) >= 0
    assert name == hash_session_id(session)
    assert name != hash_session_id(new_id())
    assert name not in session.hex()
    assert "hash_session_id" in _revocation.__all__
