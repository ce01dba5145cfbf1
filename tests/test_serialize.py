"""What session data may hold, and what the decoder refuses."""

from __future__ import annotations

import enum
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiesession import MAX_DEPTH, SessionDataError
from cookiesession._serialize import (
    BUILTIN_TAGS,
    Packed,
    decode_one,
    decode_pair,
    dumps,
    dumps_counted,
    encode,
    pack,
    validate,
)
from tests.strategies import storable_values


class Colour(enum.IntEnum):
    RED = 1


class Word(str, enum.Enum):
    HELLO = "hello"


def round_trip(data: dict[str, Any]) -> Any:
    validate(data)
    return decode_one(encode(data))


def test_json_types_round_trip() -> None:
    data = {
        "none": None,
        "bools": [True, False],
        "int": -(2**63),
        "big": 2**64 - 1,
        "float": 1.5,
        "str": "héllo ☃",
        "list": [1, "a", [2.5]],
        "dict": {"nested": {"x": 1}},
    }
    assert round_trip(data) == data


def test_bytes_round_trip_and_tuples_read_back_as_lists() -> None:
    assert round_trip({"b": b"\x00\xff", "t": (1, (2, 3))}) == {
        "b": b"\x00\xff",
        "t": [1, [2, 3]],
    }


def test_bool_stays_bool_and_int_stays_int() -> None:
    back = round_trip({"t": True, "one": 1, "f": 1.0})
    assert type(back["t"]) is bool
    assert type(back["one"]) is int
    assert type(back["f"]) is float


def test_enum_members_are_stored_as_their_base_type() -> None:
    back = round_trip({"c": Colour.RED, "w": Word.HELLO})
    assert back == {"c": 1, "w": "hello"}
    assert type(back["c"]) is int
    assert type(back["w"]) is str


@pytest.mark.parametrize(
    ("data", "path", "type_name"),
    [
        ({"when": datetime(2026, 1, 1)}, "session['when']", "datetime"),
        ({"cart": [1, 2, {1, 2}]}, "session['cart'][2]", "set"),
        ({"a": {"b": Decimal(1)}}, "session['a']['b']", "Decimal"),
        ({"o": object()}, "session['o']", "object"),
        ({"f": print}, "session['f']", "builtin_function_or_method"),
    ],
)
def test_unstorable_value_names_key_path_and_type(
    data: dict[str, Any], path: str, type_name: str
) -> None:
    with pytest.raises(SessionDataError) as caught:
        validate(data)
    assert str(caught.value).startswith(path)
    assert type_name in str(caught.value)
    assert isinstance(caught.value, TypeError)


def test_non_string_key_is_refused() -> None:
    with pytest.raises(SessionDataError, match=r"session\['m'\]: dict key of type int"):
        validate({"m": {1: "x"}})


def test_message_never_contains_the_value() -> None:
    class Secretive:
        def __repr__(self) -> str:
            return "TOPSECRET"

    with pytest.raises(SessionDataError) as caught:
        validate({"x": Secretive()})
    assert "TOPSECRET" not in str(caught.value)


@pytest.mark.parametrize("value", [2**64, -(2**64) - 1, 10**30])
def test_int_beyond_64_bits_is_refused(value: int) -> None:
    with pytest.raises(SessionDataError, match="64-bit"):
        validate({"n": value})


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_nesting_up_to_the_limit_is_accepted() -> None:
    # The session dict itself is the first container.
    data = {"deep": nested(MAX_DEPTH - 1)}
    assert round_trip(data) == data


def test_nesting_beyond_the_limit_is_refused_before_encoding() -> None:
    with pytest.raises(SessionDataError, match=f"deeper than {MAX_DEPTH}"):
        validate({"deep": nested(MAX_DEPTH)})


def test_data_deep_enough_to_crash_the_encoder_is_refused_in_process() -> None:
    # In a child process, so that a regression shows as a crash there, not
    # here: cbor2's C encoder segfaults on data nested this deep.
    code = (
        "from cookiesession._serialize import validate\n"
        "from cookiesession import SessionDataError\n"
        "v = []\n"
        "for _ in range(200000): v = [v]\n"
        "try:\n"
        "    validate({'x': v})\n"
        "except SessionDataError:\n"
        "    print('refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "refused"


def tagged(tag: int, payload: bytes = b"\x01") -> bytes:
    if tag < 24:
        head = bytes([0xC0 | tag])
    elif tag < 256:
        head = bytes([0xD8, tag])
    elif tag < 65536:
        head = bytes([0xD9]) + tag.to_bytes(2, "big")
    else:
        head = bytes([0xDA]) + tag.to_bytes(4, "big")
    return head + payload


@pytest.mark.parametrize("tag", BUILTIN_TAGS)
def test_builtin_tag_is_refused(tag: int) -> None:
    for payload in (b"\x01", b"\x80", b"\x40", b"\x60", b"\xa0"):
        with pytest.raises(ValueError):
            decode_one(tagged(tag, payload))


def test_every_16_bit_tag_is_refused() -> None:
    # Guards against a cbor2 release adding a built-in tag we do not list.
    accepted = []
    for tag in range(65536):
        try:
            decode_one(tagged(tag))
        except ValueError:
            continue
        accepted.append(tag)
    assert accepted == []


@pytest.mark.parametrize(
    ("label", "blob"),
    [
        ("indefinite array", b"\x9f\x01\xff"),
        ("indefinite string", b"\x7f\x61a\xff"),
        ("duplicate key", b"\xa2\x61a\x01\x61a\x02"),
        ("trailing", b"\x01\x02"),
        ("truncated", b"\x82\x01"),
        ("too deep", b"\x81" * (MAX_DEPTH + 3) + b"\x80"),
        ("reserved additional info", b"\x1c"),
    ],
)
def test_decoder_refuses(label: str, blob: bytes) -> None:
    with pytest.raises(ValueError):
        decode_one(blob)


def test_decode_pair_reports_where_the_second_item_starts() -> None:
    first, second = cbor2.dumps([1, 2]), cbor2.dumps({"a": 1})
    assert decode_pair(first + second) == ([1, 2], {"a": 1}, len(first))


@pytest.mark.parametrize(
    "blob", [cbor2.dumps([1]), cbor2.dumps([1]) + b"\xa0\x00", b"\xa0\x9f\xff"]
)
def test_decode_pair_refuses_missing_or_trailing_items(blob: bytes) -> None:
    with pytest.raises(ValueError):
        decode_pair(blob)


def test_empty_blob_is_refused() -> None:
    with pytest.raises(ValueError):
        decode_one(b"")


@given(
    st.dictionaries(
        st.text(max_size=8),
        storable_values(text_size=8, key_size=4, container_size=3, max_leaves=8),
        max_size=6,
    )
)
def test_dumps_counted_encodes_like_dumps_and_counts_packed_values(
    data: dict[str, Any],
) -> None:
    has_container = any(type(v) in (list, dict) for v in data.values())
    assert dumps_counted(data) == (dumps(data), -1 if has_container else 0)
    template, packed = pack(data)
    # A template holds scalars and packed values only: it counts them all,
    # and encodes to the same bytes as the data it stands for.
    assert dumps_counted(template) == (dumps(data), packed)
    assert packed == sum(type(v) is Packed for v in template.values())


def test_dumps_counted_gives_no_count_for_scalar_subclasses() -> None:
    data = {"colour": Colour.RED, "word": Word.HELLO}
    assert dumps_counted(data) == (dumps({"colour": 1, "word": "hello"}), -1)


def test_dumps_counted_refuses_what_validate_refuses() -> None:
    with pytest.raises(SessionDataError, match=r"session\['when'\]"):
        dumps_counted({"when": datetime(2026, 1, 1)})
