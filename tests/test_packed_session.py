"""Sessions read from a cookie keep their lists and dicts packed until read.

Each test drives the middleware with raw ASGI calls, so what reaches the
handler and what the response carries are seen exactly.
"""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cookiesession import (
    KeyRing,
    Session,
    SessionDataError,
    SessionMiddleware,
    TokenCodec,
    generate_key,
)
from cookiesession._serialize import MAX_DEPTH, Packed
from tests.strategies import storable_values

KEY = generate_key()

Handler = Callable[[Session], Any]


class Exchange:
    """One request through one middleware: what the handler saw and got."""

    def __init__(self, middleware: SessionMiddleware) -> None:
        self.middleware = middleware

    def __call__(self, cookie: str | None, handler: Handler) -> str | None:
        """Run `handler`; return the new cookie value, "" if cleared, None if
        no Set-Cookie was sent."""
        headers = [] if cookie is None else [(b"cookie", f"session={cookie}".encode())]
        scope = {"type": "http", "scheme": "https", "path": "/", "headers": headers}
        sent: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            handler(scope["session"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        # One middleware throughout, so values it sealed or opened are
        # remembered between requests, as in a server.
        self.middleware.app = app
        asyncio.run(self.middleware(scope, receive, send))
        return self._cookie(sent[0])

    def _cookie(self, start: dict[str, Any]) -> str | None:
        for key, value in start["headers"]:
            if key == b"set-cookie":
                pair = value.decode().split(";", 1)[0]
                return (
                    pair.split("=", 1)[1] if "Max-Age=0" not in value.decode() else ""
                )
        return None


def make() -> Exchange:
    return Exchange(SessionMiddleware(lambda *a: None, secret=KEY))


def data_of(token: str) -> dict[str, Any]:
    data: dict[str, Any] = TokenCodec(KeyRing(KEY), "session").open(token).payload.data
    return data


SEEDED: dict[str, Any] = {
    "user_id": 7,
    "cart": [{"sku": "A", "qty": 1}],
    "prefs": {"theme": "dark"},
}


def seeded(exchange: Exchange, data: dict[str, Any] | None = None) -> str:
    cookie = exchange(None, lambda s: s.update(copy.deepcopy(data or SEEDED)))
    assert cookie
    return cookie


# -- what stays packed --


def test_reading_a_scalar_unpacks_nothing_and_sends_no_cookie() -> None:
    exchange = make()
    cookie = seeded(exchange)
    seen: list[Any] = []

    def handler(session: Session) -> None:
        seen.append(session["user_id"])
        seen.append([type(v) for v in dict.values(session)])

    assert exchange(cookie, handler) is None
    assert seen[0] == 7
    assert seen[1] == [int, Packed, Packed]


def test_reading_a_container_gives_the_value_and_sends_no_cookie() -> None:
    exchange = make()
    cookie = seeded(exchange)
    seen: list[Any] = []
    assert exchange(cookie, lambda s: seen.append(s["cart"])) is None
    assert seen == [[{"sku": "A", "qty": 1}]]


def test_a_write_keeps_the_packed_values_intact() -> None:
    exchange = make()
    cookie = seeded(exchange)
    new = exchange(cookie, lambda s: s.__setitem__("user_id", 8))
    assert new
    assert data_of(new) == dict(SEEDED, user_id=8)


def test_the_remembered_value_is_not_changed_by_a_handler() -> None:
    exchange = make()
    cookie = seeded(exchange)
    exchange(cookie, lambda s: s["cart"].append("x"))
    seen: list[Any] = []
    assert exchange(cookie, lambda s: seen.append(dict(s))) is None
    assert seen == [SEEDED]


def test_every_value_unpacked_makes_it_a_plain_session() -> None:
    exchange = make()
    cookie = seeded(exchange)
    kinds: list[type] = []

    def handler(session: Session) -> None:
        kinds.append(type(session))
        session["cart"]
        kinds.append(type(session))
        session.get("prefs")
        kinds.append(type(session))

    exchange(cookie, handler)
    assert kinds[0] is not Session and issubclass(kinds[0], Session)
    assert kinds[1] is not Session
    assert kinds[2] is Session


def test_packed_repr_shows_no_data() -> None:
    packed = Packed(cbor2.dumps(["secret-token"]))
    assert "secret" not in repr(packed)


# -- every way of reading sees the data, and in-place changes are saved --


def _updated(target: dict[str, Any], source: Session) -> dict[str, Any]:
    target.update(source)
    return target


READERS: dict[str, Callable[[Session], dict[str, Any]]] = {
    "getitem": lambda s: {k: s[k] for k in list(s.keys())},
    "get": lambda s: {k: s.get(k) for k in list(s.keys())},
    "setdefault": lambda s: {k: s.setdefault(k, None) for k in list(s.keys())},
    "values": lambda s: dict(zip(list(s.keys()), list(s.values()), strict=True)),
    "items": lambda s: dict(s.items()),
    "copy": lambda s: s.copy(),
    "dict()": dict,
    "unpacking": lambda s: {**s},
    "update": lambda s: _updated({}, s),
    "or": lambda s: s | {},
    "ror": lambda s: {} | s,
    "json": lambda s: json.loads(json.dumps(s)),
    "deepcopy": copy.deepcopy,
    "pickle": lambda s: dict(pickle.loads(pickle.dumps(s))),  # noqa: S301
}


@pytest.mark.parametrize("reader", READERS, ids=list(READERS))
def test_every_reader_sees_the_data(reader: str) -> None:
    exchange = make()
    cookie = seeded(exchange)
    seen: list[dict[str, Any]] = []
    assert exchange(cookie, lambda s: seen.append(READERS[reader](s))) is None
    assert seen == [SEEDED]


def test_equality_compares_the_data() -> None:
    exchange = make()
    cookie = seeded(exchange)
    seen: list[bool] = []
    exchange(cookie, lambda s: seen.extend([s == SEEDED, s != SEEDED]))
    assert seen == [True, False]


@pytest.mark.parametrize(
    "reach",
    [
        lambda s: s["cart"],
        lambda s: s.get("cart"),
        lambda s: s.setdefault("cart", []),
        lambda s: next(v for v in s.values() if isinstance(v, list)),
        lambda s: dict(s.items())["cart"],
        lambda s: {**s}["cart"],
        lambda s: dict(s)["cart"],
        lambda s: s.copy()["cart"],
    ],
    ids=["getitem", "get", "setdefault", "values", "items", "unpack", "dict", "copy"],
)
def test_a_change_in_place_through_any_reader_is_saved(
    reach: Callable[[Session], Any],
) -> None:
    exchange = make()
    cookie = seeded(exchange)
    new = exchange(cookie, lambda s: reach(s)[0].update(qty=2))
    assert new
    assert data_of(new)["cart"] == [{"sku": "A", "qty": 2}]


def test_pop_returns_the_value() -> None:
    exchange = make()
    cookie = seeded(exchange)
    seen: list[Any] = []
    new = exchange(cookie, lambda s: seen.append(s.pop("prefs")))
    assert seen == [{"theme": "dark"}]
    assert new
    assert "prefs" not in data_of(new)


def test_a_type_change_of_equal_value_is_saved() -> None:
    exchange = make()
    cookie = seeded(exchange)
    new = exchange(cookie, lambda s: s["cart"][0].update(qty=True))
    assert new
    assert data_of(new)["cart"][0]["qty"] is True


def test_an_unstorable_value_put_in_place_raises_at_save() -> None:
    exchange = make()
    cookie = seeded(exchange)
    with pytest.raises(SessionDataError, match=r"session\['cart'\]\[0\]"):
        exchange(cookie, lambda s: s["cart"][0].update(when={1, 2}))


def test_data_nested_too_deep_in_place_raises_at_save() -> None:
    exchange = make()
    cookie = seeded(exchange)
    deep: list[Any] = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(SessionDataError, match="nested deeper"):
        exchange(cookie, lambda s: s["cart"].append(deep))


# -- a model: any mix of reads and changes ends as on a plain dict --

_values = storable_values(text_size=5, key_size=3, container_size=3, max_leaves=8)
_data = st.dictionaries(st.sampled_from("abcde"), _values, max_size=5)
_ops = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "get",
                "getitem",
                "items",
                "set",
                "delete",
                "append",
                "set-true",
                "values",
                "dict",
            ]
        ),
        st.sampled_from("abcdef"),
    ),
    max_size=6,
)


def _apply(session: dict[str, Any], ops: list[tuple[str, str]]) -> None:
    for op, key in ops:
        if op == "get":
            value = session.get(key)
        elif op == "getitem":
            value = session[key] if key in session else None  # noqa: SIM401
        elif op == "items":
            value = dict(session.items()).get(key)
        elif op == "values":
            value = dict(
                zip(list(session.keys()), list(session.values()), strict=True)
            ).get(key)
        elif op == "dict":
            value = dict(session).get(key)
        elif op == "set":
            session[key] = [key]
            continue
        elif op == "delete":
            session.pop(key, None)
            continue
        else:
            value = session.get(key)
            if isinstance(value, list):
                value.append(True if op == "set-true" else 1)
            elif isinstance(value, dict):
                value["z"] = True if op == "set-true" else 1
            continue
        del value


@settings(max_examples=200)
@given(data=_data, ops=_ops, restart=st.booleans())
def test_any_reads_and_changes_end_as_on_a_plain_dict(
    data: dict[str, Any], ops: list[tuple[str, str]], restart: bool
) -> None:
    exchange = make()
    cookie = exchange(None, lambda s: s.update(copy.deepcopy(data)))
    if restart:  # a server that never saw the cookie decrypts it
        exchange = make()
    stored = data if cookie else {}
    model = copy.deepcopy(stored)
    _apply(model, ops)
    new = exchange(cookie, lambda s: _apply(s, ops))
    if new is None:
        assert cbor2.dumps(stored) == cbor2.dumps(model)
    elif new == "":
        assert not model
    else:
        assert cbor2.dumps(data_of(new)) == cbor2.dumps(model)


def test_a_scalar_subclass_reads_back_as_its_base_type() -> None:
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    exchange = make()
    cookie = exchange(None, lambda s: s.update(level=Level.HIGH, tags=["a"]))
    assert cookie
    seen: list[Any] = []
    assert exchange(cookie, lambda s: seen.append(s["level"])) is None
    assert seen == [3]
    assert type(seen[0]) is int
