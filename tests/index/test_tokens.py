"""API tokens: format, hashing at rest, constant-time verification, scopes, revocation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import AuthenticationError, InvalidArgumentError, PermissionDeniedError
from registry_core.index import Index, TokenRecord
from registry_core.index._tokens import (
    check_scope,
    generate_token,
    hash_secret,
    parse_token,
    verify_secret,
)
from registry_core.storage import MemoryStorage


def _record(secret_sha256: str, scope: str | None = None) -> TokenRecord:
    return TokenRecord("0123456789abcdef", secret_sha256, scope, "", 1)


def test_generate_parse_verify() -> None:
    raw, token_id, digest = generate_token()
    assert raw.startswith(f"rc-{token_id}-")
    tid, secret = parse_token(raw)
    assert tid == token_id
    assert len(secret) == 43  # 32 bytes, URL-safe base64 without padding
    assert digest == hash_secret(secret) != secret
    assert secret not in digest
    record = TokenRecord(token_id, digest, None, "", 1)
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


def test_scope_checks() -> None:
    check_scope(_record("x"), "anything")
    check_scope(_record("x", scope="mine"), "mine")
    with pytest.raises(PermissionDeniedError) as info:
        check_scope(_record("x", scope="mine"), "theirs")
    assert info.value.status == 403
    with pytest.raises(AuthenticationError):
        check_scope(dataclasses.replace(_record("x"), revoked_ns=5), "anything")


def test_record_repr_hides_the_hash() -> None:
    raw, token_id, digest = generate_token()
    text = repr(TokenRecord(token_id, digest, None, "ci", 1))
    assert digest not in text and parse_token(raw)[1] not in text
    assert token_id in text


# -- through the Index -------------------------------------------------------------------------


def test_index_tokens(tmp_path: Path) -> None:
    with Index(tmp_path) as index:
        raw, record = index.create_token(description="ci")
        scoped_raw, scoped = index.create_token(scope="My_Project.Name")
        assert scoped.scope == "my-project-name"
        assert [t.token_id for t in index.tokens()] == [record.token_id, scoped.token_id]
        assert index.authenticate(raw, "whatever").token_id == record.token_id
        assert index.authenticate(scoped_raw, "my.project_name").token_id == scoped.token_id
        with pytest.raises(PermissionDeniedError):
            index.authenticate(scoped_raw, "other")
        # a right id with a wrong secret, and an unknown id
        tid, secret = parse_token(raw)
        wrong = f"rc-{tid}-{'A' * 43}"
        with pytest.raises(AuthenticationError, match="invalid API token"):
            index.authenticate(wrong, "x")
        with pytest.raises(AuthenticationError):
            index.authenticate(f"rc-{'0' * 16}-{secret}", "x")
        assert index.tokens()[0].last_used_ns is not None
        assert index.revoke_token(record.token_id)
        assert not index.revoke_token(record.token_id)
        assert not index.revoke_token("nope")
        with pytest.raises(AuthenticationError, match="revoked"):
            index.authenticate(raw, "x")
        assert index.tokens()[0].revoked_ns is not None
    # only the hash is at rest: the secret is nowhere in the database files
    secret_bytes = parse_token(raw)[1].encode()
    for f in (tmp_path / ".registry-core").iterdir():
        if f.is_file():
            assert secret_bytes not in f.read_bytes()


def test_invalid_scope() -> None:
    with Index(MemoryStorage()) as index:
        for bad in ("", "-x", "a b", "../x"):
            with pytest.raises(InvalidArgumentError):
                index.create_token(scope=bad)
        assert index.tokens() == []
