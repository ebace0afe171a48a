"""The C delta engine directly: encode/apply round trips and hostile streams (run under ASan)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.delta import _binary
from registry_core.errors import CorruptPatchError

pytestmark = pytest.mark.native


@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_encode_apply_round_trip(old, new):
    s = _binary.encode(old, new)
    assert len(s.diff) + len(s.extra) == len(new)
    assert _binary.apply(old, s, len(new)) == new


@given(
    st.binary(min_size=1, max_size=4000),
    st.lists(st.tuples(st.integers(0, 4000), st.binary(max_size=30)), max_size=6),
)
def test_round_trip_with_edits(old, edits):
    new = bytearray(old)
    for pos, ins in edits:
        new[pos % (len(new) + 1) : pos % (len(new) + 1)] = ins
    s = _binary.encode(old, bytes(new))
    assert _binary.apply(old, s, len(new)) == bytes(new)


@given(
    st.binary(max_size=300),
    st.binary(max_size=300),
    st.binary(max_size=300),
    st.binary(max_size=64),
    st.integers(0, 5000),
)
def test_hostile_streams_never_crash(old, diff, extra, ctrl, size):
    try:
        out = _binary.apply(old, _binary.Streams(ctrl, diff, extra), size)
    except CorruptPatchError:
        return
    assert len(out) == size


def test_varint_overflow_rejected():
    # ten continuation bytes then a terminator: longer than any valid varint
    ctrl = b"\xff" * 10 + b"\x01" + b"\x00\x00"
    with pytest.raises(CorruptPatchError):
        _binary.apply(b"abc", _binary.Streams(ctrl, b"", b""), 1)


def test_copy_outside_old_rejected():
    # lenf=4 from cursor 0 on a 2-byte old
    with pytest.raises(CorruptPatchError):
        _binary.apply(b"ab", _binary.Streams(b"\x04\x00\x00", b"\x00" * 4, b""), 4)
    # seek to -10 then copy
    with pytest.raises(CorruptPatchError):
        _binary.apply(b"abcdef", _binary.Streams(b"\x00\x00\x13\x02\x00\x00", b"\x00\x00", b""), 2)


@pytest.mark.parametrize(
    "maker",
    [
        lambda n: bytes(n),
        lambda n: (b"ab" * n)[:n],
        lambda n: random.Random(1).choice([b"x", b"y"]) * n,
        lambda n: bytes(random.Random(2).choice(b"ab") for _ in range(n)),
    ],
)
def test_repetitive_inputs_stay_linear(maker):
    """Runs and tiny alphabets: the encoder must not go quadratic (plain bsdiff does)."""
    import time

    small, big = maker(20_000), maker(400_000)
    t0 = time.perf_counter()
    _binary.encode(small, small[::-1] + b"!" + small)
    t_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = _binary.encode(big, big[::-1] + b"!" + big)
    t_big = time.perf_counter() - t0
    assert _binary.apply(big, s, 2 * len(big) + 1) == big[::-1] + b"!" + big
    # 20x the input may cost at most ~20x (x8 slack for noise and cache effects), not 400x
    assert t_big < max(t_small, 0.002) * 160


def test_add_bytes():
    assert _binary.add_bytes(b"\x01\xff", b"\x01\x02") == b"\x02\x01"
