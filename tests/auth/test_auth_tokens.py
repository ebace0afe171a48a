"""API tokens (registry_core.auth): format, hashing at rest, constant-time verification."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.auth import (
    Resource,
    Scope,
    TokenRecord,
    generate_token,
    hash_secret,
    parse_token,
    verify_secret,
)
from registry_core.errors import AuthenticationError


def _record(token_id: str, digest: str, description: str = "") -> TokenRecord:
    scope = Scope(frozenset({"upload"}), Resource("acme", "main"))
    return TokenRecord(token_id, digest, None, (scope,), description, 1)


def test_generate_parse_verify() -> None:
    raw, token_id, digest = generate_token()
    assert raw.startswith(f"rc-{token_id}-")
    tid, secret = parse_token(raw)
    assert tid == token_id
    assert len(secret) == 43  # 32 bytes, URL-safe base64 without padding
    assert digest == hash_secret(secret) != secret
    assert secret not in digest
    record = _record(token_id, digest)
    assert verify_secret(secret, record)
    assert not verify_secret(secret[:-1] + ("A" if secret[-1] != "A" else "B"), record)


@given(st.integers(0, 50))
def test_tokens_are_unique_and_round_trip(_: int) -> None:
    a, b = generate_token(), generate_token()
    assert a[0] != b[0] and a[1] != b[1]
    for raw, token_id, digest in (a, b):
        tid, secret = parse_token(raw)
        assert tid == token_id and hash_secret(secret) == digest


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "rc",
        "rc-",
        "rc-0123456789abcdef",
        "rc-0123456789abcdef-",
        "xx-0123456789abcdef-" + "A" * 43,
        "rc-0123456789ABCDEF-" + "A" * 43,  # ids are lower-case hex
        "rc-0123-" + "A" * 43,
        "rc-0123456789abcdef-" + "A" * 42,
        "rc-0123456789abcdef-" + "A" * 42 + "=",
        "rc-0123456789abcdef-" + "A" * 500,
        "pypi-AgEIcHlwaS5vcmc",
    ],
)
def test_malformed_tokens(raw: str | None) -> None:
    with pytest.raises(AuthenticationError) as info:
        parse_token(raw)
    assert info.value.status == 401
    if raw and len(raw) > 10:  # the token is never echoed back
        assert raw not in str(info.value)


def test_record_repr_hides_the_hash() -> None:
    raw, token_id, digest = generate_token()
    text = repr(_record(token_id, digest, "ci"))
    assert digest not in text and parse_token(raw)[1] not in text
    assert token_id in text
