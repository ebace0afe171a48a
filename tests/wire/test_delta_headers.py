"""Delta negotiation headers (RFC 3229 A-IM/IM, entity tags): round trips and hostile input."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError
from registry_core.wire import (
    IM_RCDELTA,
    delta_request_headers,
    delta_response_headers,
    etag_for,
    etag_for_sha256,
    etag_to_sha256,
    format_digest,
    parse_delta_request,
    parse_entity_tags,
    parse_im,
)


@given(st.binary(max_size=4096))
def test_etag_round_trip(data):
    etag = etag_for(data)
    assert etag_to_sha256(etag) == hashlib.sha256(data).digest()
    assert etag_for_sha256(hashlib.sha256(data).digest()) == etag


@pytest.mark.parametrize(
    "etag", ['W/"' + "a" * 64 + '"', '"' + "A" * 64 + '"', '"abc"', "a" * 64, '"' + "a" * 63 + '"']
)
def test_foreign_etags_are_not_ours(etag):
    assert etag_to_sha256(etag) is None


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=10))
def test_request_headers_round_trip(haves):
    tags = [etag_for(h) for h in haves]
    headers = {"if-none-match": ", ".join(tags), "a-im": "rcdelta, vcdiff;q=0.5"}
    ask = parse_delta_request(headers)
    assert ask.wants_rcdelta
    assert ask.base_sha256s() == [hashlib.sha256(h).digest() for h in haves]


def test_client_headers():
    h = delta_request_headers(b"old")
    assert h["a-im"] == IM_RCDELTA and h["if-none-match"] == etag_for(b"old")
    assert "a-im" not in delta_request_headers(None)


def test_response_headers():
    h = delta_response_headers(etag_for(b"a"), etag_for(b"b"), format_digest(b"b"))
    assert h["im"] == "rcdelta" and h["delta-base"] == etag_for(b"a")
    assert "no-transform" in h["cache-control"]


def test_entity_tag_parsing():
    assert parse_entity_tags('"a", W/"b" ,"c"') == ['"a"', 'W/"b"', '"c"']
    assert parse_entity_tags("*") is None
    for bad in ('"a" "b"', "abc", '"a",,', '"unterminated'):
        with pytest.raises(InvalidArgumentError):
            parse_entity_tags(bad)
    with pytest.raises(InvalidArgumentError, match="more than"):
        parse_entity_tags(", ".join(['"x"'] * 40))


def test_im_parsing():
    assert parse_im("RCDelta;q=1, vcdiff") == ["rcdelta", "vcdiff"]
    with pytest.raises(InvalidArgumentError):
        parse_im("rc delta")


@given(st.text(max_size=300))
def test_server_never_raises_on_garbage(text):
    ask = parse_delta_request({"if-none-match": text, "a-im": text})
    assert isinstance(ask.wants_rcdelta, bool)
    assert all(len(s) == 32 for s in ask.base_sha256s())


def test_delta_engines_field():
    from registry_core.wire import format_delta_engines, parse_delta_engines

    assert format_delta_engines(["miniz", "zlib"]) == "zlib, miniz"
    assert format_delta_engines([]) == ""
    assert parse_delta_engines(None) is None
    assert parse_delta_engines("zlib, miniz") == {"zlib", "miniz"}
    assert parse_delta_engines("ZLIB;v=1") == {"zlib"}
    assert parse_delta_engines("") == frozenset()
    assert parse_delta_engines('zlib, "x", (a b)') == {"zlib"}
    assert parse_delta_engines("zlib,,") == frozenset()  # malformed: BINARY only


def test_request_states_its_engines():
    ask = parse_delta_request({"a-im": "rcdelta", "delta-engines": "zlib"})
    assert ask.engines == {"zlib"}
    assert parse_delta_request({"a-im": "rcdelta"}).engines is None
    assert parse_delta_request({"a-im": "rcdelta", "delta-engines": ""}).engines == frozenset()
    h = delta_request_headers(b"old", engines=["zlib", "miniz"])
    assert h["delta-engines"] == "zlib, miniz" and h["a-im"] == "rcdelta"
    h = delta_request_headers(b"old", engines=[])
    assert h["delta-engines"] == ""
    assert "delta-engines" not in delta_request_headers(b"old")
    sha = hashlib.sha256(b"old").digest()
    assert delta_request_headers(None, have_sha256=sha) == delta_request_headers(b"old")


def test_im_is_a_structured_list():
    assert parse_im('rcdelta;note="a,b", vcdiff') == ["rcdelta", "vcdiff"]
    for bad in ('"rcdelta"', "rcdelta,,", "1x"):
        with pytest.raises(InvalidArgumentError):
            parse_im(bad)
