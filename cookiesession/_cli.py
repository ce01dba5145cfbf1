"""The `cookiesession` command: demo server, key generation, rotation, inspection.

Every subcommand writes to stdout/stderr only; nothing is logged, so a key or
a cookie shown by `rotate` or `inspect` ends up nowhere else.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from cookiesession._errors import InvalidSession, Reason
from cookiesession._keys import ENV_VAR, KeyRing, generate_key
from cookiesession._middleware import COOKIE_LINE_LIMIT, MAX_CHUNKS
from cookiesession._token import Opened, TokenCodec

if TYPE_CHECKING:
    from cookiesession._revocation import RevocationStore

    _Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["main"]

_PROG = "cookiesession"
_SEPARATORS = re.compile(r"[\s,]+")
_DEMO_INSTALL = "pip install 'cookiesession[demo]'"
_LOOPBACK_NAMES = ("localhost", "localhost.")
# As long a token as the middleware accepts with its default max_chunks.
_MAX_TOKEN_CHARS = MAX_CHUNKS * COOKIE_LINE_LIMIT
_ENV_HELP = f"environment variable holding the keys (default: {ENV_VAR})"


def _error(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 1


def _split_keys(text: str) -> list[str]:
    # The same separators KeyRing.from_env accepts: commas and/or whitespace.
    return [part for part in _SEPARATORS.split(text) if part]


# -- keygen -------------------------------------------------------------------


def _keygen(args: argparse.Namespace) -> int:
    print(generate_key())
    return 0


# -- rotate -------------------------------------------------------------------


def _rotate(args: argparse.Namespace) -> int:
    old = _split_keys(os.environ.get(args.env, ""))
    if not old:
        return _error(
            f"environment variable {args.env} holds no key; create the first "
            f"with `{_PROG} keygen`"
        )
    try:
        # Refuse a list the middleware would refuse (a key listed twice).
        KeyRing(old)
    except (ValueError, TypeError) as exc:
        return _error(f"{args.env}: {exc}")
    keys = [generate_key(), *old]
    if args.keep is not None:
        keys = keys[: args.keep]
    print(",".join(keys))
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# -- inspect ------------------------------------------------------------------


def _token_from(text: str, name: str) -> str | None:
    """The token in `text`: a bare token, or a Cookie header (chunks joined).

    Raises:
        InvalidSession: chunks with a gap (MALFORMED), as the middleware does.
    """
    text = text.strip()
    if text.lower().startswith("cookie:"):
        text = text[len("cookie:") :]
    # A token is unpadded base64url: it never holds '=' or ';'.
    if "=" not in text and ";" not in text:
        return text or None
    whole: str | None = None
    chunks: dict[int, str] = {}
    prefix = name + "."
    for part in text.split(";"):
        cookie_name, _, value = part.partition("=")
        cookie_name, value = cookie_name.strip(), value.strip().strip('"')
        if cookie_name == name and whole is None:
            whole = value
        elif cookie_name.startswith(prefix):
            index = cookie_name[len(prefix) :]
            # Canonical decimal only, as the middleware reads them.
            if index.isdecimal() and str(int(index)) == index:
                chunks.setdefault(int(index), value)
    if whole is not None or not chunks:
        return whole
    # Numeric order, so that name.10 follows name.9; a gap is a lost chunk.
    if sorted(chunks) != list(range(len(chunks))):
        raise InvalidSession(Reason.MALFORMED)
    return "".join(chunks[index] for index in range(len(chunks)))


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return "none"
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _json_default(value: object) -> Any:
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode("ascii")}
    raise TypeError(type(value).__name__)  # pragma: no cover - CBOR gives no other


def _inspect(args: argparse.Namespace) -> int:
    try:
        ring = KeyRing.from_env(args.env)
    except (ValueError, TypeError) as exc:
        return _error(str(exc))
    text = sys.stdin.read() if args.cookie == "-" else args.cookie
    try:
        token = _token_from(text, args.name)
        if token is None:
            return _error(f"no cookie named {args.name} (or {args.name}.0, ...)")
        codec = TokenCodec(ring, args.name, max_chars=_MAX_TOKEN_CHARS)
        opened = codec.open(token)
    except InvalidSession as exc:
        print(f"rejected: {exc.reason.value}", file=sys.stderr)
        return 1

    print(_report(opened, token, ring, args.env))
    return 0


def _report(opened: Opened, token: str, ring: KeyRing, env: str) -> str:
    """What `inspect` prints for a cookie that opened."""
    payload = opened.payload
    # The key id is bytes 1-4 of the token, after the version byte; the first
    # 8 characters decode to 6 bytes, and the token just proved canonical.
    key_id = base64.urlsafe_b64decode(token[:8])[1:5]
    position = next(i for i, key in enumerate(ring, 1) if key.id == key_id)
    stale = "yes (re-sealed with the first key on its next use)"
    cookie = "defaults" if payload.cookie is None else json.dumps(payload.cookie)
    lines = [
        f"key id:      {key_id.hex()} (key {position} of {len(ring)} in {env})",
        f"stale key:   {stale if opened.stale_key else 'no'}",
        f"session id:  {payload.session_id.hex()}",
        f"issued at:   {_iso(payload.issued_at_ms / 1000)}",
        f"expires at:  {_iso(payload.absolute_expiry)} (absolute)",
        f"idle expiry: {_iso(payload.idle_expiry)}",
        # JSON quoting: a subject holding control characters cannot reach
        # the terminal raw.
        f"subject:     {json.dumps(payload.subject)}",
        f"cookie:      {cookie}",
        "data:",
        json.dumps(payload.data, indent=2, default=_json_default),
    ]
    return "\n".join(lines)


# -- demo ---------------------------------------------------------------------


def _redact(url: str) -> str:
    """`url` fit to print: its password and its query replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal keeps its brackets
        port = f":{parts.port}" if parts.port is not None else ""
        netloc = f"{parts.username or ''}:***@{host}{port}"
    # Query arguments can carry credentials too: redis-py reads ?password=.
    query = "***" if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _demo_keys(key: str | None) -> tuple[KeyRing, str]:
    """The demo's key ring and a line saying where it came from."""
    if key is not None:
        ring = KeyRing(_split_keys(key))
        return ring, f"keys: from --key (current key id {ring.primary.id.hex()})"
    if _split_keys(os.environ.get(ENV_VAR, "")):
        ring = KeyRing.from_env()
        return ring, (
            f"keys: {len(ring)} from {ENV_VAR} (current key id {ring.primary.id.hex()})"
        )
    # A development key, shown so that the developer can pass it back with
    # --key and keep their sessions across restarts.
    development_key = generate_key()
    ring = KeyRing(development_key)
    return ring, (
        f"development key: {development_key}\n"
        "WARNING: no key given, so this development key was generated. It "
        "changes on every restart, which ends every session, unless you pass "
        f"it back with --key or set {ENV_VAR} (make one with `{_PROG} keygen`)."
    )


def _demo_store(redis_url: str | None) -> tuple[RevocationStore, str]:
    from cookiesession import _revocation  # noqa: PLC0415 - redis only on demand

    if redis_url is None:
        store: RevocationStore = _revocation.MemoryRevocationStore()
        return store, "revocation: in memory (this process only)"
    store = _revocation.RedisRevocationStore(url=redis_url)
    return store, f"revocation: Redis at {_redact(redis_url)}"


def _demo(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: PLC0415 - an optional dependency
    except ImportError:
        print(f"the demo needs uvicorn: {_DEMO_INSTALL}", file=sys.stderr)
        return 2
    from cookiesession._demo import create_app  # noqa: PLC0415

    try:
        ring, key_note = _demo_keys(args.key)
        store, store_note = _demo_store(args.redis)
    except (ValueError, TypeError, ImportError) as exc:
        return _error(str(exc))

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"cookiesession demo: http://{host}:{args.port}/", flush=True)
    print(key_note, flush=True)
    print(store_note, flush=True)
    if not _is_loopback(args.host):
        print(
            f"WARNING: listening on {args.host}, reachable from other machines. "
            "The demo signs in anyone with any password; do not expose it.",
            flush=True,
        )
    uvicorn.run(create_app(ring, revocation=store), host=args.host, port=args.port)
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port lies between 0 and 65535")
    return value


# -- parser -------------------------------------------------------------------


def _add_demo(commands: _Commands) -> None:
    """The `demo` subcommand."""
    demo = commands.add_parser(
        "demo",
        help="serve the demo site (needs uvicorn)",
        description=(
            "Serve a demo site with sign-in, cart, flash messages and sign-out, "
            f"on 127.0.0.1 by default. Keys come from --key, else {ENV_VAR}, "
            "else a development key generated at start-up."
        ),
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on")
    demo.add_argument("--port", type=_port, default=8000, help="port to listen on")
    demo.add_argument(
        "--redis",
        metavar="URL",
        help="keep the revocation list in Redis (redis://...), not in memory",
    )
    demo.add_argument(
        "--key",
        help=(
            "session key(s), comma-separated, first encrypts; other local "
            f"users can read it in the process list, so prefer {ENV_VAR}"
        ),
    )
    demo.set_defaults(run=_demo)


def _add_keygen(commands: _Commands) -> None:
    """The `keygen` subcommand."""
    keygen = commands.add_parser(
        "keygen",
        help="print a new random key",
        description="Print a new random 256-bit key (43 characters of base64url).",
    )
    keygen.set_defaults(run=_keygen)


def _add_rotate(commands: _Commands) -> None:
    """The `rotate` subcommand."""
    rotate = commands.add_parser(
        "rotate",
        help="print the key list with a new key first",
        description=(
            "Read the key list from an environment variable and print it with "
            "a new key first, comma-separated: the new key encrypts, the old "
            "ones still decrypt. Keep old keys until their cookies expire."
        ),
    )
    rotate.add_argument("--env", default=ENV_VAR, metavar="NAME", help=_ENV_HELP)
    rotate.add_argument(
        "--keep",
        type=_positive,
        metavar="N",
        help="print at most N keys, the new one included (drops the oldest)",
    )
    rotate.set_defaults(run=_rotate)


def _add_inspect(commands: _Commands) -> None:
    """The `inspect` subcommand."""
    inspect = commands.add_parser(
        "inspect",
        help="decrypt a session cookie and show its content",
        description=(
            "Open a session cookie with the keys in an environment variable and "
            "print its header and data. COOKIE is the bare value, a Cookie "
            "header (chunks name.0, name.1, ... are joined), or '-' to read "
            "stdin. A revocation list is not consulted. Exits 1 with "
            "'rejected: REASON' on stderr if the cookie does not open."
        ),
    )
    inspect.add_argument("cookie", metavar="COOKIE", help="value, header, or -")
    inspect.add_argument(
        "--name", default="session", help="the cookie name (default: session)"
    )
    inspect.add_argument("--env", default=ENV_VAR, metavar="NAME", help=_ENV_HELP)
    inspect.set_defaults(run=_inspect)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Encrypted cookie sessions: demo server and key tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_keygen, _add_rotate, _add_inspect):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: the arguments after the program name; None reads `sys.argv`.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        # argparse exits for --help (0) and usage errors (2); report, not exit.
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        return 2
    status: int = args.run(args)
    return status
