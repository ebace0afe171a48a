"""RFC 9530 digest fields: format/parse round trips, RFC examples, hostile input."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import DigestMismatchError, InvalidArgumentError
from registry_core.wire import (
    choose_algorithm,
    format_digest,
    format_want_digest,
    parse_digest,
    parse_want_digest,
    verify_digest,
)


def test_rfc9530_example_value():
    # RFC 9530 section 2 / appendix B: {"hello": "world"} with sha-256.
    body = b'{"hello": "world"}'
    assert format_digest(body) == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    assert format_digest(body, algorithms=("sha-512",)).startswith("sha-512=:WZDPaVn/7XgHaAy8pm")


@given(
    st.binary(max_size=2048), st.sampled_from([("sha-256",), ("sha-512",), ("sha-256", "sha-512")])
)
def test_format_parse_round_trip(data, algorithms):
    value = format_digest(data, algorithms=algorithms)
    parsed = parse_digest(value)
    assert set(parsed) == set(algorithms)
    for alg, digest in parsed.items():
        assert digest == hashlib.new(alg.replace("-", ""), data).digest()
    assert verify_digest(data, value) in algorithms


@given(st.binary(min_size=1, max_size=512), st.integers(min_value=0), st.integers(1, 255))
def test_corrupted_data_is_detected(data, pos, flip):
    value = format_digest(data)
    bad = bytearray(data)
    bad[pos % len(bad)] ^= flip
    with pytest.raises(DigestMismatchError, match="does not match"):
        verify_digest(bytes(bad), value)


def test_parameters_and_unknown_algorithms_are_tolerated():
    data = b"abc"
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    value = f"unixsum=:AAAA:, sha-256=:{sha}:;x=1"
    assert parse_digest(value)["sha-256"] == hashlib.sha256(data).digest()
    assert verify_digest(data, value) == "sha-256"


@pytest.mark.parametrize(
    "value",
    [
        "sha-256",
        "sha-256=abc",
        "sha-256=:not base64!:",
        "SHA-256=:AAAA:",
        "sha-256=:AAAA:",
        "=:AAAA:",
        "x" * 9000,
    ],
)
def test_malformed_fields_raise(value):
    with pytest.raises(InvalidArgumentError):
        parse_digest(value)


def test_unverifiable_field_counts_as_mismatch():
    with pytest.raises(DigestMismatchError, match="no supported algorithm"):
        verify_digest(b"x", "md5=:AAAAAAAAAAAAAAAAAAAAAA==:")
    with pytest.raises(DigestMismatchError, match="unusable"):
        verify_digest(b"x", "sha-256=garbage")


@given(
    st.dictionaries(
        st.sampled_from(["sha-256", "sha-512", "md5", "unixsum"]), st.integers(0, 10), min_size=1
    )
)
def test_want_digest_round_trip(prefs):
    assert parse_want_digest(format_want_digest(prefs)) == prefs


def test_want_digest_choice():
    assert choose_algorithm("sha-256=1, sha-512=3") == "sha-512"
    assert choose_algorithm("sha-512=0, sha-256=2") == "sha-256"
    assert choose_algorithm("md5=10") is None
    assert choose_algorithm(None) == "sha-256"
    assert choose_algorithm("garbage=") == "sha-256"
    with pytest.raises(InvalidArgumentError):
        parse_want_digest("sha-256=11")


def test_parameters_with_commas_inside_strings_verify():
    """RFC 8941 strings may hold commas: splitting the field on ',' broke verification."""
    data = b"artifact bytes"
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    for value in (
        f'sha-256=:{sha}:;note="a,b"',
        f'sha-512=:{"A" * 86}==:;x="1, 2", ' f'sha-256=:{sha}:;y="(,)"',
    ):
        assert parse_digest(value)["sha-256"] == hashlib.sha256(data).digest()
    assert verify_digest(data, f'sha-256=:{sha}:;note="a,b"') == "sha-256"


def test_want_digest_is_a_structured_dictionary():
    assert parse_want_digest('sha-256=10;note="x,y", sha-512=3') == {"sha-256": 10, "sha-512": 3}
    for bad in ("sha-256=11", "sha-256=?1", "sha-256=1.5", 'sha-256="10"'):
        with pytest.raises(InvalidArgumentError):
            parse_want_digest(bad)
