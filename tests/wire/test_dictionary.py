"""RFC 9842 header fields: Use-As-Dictionary, Available-Dictionary, Dictionary-ID."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError
from registry_core.wire._dictionary import (
    DICTIONARY_VARY,
    UseAsDictionary,
    available_dictionary,
    build_dictionary_id,
    build_use_as_dictionary,
    parse_available_dictionary,
    parse_dictionary_id,
    parse_sf_dictionary,
    parse_use_as_dictionary,
)

sf_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


def test_rfc9842_examples():
    # section 2.1.5 of RFC 9842 (examples of Use-As-Dictionary)
    assert parse_use_as_dictionary('match="/app/*/main.js"') == UseAsDictionary("/app/*/main.js")
    got = parse_use_as_dictionary('match="/app/*/main.js", match-dest=("script")')
    assert got == UseAsDictionary("/app/*/main.js", ("script",))
    got = parse_use_as_dictionary('match="/product/*", match-dest=("document")')
    assert got is not None and got.match_dest == ("document",) and got.type == "raw"


def test_defaults_and_unknown_keys():
    got = parse_use_as_dictionary('match="/a", future=?1;x=1, type=raw')
    assert got == UseAsDictionary("/a", (), "", "raw")
    assert parse_use_as_dictionary('match="/a", type=dcb-future').type == "dcb-future"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        'id="x"',  # no match
        "match=/a",  # a token, not a string
        'match=""',
        'match="/a",',  # trailing comma
        'match="/a" extra',
        'match="/a", match-dest="script"',  # not an inner list
        'match="/a", match-dest=(script)',  # tokens inside
        'match="/a", id=5',
        'match="/a", type="raw"',  # type is a token
        'match="/a\\x"',  # bad escape
        'match="\u00e9"',
        'match="/a", id="' + "x" * 1025 + '"',
    ],
)
def test_invalid_use_as_dictionary_is_ignored(value):
    assert parse_use_as_dictionary(value) is None


@given(
    match=sf_text.filter(bool),
    dests=st.lists(sf_text, max_size=3),
    ident=sf_text,
    kind=st.sampled_from(["raw", "x-custom", "a*b"]),
)
def test_use_as_dictionary_round_trip(match, dests, ident, kind):
    value = build_use_as_dictionary(match, match_dest=dests, id=ident, type=kind)
    assert parse_use_as_dictionary(value) == UseAsDictionary(match, tuple(dests), ident, kind)
    assert parse_use_as_dictionary(value.encode()) == parse_use_as_dictionary(value)


@given(st.text(max_size=80))
def test_parsers_never_raise(text):
    parse_use_as_dictionary(text)
    parse_available_dictionary(text)
    parse_dictionary_id(text)
    parse_sf_dictionary(text)


def test_available_dictionary_is_an_sf_byte_sequence_of_sha256():
    data = b"previous version of the resource"
    digest = hashlib.sha256(data).digest()
    value = available_dictionary(digest)
    assert value == ":" + base64.b64encode(digest).decode() + ":"
    assert parse_available_dictionary(value) == digest
    assert parse_available_dictionary(f" {value};p=1 ") == digest  # parameters ignored


def test_available_dictionary_from_a_dictionary_object():
    from registry_core.compress import Dictionary

    d = Dictionary(b"abc" * 50)
    assert parse_available_dictionary(available_dictionary(d)) == d.sha256


@pytest.mark.parametrize(
    "value",
    [None, "", ":abc:", ":" + base64.b64encode(b"x" * 31).decode() + ":", '"text"', ":@@:", "::"],
)
def test_invalid_available_dictionary(value):
    assert parse_available_dictionary(value) is None


def test_wrong_hash_length_refused():
    with pytest.raises(InvalidArgumentError):
        available_dictionary(b"short")


@given(sf_text)
def test_dictionary_id_round_trip(ident):
    assert parse_dictionary_id(build_dictionary_id(ident)) == ident


def test_dictionary_id_limits():
    assert parse_dictionary_id("token") is None
    assert parse_dictionary_id('"' + "a" * 1025 + '"') is None
    with pytest.raises(InvalidArgumentError):
        build_dictionary_id("a" * 1025)
    with pytest.raises(InvalidArgumentError):
        build_dictionary_id("caf\u00e9")


def test_builder_rejects_bad_arguments():
    with pytest.raises(InvalidArgumentError):
        build_use_as_dictionary("")
    with pytest.raises(InvalidArgumentError):
        build_use_as_dictionary("/a", type="not a token")


def test_vary_names_both_fields():
    assert DICTIONARY_VARY == "accept-encoding, available-dictionary"
