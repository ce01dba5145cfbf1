"""The public surface: pinned, sorted, documented."""

from __future__ import annotations

import inspect

import cookiesession

EXPECTED = [
    "CLOCK_SKEW",
    "CookieOptions",
    "InvalidSession",
    "Key",
    "KeyRing",
    "MAX_DEPTH",
    "MemoryRevocationStore",
    "Payload",
    "Reason",
    "RedisRevocationStore",
    "RevocationStore",
    "RevocationStoreError",
    "Session",
    "SessionCookie",
    "SessionDataError",
    "SessionMiddleware",
    "SessionTooLarge",
    "TokenCodec",
    "WeakSecretWarning",
    "generate_key",
]


def test_all_is_pinned() -> None:
    assert cookiesession.__all__ == EXPECTED


def test_all_is_sorted() -> None:
    assert cookiesession.__all__ == sorted(cookiesession.__all__)


def test_every_name_in_all_exists() -> None:
    for name in cookiesession.__all__:
        assert hasattr(cookiesession, name), name


def test_every_public_callable_has_a_docstring() -> None:
    missing = []
    for name in cookiesession.__all__:
        obj = getattr(cookiesession, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attribute, member in vars(obj).items():
                if attribute.startswith("_"):
                    continue
                if (inspect.isfunction(member) or isinstance(member, property)) and (
                    not inspect.getdoc(member)
                ):
                    missing.append(f"{name}.{attribute}")
    assert missing == []


def test_the_contract_names_import_from_the_top() -> None:
    from cookiesession import (  # noqa: F401
        CookieOptions,
        MemoryRevocationStore,
        RedisRevocationStore,
        Session,
        SessionMiddleware,
        generate_key,
    )
