"""Seal/open speed of cookiesession's TokenCodec against two common schemes.

Schemes, each as its library uses it:

- Starlette: `SessionMiddleware`'s cookie, i.e. one `itsdangerous.TimestampSigner`
  per middleware; seal = sign(b64encode(json.dumps(session))), open =
  unsign(cookie, max_age) then json.loads(b64decode(...)). Signed, not
  encrypted.
- Fernet: `cryptography.fernet.Fernet` over the same JSON; open checks the ttl.
- cookiesession: `TokenCodec.seal(payload)` / `TokenCodec.open(token)`
  (XAES-256-GCM over CBOR, with validation, expiry and header checks).

Three sessions (one key, ~1 KB and ~3 KB of JSON) times three operations
(seal, open, seal+open). Every cell is checked for a correct round trip and
for rejecting a tampered token before anything is timed.

    python benchmarks/bench_codec.py            # about a minute
    python benchmarks/bench_codec.py --quick    # about five seconds
    python benchmarks/bench_codec.py --output results/codec.md
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The working tree's cookiesession is the one measured, and the shared helper
# sits next to this file, however the script is started.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
import itsdangerous
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.backends.openssl.backend import backend as openssl
from itsdangerous.exc import BadSignature

from cookiesession import InvalidSession, KeyRing, Payload, TokenCodec, generate_key

FULL = _harness.Plan(rounds=21, batch_ms=70, seed=1, warmup_rounds=1)
QUICK = _harness.Plan(rounds=7, batch_ms=15, seed=1, warmup_rounds=0)

COOKIE_NAME = "session"
MAX_AGE = 14 * 24 * 60 * 60  # Starlette's default max_age, 14 days
COOKIE_LIMIT = 4096
COOKIE_ATTRIBUTES = (
    f"; Path=/; Max-Age={MAX_AGE}; Expires=Thu, 01 Jan 2026 00:00:00 GMT; "
    "HttpOnly; Secure; SameSite=Lax"
)

SCHEMES = ("Starlette", "Fernet", "cookiesession")
SCHEME_LABELS = {
    "Starlette": "Starlette (itsdangerous + JSON)",
    "Fernet": "Fernet + JSON",
    "cookiesession": "cookiesession",
}
OPERATIONS = ("seal", "open", "seal+open")
TARGET_SESSION = "1-key"
TARGET_RATIO = 1.0

Session = dict[str, Any]


# --------------------------------------------------------------------------
# Sessions


def _realistic_session(target: int) -> Session:
    """A deterministic e-commerce style session of about `target` JSON bytes."""
    rng = random.Random(target)
    cart: list[Session] = []
    viewed: list[str] = []
    session: Session = {
        "user_id": 12345,
        "username": "jdoe",
        "email": "jane.doe@example.com",
        "display_name": "Jane Doe",
        "roles": ["customer", "beta-tester"],
        "csrf_token": rng.randbytes(32).hex(),
        "locale": "en-US",
        "timezone": "America/New_York",
        "authenticated_at": 1767225600,
        "mfa_verified": True,
        "discount_rate": 0.1,
        "preferences": {"theme": "dark", "currency": "USD", "per_page": 24},
        "flash": [{"level": "info", "message": "Welcome back, Jane!"}],
        "cart": cart,
        "recently_viewed": viewed,
    }
    index = 0
    while len(json.dumps(session)) < target:
        if index % 2 == 0:
            cart.append(
                {
                    "sku": f"SKU-{10000 + 7 * index:05d}",
                    "title": f"Item {index} {rng.choice(['blue', 'red', 'green'])}",
                    "qty": 1 + index % 3,
                    "price_cents": 499 + 250 * index,
                }
            )
        else:
            viewed.append(f"/products/{1000 + 37 * index}")
        index += 1
    return session


SESSIONS: dict[str, Session] = {
    "1-key": {"user_id": 12345},
    "1 KB": _realistic_session(1000),
    "3 KB": _realistic_session(3000),
}


# --------------------------------------------------------------------------
# Schemes


@dataclass(frozen=True, slots=True)
class Bound:
    """One scheme bound to one session.

    `seal()` seals the session, `open(token)` opens a cookie value,
    `data_of` extracts the session from what `open` returns, and `token` is
    a sealed cookie value for the open cell and the size report.
    """

    seal: Callable[[], str]
    open: Callable[[str], Any]
    data_of: Callable[[Any], Session]
    token: str

    def round_trip(self) -> Any:
        return self.open(self.seal())


def _starlette(session: Session, secret: str) -> Bound:
    # As SessionMiddleware: one signer per middleware, cookie text in and out.
    signer = itsdangerous.TimestampSigner(str(secret))

    def seal(data: Session) -> str:
        signed = signer.sign(base64.b64encode(json.dumps(data).encode("utf-8")))
        return signed.decode("utf-8")

    def open_(cookie: str) -> Session:
        data = signer.unsign(cookie.encode("utf-8"), max_age=MAX_AGE)
        loaded: Session = json.loads(base64.b64decode(data))
        return loaded

    sealer = functools.partial(seal, session)
    return Bound(sealer, open_, _identity, sealer())


def _fernet(session: Session, key: bytes) -> Bound:
    fernet = Fernet(key)

    def seal(data: Session) -> str:
        return fernet.encrypt(json.dumps(data).encode("utf-8")).decode("ascii")

    def open_(cookie: str) -> Session:
        loaded: Session = json.loads(fernet.decrypt(cookie, ttl=MAX_AGE))
        return loaded

    sealer = functools.partial(seal, session)
    return Bound(sealer, open_, _identity, sealer())


def _payload(session: Session) -> Payload:
    # Built once, as the schemes above get their session dict ready-made.
    now = time.time()
    return Payload(
        session_id=os.urandom(16),
        issued_at_ms=int(now * 1000),
        absolute_expiry=int(now) + 86400,
        idle_expiry=int(now) + 3600,
        cookie=None,
        subject=None,
        data=session,
    )


def _cookiesession(session: Session, codec: TokenCodec) -> Bound:
    payload = _payload(session)
    sealer = functools.partial(codec.seal, payload)
    return Bound(sealer, codec.open, _opened_data, sealer())


def _identity(value: Session) -> Session:
    return value


def _opened_data(opened: Any) -> Session:
    data: Session = opened.payload.data
    return data


# --------------------------------------------------------------------------
# Checks


class CheckFailed(RuntimeError):
    """A scheme did not round-trip or did not reject a tampered token."""


def _tampered(token: str) -> str:
    middle = len(token) // 2
    replacement = "B" if token[middle] == "A" else "A"
    return token[:middle] + replacement + token[middle + 1 :]


def _check(cell: str, bound: Bound, session: Session) -> None:
    expected = json.loads(json.dumps(session))
    if expected != session:
        raise CheckFailed(f"{cell}: the session does not survive JSON")
    sealed = bound.seal()
    if not isinstance(sealed, str) or not sealed:
        raise CheckFailed(f"{cell}: seal returned {type(sealed).__name__}")
    for label, result in (
        ("open(seal(x))", bound.open(sealed)),
        ("open(token)", bound.open(bound.token)),
        ("seal+open cell", bound.round_trip()),
    ):
        if bound.data_of(result) != expected:
            raise CheckFailed(f"{cell}: {label} differs from the session")
    try:
        bound.open(_tampered(bound.token))
    except (BadSignature, InvalidToken, InvalidSession, ValueError):
        pass
    else:
        raise CheckFailed(f"{cell}: a tampered token was accepted")


def _check_cookiesession_payload(codec: TokenCodec) -> None:
    payload = _payload(SESSIONS["3 KB"])
    opened = codec.open(codec.seal(payload))
    if opened.payload != payload or opened.stale_key:
        raise CheckFailed("cookiesession: the payload header did not round-trip")


# --------------------------------------------------------------------------
# Report


def _cell(session: str, scheme: str, operation: str) -> str:
    return f"{session} | {scheme} | {operation}"


def _ratio_text(ratios: list[float]) -> str:
    stats = _harness.Stats.of(ratios)
    return f"{stats.median:.2f}x ({stats.p25:.2f}-{stats.p75:.2f})"


def _set_cookie(token: str) -> str:
    return f"{COOKIE_NAME}={token}{COOKIE_ATTRIBUTES}"


def _report(
    bounds: dict[tuple[str, str], Bound],
    results: dict[str, _harness.Measurement],
    plan: _harness.Plan,
    overhead_ns: float,
    elapsed_s: float,
) -> str:
    out: list[str] = ["# cookiesession codec benchmark", ""]
    env = _harness.environment_rows(
        ["cookiesession", "cryptography", "cbor2", "itsdangerous", "starlette"],
        {
            "OpenSSL (cryptography)": openssl.openssl_version_text(),
            "Method": plan.describe(),
            "Loop overhead": f"{overhead_ns:.0f} ns per op, included in times",
            "Run time": f"{elapsed_s:.1f} s",
        },
    )
    out += [_harness.markdown_table(["", ""], env), ""]

    out += ["## Sessions", ""]
    rows = []
    for name, data in SESSIONS.items():
        json_bytes = len(json.dumps(data).encode("utf-8"))
        rows.append([name, str(len(data)), str(json_bytes)])
    out += [
        _harness.markdown_table(
            ["Session", "Top-level keys", "JSON bytes"], rows, "lrr"
        ),
        "",
    ]

    out += [
        "## Time per operation",
        "",
        "Microseconds per operation, median over rounds (p25-p75). Ratios are "
        "medians of per-round ratios (p25-p75); below 1 means cookiesession "
        "is faster.",
        "",
    ]
    header = ["Session", "Operation"] + [SCHEME_LABELS[s] for s in SCHEMES]
    header += ["cookiesession / Starlette", "cookiesession / Fernet"]
    rows = []
    for session in SESSIONS:
        for operation in OPERATIONS:
            row = [session, operation]
            row += [
                _harness.format_range(results[_cell(session, s, operation)].stats)
                for s in SCHEMES
            ]
            ours = results[_cell(session, "cookiesession", operation)]
            for other in ("Starlette", "Fernet"):
                theirs = results[_cell(session, other, operation)]
                row.append(_ratio_text(_harness.paired_ratios(ours, theirs)))
            rows.append(row)
    out += [_harness.markdown_table(header, rows, "llrrrrr"), ""]

    noisiest = max(results.values(), key=lambda m: m.stats.iqr_percent)
    out += [
        f"Widest spread: {noisiest.name}, IQR {noisiest.stats.iqr_percent:.1f}% "
        "of its median.",
        "",
    ]

    out += [
        "## Cookie size",
        "",
        "Set-Cookie value: `session=<token>" + COOKIE_ATTRIBUTES + "`; browsers "
        f"keep cookies up to {COOKIE_LIMIT} bytes.",
        "",
    ]
    rows = []
    for session in SESSIONS:
        for scheme in SCHEMES:
            token = bounds[(session, scheme)].token
            line = len(_set_cookie(token).encode("utf-8"))
            fits = "yes" if line <= COOKIE_LIMIT else "**no**"
            rows.append(
                [session, SCHEME_LABELS[scheme], str(len(token)), str(line), fits]
            )
    out += [
        _harness.markdown_table(
            ["Session", "Scheme", "Token chars", "Set-Cookie bytes", "<= 4096"],
            rows,
            "llrrc",
        ),
        "",
    ]

    out += ["## Targets", ""]
    ours = results[_cell(TARGET_SESSION, "cookiesession", "seal+open")]
    theirs = results[_cell(TARGET_SESSION, "Starlette", "seal+open")]
    ratios = _harness.paired_ratios(ours, theirs)
    ratio = _harness.Stats.of(ratios)
    verdict = "PASS" if ratio.median <= TARGET_RATIO else "MISS"
    if ratio.p25 <= TARGET_RATIO < ratio.p75:
        verdict += " (borderline: the ratio's IQR spans 1.00)"
    token = bounds[("3 KB", "cookiesession")].token
    line = len(_set_cookie(token).encode("utf-8"))
    out += [
        _harness.markdown_table(
            ["Target", "Measured", "Result"],
            [
                [
                    f"seal+open of the {TARGET_SESSION} session no slower than "
                    "Starlette's sign+unsign with JSON",
                    f"{_ratio_text(ratios)}: "
                    f"{ours.stats.median / 1e3:.2f} us vs "
                    f"{theirs.stats.median / 1e3:.2f} us",
                    verdict,
                ],
                [
                    "3 KB session, cookiesession Set-Cookie value <= "
                    f"{COOKIE_LIMIT} bytes",
                    f"token {len(token)} chars, Set-Cookie value {line} bytes",
                    "PASS" if line <= COOKIE_LIMIT else "MISS",
                ],
            ],
            "llc",
        ),
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------
# Main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_plan_arguments(parser, FULL, QUICK)
    args = parser.parse_args(argv)
    plan = _harness.plan_from_args(args, FULL, QUICK)
    started = time.perf_counter()

    codec = TokenCodec(KeyRing(generate_key()), COOKIE_NAME)
    starlette_secret = generate_key()
    fernet_key = Fernet.generate_key()

    bounds: dict[tuple[str, str], Bound] = {}
    for name, session in SESSIONS.items():
        bounds[(name, "Starlette")] = _starlette(session, starlette_secret)
        bounds[(name, "Fernet")] = _fernet(session, fernet_key)
        bounds[(name, "cookiesession")] = _cookiesession(session, codec)

    for (name, scheme), bound in bounds.items():
        _check(f"{name} / {scheme}", bound, SESSIONS[name])
    _check_cookiesession_payload(codec)

    cases: list[_harness.Case] = []
    for (name, scheme), bound in bounds.items():
        cases += [
            _harness.Case(_cell(name, scheme, "seal"), bound.seal),
            _harness.Case(
                _cell(name, scheme, "open"), functools.partial(bound.open, bound.token)
            ),
            _harness.Case(_cell(name, scheme, "seal+open"), bound.round_trip),
        ]

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    print(
        f"checks passed; timing {len(cases)} cells: {plan.describe()}",
        file=sys.stderr,
        flush=True,
    )
    overhead = _harness.call_overhead_ns()
    results = _harness.run_interleaved(cases, plan, progress=progress)
    text = _report(bounds, results, plan, overhead, time.perf_counter() - started)
    _harness.emit(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
