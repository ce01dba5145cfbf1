"""Key derivation, key rings and their refusal of bad configuration."""

from __future__ import annotations

import base64
import logging
import re
import warnings

import pytest

from cookiesession import Key, KeyRing, WeakSecretWarning, generate_key
from cookiesession._keys import ENV_VAR


def test_generate_key_is_43_base64url_characters() -> None:
    key = generate_key()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)
    assert len(base64.urlsafe_b64decode(key + "=")) == 32
    assert generate_key() != key


def test_generated_key_is_not_weak() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Key(generate_key())


def test_short_secret_is_accepted_with_a_warning_that_says_how_to_fix() -> None:
    with pytest.warns(WeakSecretWarning, match="keygen") as caught:
        key = Key("too-short")
    assert "too-short" not in str(caught[0].message)
    assert len(key.id) == 4


def test_long_passphrase_is_not_weak() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Key("a passphrase that is long enough to be 32 bytes")
        Key(b"\x00" * 32)


def test_same_secret_gives_same_key_id_everywhere() -> None:
    secret = generate_key()
    assert Key(secret).id == Key(secret).id


def test_raw_key_text_and_its_bytes_are_the_same_key() -> None:
    secret = generate_key()
    raw = base64.urlsafe_b64decode(secret + "=")
    assert Key(secret).id == Key(raw).id


def test_key_id_is_not_a_prefix_of_the_key() -> None:
    raw = bytes(range(32))
    key = Key(raw)
    assert key.id not in raw
    assert key.id != key.aead._key[:4]


def test_repr_and_str_never_show_material() -> None:
    secret = generate_key()
    key = Key(secret)
    ring = KeyRing([key])
    for text in (repr(key), str(key), repr(ring), str(ring)):
        assert secret not in text
        assert key.aead._key.hex() not in text
    assert key.id.hex() in repr(key)


def test_logging_a_ring_shows_only_ids(caplog: pytest.LogCaptureFixture) -> None:
    secret = generate_key()
    ring = KeyRing(secret)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("ring %s %r", ring, ring.primary)
    assert secret not in caplog.text


def test_first_key_is_primary_and_every_key_is_found() -> None:
    new, old = generate_key(), generate_key()
    ring = KeyRing([new, old])
    assert ring.primary.id == Key(new).id
    assert ring.get(Key(old).id) is not None
    assert ring.get(b"\x00\x00\x00\x00") is None
    assert len(ring) == 2
    assert [k.id for k in ring] == [Key(new).id, Key(old).id]


def test_single_secret_makes_a_ring_of_one() -> None:
    assert len(KeyRing(generate_key())) == 1


def test_empty_ring_is_refused_naming_the_parameter() -> None:
    with pytest.raises(ValueError, match="secret"):
        KeyRing([])


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        KeyRing("")


def test_duplicate_secret_is_refused() -> None:
    secret = generate_key()
    with pytest.raises(ValueError, match="position 1 duplicates"):
        KeyRing([secret, secret])


def test_secret_of_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="int"):
        KeyRing([12345])  # type: ignore[list-item]


def test_from_env_reads_comma_and_space_separated_keys() -> None:
    a, b, c = generate_key(), generate_key(), generate_key()
    ring = KeyRing.from_env(environ={ENV_VAR: f" {a}, {b}\n{c} "})
    assert [k.id for k in ring] == [Key(a).id, Key(b).id, Key(c).id]


def test_from_env_uses_the_named_variable() -> None:
    a = generate_key()
    ring = KeyRing.from_env("APP_KEYS", environ={"APP_KEYS": a})
    assert ring.primary.id == Key(a).id


@pytest.mark.parametrize("value", [None, "", " , "])
def test_from_env_without_keys_is_refused(value: str | None) -> None:
    environ = {} if value is None else {ENV_VAR: value}
    with pytest.raises(ValueError, match=ENV_VAR):
        KeyRing.from_env(environ=environ)
