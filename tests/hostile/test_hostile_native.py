"""Hostile control streams straight into the C core's cffi surface (run under ASan/UBSan).

`make sanitize` runs this file against a core built with AddressSanitizer and
UndefinedBehaviorSanitizer: an out-of-bounds access or a signed overflow in size arithmetic
aborts the run. Every case builds its hostile input here; the C functions must answer with an
RC_ error code (and the Python wrapper with a registry_core.errors class), never read or write
outside the buffers they were given, never allocate from a declared size, and never write past
the output length they were handed (a canary after it is checked).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core._native import ffi, lib
from registry_core.errors import CorruptPatchError

pytestmark = pytest.mark.native

INT64_MAX = (1 << 63) - 1
SEEK_LIMIT = 1 << 62
CANARY = 0xA5


def uvarint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zigzag(v: int) -> int:
    return (v << 1) ^ (v >> 63) if v >= 0 else ((-v) << 1) - 1


def record(lenf: int, lenx: int, seek: int = 0) -> bytes:
    return uvarint(lenf) + uvarint(lenx) + uvarint(zigzag(seek))


def apply_rc(old: bytes, ctrl: bytes, diff: bytes, extra: bytes, out_len: int) -> tuple[int, bytes]:
    """rc_delta_apply into a buffer with 64 canary bytes after out_len; checks the canary."""
    buf = bytearray([CANARY]) * (out_len + 64)
    rc = lib.rc_delta_apply(
        old,
        len(old),
        ctrl,
        len(ctrl),
        diff,
        len(diff),
        extra,
        len(extra),
        ffi.from_buffer(buf, require_writable=True),
        out_len,
    )
    assert buf[out_len:] == bytes([CANARY]) * 64, "wrote past the output length"
    return rc, bytes(buf[:out_len])


def measure(ctrl: bytes, old_len: int, diff_len: int, extra_len: int) -> tuple[int, int]:
    n = ffi.new("uint64_t *")
    rc = lib.rc_delta_measure(ctrl, len(ctrl), old_len, diff_len, extra_len, n)
    return rc, int(n[0])


HOSTILE_CTRL = {
    # a copy far longer than old, diff and out
    "huge-lenf": (record(INT64_MAX, 0), 8),
    # extra far longer than the extra stream
    "huge-lenx": (record(0, INT64_MAX), 8),
    # lenf fits out, lenx then overflows out_len - lenf
    "lenf-plus-lenx-overflows": (record(4, INT64_MAX - 3), 8),
    # seek before the start of old, then copy
    "negative-seek-then-copy": (record(0, 0, -10) + record(2, 0), 2),
    # the most negative seek a varint can encode, twice, then copy
    "min-seek-twice": (record(0, 0, -SEEK_LIMIT) * 2 + record(1, 0), 1),
    # the largest positive seek, repeatedly: the cursor must be refused before it can overflow
    "max-seek-repeated": (record(0, 0, SEEK_LIMIT - 1) * 4 + record(1, 0), 1),
    # cursor exactly at the limit, then the largest seek
    "seek-to-limit": (
        record(0, 0, SEEK_LIMIT - 1) + record(0, 0, 1) + record(0, 0, SEEK_LIMIT - 1),
        0,
    ),
    # seek past the end of old, then copy
    "seek-past-end": (record(0, 0, 100) + record(1, 0), 1),
    # a varint above 2^63 - 1 (ten bytes, top bits set)
    "varint-above-int64": (b"\xff" * 9 + b"\x01" + b"\x00\x00", 1),
    # eleven bytes: longer than any varint
    "varint-eleven-bytes": (b"\x80" * 10 + b"\x00" + b"\x00\x00", 1),
    # truncated in the middle of a record
    "truncated-record": (uvarint(1) + b"\x80", 1),
    # valid records that do not fill the output
    "short-output": (record(1, 0), 4),
    # records that would produce more than out_len
    "long-output": (record(0, 3), 2),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_CTRL))
def test_hostile_control_streams_are_refused(name):
    from registry_core.delta import _binary

    ctrl, out_len = HOSTILE_CTRL[name]
    old, diff, extra = b"abcdefgh", b"\x00" * 4, b"xyz"
    rc, _ = apply_rc(old, ctrl, diff[: min(out_len, 4)], extra, out_len)
    assert rc == lib.RC_ECORRUPT
    m_rc, m_len = measure(ctrl, len(old), min(out_len, 4), len(extra))
    assert m_rc == lib.RC_ECORRUPT and m_len == 0
    with pytest.raises(CorruptPatchError):
        _binary.apply(old, _binary.Streams(ctrl, diff[: min(out_len, 4)], extra), out_len)


def test_cursor_may_wander_within_the_limit_and_come_back():
    """Large seeks that return inside old before copying are valid (no false positive)."""
    ctrl = record(0, 0, SEEK_LIMIT - 1) + record(0, 0, -(SEEK_LIMIT - 1) + 2) + record(2, 1)
    rc, out = apply_rc(b"abcdef", ctrl, b"\x00\x01", b"!", 3)
    assert rc == lib.RC_OK and out == b"ce!"
    assert measure(ctrl, 6, 2, 1) == (lib.RC_OK, 3)


def test_old_length_beyond_the_cursor_range_is_refused_before_any_access():
    # A length no real buffer has (2^62 + 1) with a one-byte buffer: the core must refuse it at
    # entry (ASan would report the read otherwise).
    n = ffi.new("uint64_t *")
    assert lib.rc_delta_measure(b"", 0, SEEK_LIMIT + 1, 0, 0, n) == lib.RC_EINVAL
    one = bytearray(1)
    assert (
        lib.rc_delta_apply(
            b"a",
            SEEK_LIMIT + 1,
            b"",
            0,
            b"",
            0,
            b"",
            0,
            ffi.from_buffer(one, require_writable=True),
            0,
        )
        == lib.RC_EINVAL
    )


def test_null_buffers_with_lengths_are_refused():
    out = ffi.new("uint8_t[]", 4)
    n = ffi.new("uint64_t *")
    assert lib.rc_delta_apply(ffi.NULL, 4, b"", 0, b"", 0, b"", 0, out, 0) == lib.RC_EINVAL
    assert lib.rc_delta_apply(b"", 0, ffi.NULL, 3, b"", 0, b"", 0, out, 0) == lib.RC_EINVAL
    assert lib.rc_delta_apply(b"", 0, b"", 0, b"", 0, b"", 0, ffi.NULL, 1) == lib.RC_EINVAL
    assert lib.rc_delta_measure(ffi.NULL, 3, 0, 0, 0, n) == lib.RC_EINVAL
    assert lib.rc_delta_measure(b"", 0, 0, 0, 0, ffi.NULL) == lib.RC_EINVAL
    assert lib.rc_add_bytes(ffi.NULL, b"a", b"b", 1) == lib.RC_EINVAL
    assert lib.rc_add_bytes(out, ffi.NULL, b"b", 1) == lib.RC_EINVAL
    assert lib.rc_add_bytes(ffi.NULL, ffi.NULL, ffi.NULL, 0) == lib.RC_OK
    params = ffi.new("rc_delta_params *")
    lib.rc_delta_params_default(params)
    res = ffi.new("rc_delta_out *")
    assert lib.rc_delta_encode(ffi.NULL, 5, b"abc", 3, params, res) == lib.RC_EINVAL
    assert lib.rc_delta_encode(b"abc", 3, ffi.NULL, 5, params, res) == lib.RC_EINVAL
    assert lib.rc_delta_encode(b"abc", 3, b"abc", 3, ffi.NULL, res) == lib.RC_EINVAL


def test_hostile_encoder_parameters_are_clamped():
    """Zero / maximal parameter words from a caller: clamped, never a crash or a hang."""
    data = bytes(range(256)) * 40
    for min_match, max_chain, step in ((0, 0, 0), (0xFFFFFFFF, 1, 0xFFFFFFFF), (4, 3, 7)):
        params = ffi.new("rc_delta_params *")
        params.min_match, params.max_chain, params.index_step = min_match, max_chain, step
        res = ffi.new("rc_delta_out *")
        new = data[:5000] + b"edit" + data[5000:]
        assert lib.rc_delta_encode(data, len(data), new, len(new), params, res) == lib.RC_OK
        try:
            rc, out = apply_rc(
                data,
                bytes(ffi.buffer(res.ctrl, res.ctrl_len)),
                bytes(ffi.buffer(res.diff, res.diff_len)),
                bytes(ffi.buffer(res.extra, res.extra_len)),
                len(new),
            )
        finally:
            lib.rc_delta_out_free(res)
        assert rc == lib.RC_OK and out == new


def test_chunker_parameters_tampered_after_init_are_refused():
    params = ffi.new("rc_cdc_params *")
    assert lib.rc_cdc_params_init(params, 64, 256, 1024) == lib.RC_OK
    out = ffi.new("uint64_t[]", 8)
    data = bytes(4096)
    for field, value in (
        ("min_size", 0),
        ("max_size", 32),
        ("avg_size", 1 << 31),
        ("max_size", 0xFFFFFFFF),
    ):
        tampered = ffi.new("rc_cdc_params *", params[0])
        setattr(tampered, field, value)
        assert lib.rc_cdc_find(tampered, data, len(data), 1, out, 8) == lib.RC_EINVAL
    # Masks are not validated: any mask only moves cut points, lengths stay within bounds.
    for mask in (0, (1 << 64) - 1):
        tampered = ffi.new("rc_cdc_params *", params[0])
        tampered.mask_s = tampered.mask_l = mask
        tampered.mask_s_ls = tampered.mask_l_ls = mask & ((1 << 64) - 1)
        n = lib.rc_cdc_find(tampered, data, len(data), 1, out, 8)
        ends = [0, *ffi.unpack(out, n)]
        assert all(64 <= b - a <= 1024 for a, b in itertools.pairwise(ends))


def test_many_empty_records_are_linear_and_refused_when_output_is_missing():
    ctrl = record(0, 0) * 200_000  # 600 KB of no-op records
    assert measure(ctrl, 8, 0, 0) == (lib.RC_OK, 0)
    rc, _ = apply_rc(b"abcdefgh", ctrl, b"", b"", 1)
    assert rc == lib.RC_ECORRUPT


@settings(max_examples=300, deadline=None)
@given(
    ctrl=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(-50, 50)), max_size=8
    ).map(lambda recs: b"".join(record(*r) for r in recs))
    | st.binary(max_size=40),
    old=st.binary(max_size=64),
    diff_len=st.integers(0, 80),
    extra_len=st.integers(0, 80),
)
def test_measure_agrees_with_apply(ctrl, old, diff_len, extra_len):
    """measure says OK with length n exactly when apply into n bytes succeeds."""
    diff, extra = bytes(diff_len), b"e" * extra_len
    m_rc, n = measure(ctrl, len(old), diff_len, extra_len)
    if m_rc == lib.RC_OK:
        assert n == diff_len + extra_len
        assert apply_rc(old, ctrl, diff, extra, n)[0] == lib.RC_OK
    else:
        assert m_rc == lib.RC_ECORRUPT and n == 0
        for out_len in {0, diff_len + extra_len, diff_len + extra_len + 1}:
            assert apply_rc(old, ctrl, diff, extra, out_len)[0] == lib.RC_ECORRUPT


def test_hostile_streams_allocate_nothing():
    """Thousands of hostile applies and measures in a fresh process: peak RSS grows by less
    than 8 MiB (measured: ~0.1 MiB; the core allocates nothing in either function)."""
    code = textwrap.dedent(
        """
        import resource
        from registry_core._native import ffi, lib
        huge = b"\\xff" * 8 + b"\\x7f"  # 2^63 - 1
        # lenf huge; lenx huge; a seek of -2^62 then a copy
        ctrls = [huge + b"\\x00\\x00", b"\\x00" + huge + b"\\x00",
                 b"\\x00\\x00" + huge + b"\\x01\\x00\\x00"]
        out = ffi.new("uint8_t[]", 16)
        n = ffi.new("uint64_t *")
        def run():
            for _ in range(3000):
                for c in ctrls:
                    assert lib.rc_delta_apply(b"old", 3, c, len(c), b"", 0, b"", 0, out, 16) < 0
                    assert lib.rc_delta_measure(c, len(c), 3, 0, 0, n) < 0
        run()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(after - before)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) < 8 * 1024  # KiB
