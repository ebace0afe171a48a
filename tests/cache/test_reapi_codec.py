"""The REAPI ActionResult codec: round trips, known bytes, foreign fields, malformed input."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.cache._reapi import (
    ActionResult,
    Digest,
    OutputFile,
    decode_action_result,
    encode_action_result,
)
from registry_core.errors import CacheError, InvalidArgumentError

hexes = st.binary(min_size=32, max_size=32).map(lambda b: b.hex())
digests = st.builds(Digest, hexes, st.integers(0, (1 << 63) - 1))
paths = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)
files = st.builds(OutputFile, paths, digests, st.booleans())
results = st.builds(
    ActionResult,
    output_files=st.lists(files, max_size=6).map(tuple),
    exit_code=st.integers(-(1 << 31), (1 << 31) - 1),
    stdout_digest=st.none() | digests,
    stderr_digest=st.none() | digests,
    worker=st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    duration_s=st.integers(0, 10**12).map(lambda ns: ns / 1e9),
    start_ns=st.integers(0, 2_000_000_000 * 10**9),
)


@given(results)
def test_round_trip(r: ActionResult) -> None:
    data = encode_action_result(r)
    assert decode_action_result(data) == r
    assert encode_action_result(decode_action_result(data)) == data  # one byte form


@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(CacheError):
        decode_action_result(data)


@given(results, st.integers(0, 10_000), st.integers(0, 255))
def test_flipped_byte_never_crashes(r: ActionResult, where: int, value: int) -> None:
    data = bytearray(encode_action_result(r))
    if data:
        data[where % len(data)] = value
    with contextlib.suppress(CacheError):
        decode_action_result(bytes(data))


def test_known_bytes() -> None:
    """Bytes worked out by hand from the proto's field numbers."""
    h = hashlib.sha256(b"x").hexdigest()
    r = ActionResult((OutputFile("a", Digest(h, 1), True),), 3, None, None)
    digest = b"\x0a\x40" + h.encode() + b"\x10\x01"  # hash=1 (len 64), size_bytes=2
    out_file = b"\x0a\x01a" + b"\x12" + bytes([len(digest)]) + digest + b"\x20\x01"
    assert encode_action_result(r) == b"\x12" + bytes([len(out_file)]) + out_file + b"\x20\x03"


def test_unknown_fields_and_fixed_widths_are_skipped() -> None:
    h = hashlib.sha256(b"").hexdigest()
    r = ActionResult((), 0, Digest(h, 0), None, worker="w")
    data = encode_action_result(r)
    foreign = (
        b"\x1a\x03abc"  # output_directories (3): skipped
        + b"\x29"
        + b"\x00" * 8  # field 5 fixed64
        + b"\x3d"
        + b"\x00" * 4  # field 7 fixed32
        + b"\xf8\x01\x05"  # field 31 varint
    )
    assert decode_action_result(foreign + data) == r


def test_negative_exit_code_is_ten_byte_varint() -> None:
    r = ActionResult((), -1, None, None)
    data = encode_action_result(r)
    assert data == b"\x20" + b"\xff" * 9 + b"\x01"
    assert decode_action_result(data).exit_code == -1


def test_repeated_message_fields_merge() -> None:
    h = hashlib.sha256(b"ab").hexdigest()
    part1 = b"\x0a\x40" + h.encode()
    part2 = b"\x10\x02"
    data = b"\x32" + bytes([len(part1)]) + part1 + b"\x32" + bytes([len(part2)]) + part2
    assert decode_action_result(data).stdout_digest == Digest(h, 2)


@pytest.mark.parametrize(
    "data",
    [
        b"\x20",  # truncated varint
        b"\x20" + b"\xff" * 10 + b"\x01",  # varint over 10 bytes
        b"\x12\x05ab",  # length past the end
        b"\x0b",  # group start
        b"\x22\x00",  # exit_code with the wrong wire type
        b"\x12\x00",  # an output file without path or digest
        b"\x32\x02\x0a\x00",  # a digest with an empty hash
        b"\x00\x01",  # field number 0
    ],
)
def test_malformed_inputs_raise_cache_error(data: bytes) -> None:
    with pytest.raises(CacheError):
        decode_action_result(data)


def test_digest_validation() -> None:
    with pytest.raises(InvalidArgumentError):
        Digest("ABC", 1)
    with pytest.raises(InvalidArgumentError):
        Digest("0" * 64, -1)
    with pytest.raises(InvalidArgumentError):
        encode_action_result(ActionResult((), 0, None, None, worker="\ud800"))
    assert Digest.of(b"abc").matches(b"abc")
    assert not Digest.of(b"abc").matches(b"abd")
