"""Accept-Encoding negotiation (RFC 9110 section 12.5.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core import Compressor
from registry_core.compress import negotiate, parse_accept_encoding
from registry_core.errors import NegotiationError

SERVER = ("zstd", "br", "gzip")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("br;q=1.0, gzip;q=0.8, zstd", "zstd"),  # the example: br and zstd tie at 1
        ("br;q=1.0, gzip;q=0.8, zstd;q=0.9", "br"),
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),  # a browser: server prefers br over gzip
        ("gzip, deflate, br, zstd", "zstd"),
        ("*", "zstd"),
        ("*;q=0.5, gzip", "gzip"),
        ("zstd;q=0, *;q=0.3", "br"),
        ("zstd;q=0, br;q=0", "identity"),
        ("identity", "identity"),
        ("identity;q=0.5, gzip;q=0.4", "identity"),
        ("identity;q=0.5, gzip;q=0.5", "gzip"),  # equal q: server order, identity last
        ("", "identity"),  # empty: no coding wanted
        ("GZip;Q=0.7 , BR;q=0.6", "gzip"),  # case-insensitive, whitespace
        ("  gzip\t;\tq=0.3  ,br;q=0.2", "gzip"),
        ("x-gzip", "gzip"),
        ("gzip;q=1.000", "gzip"),
        ("gzip;q=0.001", "gzip"),
        ("gzip;q=0", "identity"),
        ("gzip;q=0.000, br", "br"),
        ("deflate, compress", "identity"),  # nothing the server has; identity still fine
        ("gzip;level=9;q=0.4, br;q=0.3", "gzip"),  # accept-ext before q is ignored
        ("br, br;q=0", "br"),  # listed twice: the highest q counts
    ],
)
def test_rfc9110_cases(header, expected):
    assert Compressor.negotiate(header, SERVER) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip;q=1.5", "identity"),  # q above 1: member ignored
        ("gzip;q=0.5555, br", "br"),  # four decimals: ignored
        ("gzip;q=abc, br;q=0.1", "br"),
        ("gzip;q=, br;q=0.1", "br"),
        ("gz ip, br", "br"),  # not a token
        (",,, ,", "identity"),
        ("\x00\xff;;;==", "identity"),
        ('"gzip"', "identity"),
        ("gzip;q=-0.5", "identity"),
    ],
)
def test_malformed_members_are_ignored(header, expected):
    assert Compressor.negotiate(header, SERVER) == expected


def test_absent_header_means_identity():
    assert Compressor.negotiate(None) == "identity"


def test_bytes_header_and_default_preference():
    assert Compressor.negotiate(b"gzip, zstd") == "zstd"


def test_identity_excluded():
    assert negotiate("identity;q=0", SERVER) == "identity"  # nothing else: fallback
    assert negotiate("*;q=0", SERVER) == "identity"
    assert negotiate("identity;q=0, gzip", SERVER) == "gzip"
    assert negotiate("*;q=0, identity;q=0.1", SERVER) == "identity"
    with pytest.raises(NegotiationError):
        negotiate("identity;q=0", SERVER, strict=True)
    with pytest.raises(NegotiationError):
        negotiate("*;q=0, deflate", SERVER, strict=True)


def test_server_may_rank_identity_first():
    assert negotiate("gzip, identity", ("identity", "gzip")) == "identity"


def test_dcz_is_only_offered_when_the_server_lists_it():
    assert negotiate("dcz, zstd", SERVER) == "zstd"
    assert negotiate("dcz, zstd, br", ("dcz", "zstd", "br")) == "dcz"


def test_parse_accept_encoding():
    assert parse_accept_encoding("gzip;q=0.5, BR, *;q=0") == {"gzip": 0.5, "br": 1.0, "*": 0.0}


_member = st.one_of(
    st.sampled_from(["gzip", "br", "zstd", "identity", "*", "x-gzip", "deflate", "dcz"]),
    st.text(alphabet='abcdefgz*-;=,. \t0123456789qQ"', max_size=12),
)


@given(st.lists(st.tuples(_member, st.one_of(st.none(), st.text(max_size=6))), max_size=6))
def test_never_raises_and_answers_an_offered_coding(members):
    header = ", ".join(m if q is None else f"{m};q={q}" for m, q in members)
    got = Compressor.negotiate(header, SERVER)
    assert got in (*SERVER, "identity")


@given(st.text(max_size=80))
def test_arbitrary_text_never_raises(header):
    assert Compressor.negotiate(header, SERVER) in (*SERVER, "identity")


@given(
    st.dictionaries(
        st.sampled_from(["gzip", "br", "zstd"]),
        st.integers(0, 1000),
        min_size=1,
    )
)
def test_highest_q_wins(qs):
    header = ", ".join(f"{c};q={q / 1000:.3f}" for c, q in qs.items())
    got = Compressor.negotiate(header, SERVER)
    best = max(qs.values())
    if best == 0:
        assert got == "identity"
    else:
        winners = [c for c in SERVER if qs.get(c) == best]
        assert got == winners[0]


def test_readme_example_equal_q_goes_to_the_server_preference():
    """README's example: br and zstd both have q=1 (zstd's is implied); RFC 9110 12.5.3 prefers
    the highest qvalue and says nothing about ties, so the server's order (zstd, br, gzip)
    decides. The README said "br"; the code's answer, "zstd", is the rule documented here."""
    from registry_core import Compressor

    assert Compressor.negotiate("br;q=1.0, gzip;q=0.8, zstd") == "zstd"
    assert Compressor.negotiate("br;q=1.0, gzip;q=0.8, zstd;q=0.9") == "br"
    assert Compressor.negotiate("br;q=1.0, gzip;q=0.8, zstd", ("br", "zstd", "gzip")) == "br"
