"""Session data to CBOR and back, accepting on the way in only what goes out.

What a session may hold: None, bool, int (within 64 bits), float, str, bytes,
list, tuple (read back as a list) and dict with str keys, nested at most
`MAX_DEPTH` containers deep. Subclasses of the scalar types (an `IntEnum`, a
`StrEnum`) are stored as their base type.

cbor2's encoder recurses in C and crashes the process on data nested a few
thousand levels deep, and its decoder turns on every built-in semantic tag by
default (shared references, regular expressions, huge decimals...). So data
is checked in Python before encoding, and decoding runs with every tag
refused, bounded depth, no indefinite lengths and no duplicate keys.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, cast

import cbor2

from cookiesession._errors import SessionDataError

__all__ = [
    "MAX_DEPTH",
    "Packed",
    "decode_one",
    "decode_pair",
    "dumps",
    "dumps_counted",
    "encode",
    "fits_value",
    "pack",
    "validate",
]

#: Containers (lists, tuples, dicts) may nest this deep inside the session.
MAX_DEPTH = 32

_INT_MIN = -(1 << 64)
_INT_MAX = (1 << 64) - 1

# Every tag number cbor2 decodes natively (checked by a test that probes all
# 16-bit tags). Mapping each to a rejecting decoder turns them off; any other
# tag reaches `tag_hook` and is rejected there.
BUILTIN_TAGS = (
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258,
    260, 261, 1004, 43000, 55799,
)  # fmt: skip


class _RefusedError(ValueError):
    pass


def _refuse_tag(*_: object) -> NoReturn:
    raise _RefusedError("CBOR tags are not accepted")


_SEMANTIC: dict[int, Callable[..., Any]] = dict.fromkeys(BUILTIN_TAGS, _refuse_tag)
_local = threading.local()
_DECODE_ERRORS = (cbor2.CBORError, ValueError, TypeError, EOFError, RecursionError)


class Packed:
    """A top-level list or dict of a session, kept as its CBOR encoding.

    A session read from a cookie holds these in place of its containers until
    the handler reads them (see `Session`): most requests read a user id and
    never look at the cart. The bytes are this module's own encoding of data
    that passed `validate` or the strict decoder, so they encode back as
    themselves and decode with the plain decoder.
    """

    __slots__ = ("cbor",)

    def __init__(self, cbor: bytes) -> None:
        self.cbor = cbor

    def __repr__(self) -> str:
        # Never the bytes: they are session data.
        return "<cookiesession value not read yet; use dict(session) to read all>"

    def thaw(self) -> Any:
        """A fresh copy of the value."""
        return cbor2.loads(self.cbor)


def pack(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """`data` with each list or dict value replaced by a `Packed` copy.

    `data` must be valid session data with exact types (decoded, or checked
    by `validate`). Returns the new dict and how many values were packed.
    """
    template: dict[str, Any] = {}
    packed = 0
    for key, value in data.items():
        kind = type(value)
        if kind is list or kind is dict or kind is tuple:
            template[key] = Packed(encode(value))
            packed += 1
        else:
            template[key] = value
    return template, packed


def _path(parts: list[str | int]) -> str:
    return "session" + "".join(f"[{p!r}]" for p in parts)


def _fail(parts: list[str | int], message: str) -> NoReturn:
    raise SessionDataError(f"{_path(parts)}: {message}")


def validate(data: dict[str, Any]) -> None:
    """Check that `data` can be stored; raise `SessionDataError` if not.

    The message names the key path and the offending type, never a value.
    """
    _scan(data)


def dumps(data: dict[str, Any]) -> bytes:
    """`validate`, then `encode`: the bytes to seal for `data`.

    Raises:
        SessionDataError: the data holds something that cannot be stored.
    """
    _scan(data)
    return _encoder().encode_to_bytes(data)


def dumps_counted(data: dict[str, Any]) -> tuple[bytes, int]:
    """`dumps`, and how many of the top-level values are `Packed`.

    The count is -1 when some value is a list, dict or tuple, or a subclass
    of a scalar type: `data` then cannot serve as a template (see `pack`)
    without being packed first.

    Raises:
        SessionDataError: the data holds something that cannot be stored.
    """
    packed = _scan(data)
    return _encoder().encode_to_bytes(data), packed


def _scan(data: dict[str, Any]) -> int:
    # The fast walk answers yes or no; only a "no" pays for the second walk
    # that tracks the key path for the message. The top level is walked here
    # rather than in `_fits_map`: every write comes through, and most
    # sessions hold scalars and packed values only, which it counts on the
    # way. `data` may be a Session, whose own methods would unpack its
    # values: dict's methods read its storage as it is.
    packed = 0
    exact = True
    for key, value in dict.items(data):
        kind = type(value)
        if type(key) is not str:
            break
        if kind in _PLAIN:
            continue
        if kind is int:
            if _INT_MIN <= value <= _INT_MAX:
                continue
            break
        if kind is Packed:
            packed += 1
            continue
        if not _fits_other(value, 1):
            break
        exact = False
    else:
        return packed if exact else -1
    _check(dict(dict.items(data)) if type(data) is not dict else data, [], 0)
    # Only scalar subclasses get past `_check` after the fast walk refused.
    return -1


def fits_value(value: object) -> bool:
    """Whether `value` may be stored under a key of the session."""
    return type(value) in _PLAIN or _fits_other(value, 1)


_PLAIN = frozenset({str, float, bool, bytes, type(None)})


def _fits_map(mapping: dict[Any, Any], depth: int) -> bool:
    """True if every key is a str and every value storable, exact types only."""
    # dict's own methods: the top level may be a Session, whose overrides
    # would unpack its values.
    for key in dict.keys(mapping):
        if type(key) is not str:
            return False
    return _fits_values(dict.values(mapping), depth)


def _fits_values(values: Iterable[object], depth: int) -> bool:
    for value in values:
        kind = type(value)
        if kind in _PLAIN:
            continue
        if kind is int:
            if _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
                continue
            return False
        if not _fits_other(value, depth):
            return False
    return True


def _fits_other(value: object, depth: int) -> bool:
    kind = type(value)
    if kind is int:
        return _INT_MIN <= value <= _INT_MAX  # type: ignore[operator]
    if depth >= MAX_DEPTH:
        return False
    if kind is dict:
        return _fits_map(value, depth + 1)  # type: ignore[arg-type]
    if kind is list or kind is tuple:
        return _fits_values(value, depth + 1)  # type: ignore[arg-type]
    # A value the session has not unpacked: valid when it was packed.
    return kind is Packed


def _check(value: object, parts: list[str | int], depth: int) -> None:
    kind = type(value)
    if kind is str or kind is float or kind is bool or value is None:
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            _fail(parts, "int outside the 64-bit range CBOR stores natively")
        return
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            _fail(parts, f"nested deeper than {MAX_DEPTH} containers")
        if isinstance(value, dict):
            for key, item in value.items():
                if type(key) is not str:
                    _fail(parts, f"dict key of type {type(key).__name__}, not str")
                parts.append(key)
                _check(item, parts, depth + 1)
                parts.pop()
        else:
            for index, item in enumerate(cast("list[object]", value)):
                parts.append(index)
                _check(item, parts, depth + 1)
                parts.pop()
        return
    if kind is bytes or kind is Packed:
        return
    base = _as_base(value)
    if base is None:
        _fail(parts, f"{kind.__name__} cannot be stored in a session")
    # A subclass (IntEnum, StrEnum) is stored as its base type; check it as
    # that type so the int range still applies.
    _check(base, parts, depth)


def _as_base(value: object) -> str | int | float | bytes | None:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return bytes(value)
    return None


def _encode_subclass(encoder: cbor2.CBOREncoder, value: object) -> None:
    # Only reached for what `validate` admitted beyond the exact types: a
    # packed value goes out as the bytes it holds, a scalar subclass as its
    # base type.
    if type(value) is Packed:
        encoder.write(value.cbor)
        return
    encoder.encode(_as_base(value))


def encode(data: object) -> bytes:
    """CBOR-encode an already validated value."""
    return _encoder().encode_to_bytes(data)


def _encoder() -> cbor2.CBOREncoder:
    # Like the decoder below: one per thread, since building one costs about
    # as much as encoding a small session. `encode_to_bytes` gives each call
    # its own buffer, and the encoder keeps no state between calls (an error
    # part-way leaves its container bookkeeping as it was).
    try:
        encoder: cbor2.CBOREncoder = _local.encoder
    except AttributeError:
        encoder = cbor2.CBOREncoder(io.BytesIO(), default=_encode_subclass)
        _local.encoder = encoder
    return encoder


def _decoder() -> cbor2.CBORDecoder:
    # Building a decoder costs more than decoding a small session, so each
    # thread keeps one and points it at each new buffer.
    try:
        decoder: cbor2.CBORDecoder = _local.decoder
    except AttributeError:
        decoder = cbor2.CBORDecoder(
            io.BytesIO(b""),
            tag_hook=_refuse_tag,
            semantic_decoders=_SEMANTIC,
            max_depth=MAX_DEPTH + 2,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
        _local.decoder = decoder
    return decoder


def decode_one(blob: bytes) -> Any:
    """Decode one CBOR item that fills `blob` exactly.

    Raises ValueError on anything the encoder would not have produced.
    """
    fp = io.BytesIO(blob)
    decoder = _decoder()
    decoder.fp = fp
    try:
        item = decoder.decode()
    except _DECODE_ERRORS as exc:
        raise ValueError("undecodable payload") from exc
    if fp.tell() != len(blob):
        raise ValueError("trailing bytes after payload")
    return item


def decode_pair(blob: bytes) -> tuple[Any, Any, int]:
    """Decode two CBOR items that fill `blob` exactly.

    Returns both items and the offset where the second begins. Raises
    ValueError on anything the encoder would not have produced.
    """
    fp = io.BytesIO(blob)
    decoder = _decoder()
    decoder.fp = fp
    try:
        first = decoder.decode()
        offset = fp.tell()
        second = decoder.decode()
    except _DECODE_ERRORS as exc:
        raise ValueError("undecodable payload") from exc
    if fp.tell() != len(blob):
        raise ValueError("trailing bytes after payload")
    return first, second, offset
