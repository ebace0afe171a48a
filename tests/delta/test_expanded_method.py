"""Method 5 EXPANDED: recompress / apply(b"") on real zip, tar.gz and gzip artifacts, refusals."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core import DeltaAggregator
from registry_core.delta import EXPANDED_MAX_WINDOW_LOG, ExpandedDecoder
from registry_core.delta._expanded import EMPTY_SHA256, compress_content, window_log
from registry_core.delta._format import Codec, Method, Section, parse, serialize
from registry_core.errors import (
    BaseMismatchError,
    CorruptPatchError,
    OutputTooLargeError,
    RegistryCoreError,
)


def _text(rng: random.Random, n: int) -> bytes:
    words = [b"def", b"return", b"import", b"self", b"value", b"registry", b"(", b")", b"\n", b"x"]
    return b" ".join(rng.choice(words) for _ in range(n))


def wheel(seed: int = 1, *, members: int = 12, level: int = 6) -> bytes:
    rng = random.Random(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(members):
            info = zipfile.ZipInfo(f"pkg/m{i}.py", date_time=(2024, 1, 2, 3, 4, 6))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, _text(rng, 400), compresslevel=level)
        data = gzip.compress(b'{"k": [' + b",".join(b"%d" % i for i in range(500)) + b"]}", mtime=0)
        info = zipfile.ZipInfo("pkg/data.json.gz", date_time=(2024, 1, 2, 3, 4, 6))
        zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def sdist(seed: int = 2) -> bytes:
    rng = random.Random(seed)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(6):
            body = _text(rng, 600)
            ti = tarfile.TarInfo(f"pkg-1.0/src/m{i}.py")
            ti.size, ti.mtime = len(body), 1_700_000_000
            tf.addfile(ti, io.BytesIO(body))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=1_700_000_000)


AGG = DeltaAggregator(level=3)


@pytest.mark.parametrize(
    "make",
    [
        wheel,
        sdist,
        lambda: gzip.compress(b"".join(b"line %d\n" % i for i in range(20000)), mtime=0),
    ],
)
def test_recompress_then_apply_on_the_empty_base_is_byte_exact(make):
    data = make()
    patch = DeltaAggregator().recompress(data)  # level 19: gzip -9 of a tar is hard to beat
    assert patch is not None and len(patch) < len(data)
    info = AGG.inspect(patch)
    assert info.method == "EXPANDED" and info.base_size == 0
    assert info.base_sha256 == EMPTY_SHA256.hex()
    assert info.target_sha256 == hashlib.sha256(data).hexdigest()
    assert AGG.apply(b"", patch) == data


def test_diff_from_the_empty_base_picks_expanded_when_smallest():
    data = wheel(3)
    patch = AGG.diff(b"", data)
    assert AGG.inspect(patch).method == "EXPANDED"
    assert AGG.apply(b"", patch) == data


def test_nothing_to_expand_gives_none_and_diff_still_works():
    data = random.Random(4).randbytes(5000)
    assert AGG.recompress(data) is None
    assert AGG.recompress(b"") is None
    assert AGG.apply(b"", AGG.diff(b"", data)) == data


def test_not_smaller_than_the_file_gives_none():
    # A stored-only zip of random bytes: the expanded form is the file itself.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.bin", random.Random(5).randbytes(4000), compress_type=zipfile.ZIP_DEFLATED)
    assert DeltaAggregator(level=3, full_margin=0.5).recompress(buf.getvalue()) is None


def test_level_one_still_byte_exact_and_window_is_bounded():
    data = wheel(6, level=9)
    patch = DeltaAggregator(level=1).recompress(data)
    assert patch is not None and DeltaAggregator().apply(b"", patch) == data
    assert window_log(1 << 40) == EXPANDED_MAX_WINDOW_LOG
    assert window_log(1000) == 10 and window_log(1 << 20) == 20


def test_an_expanded_patch_refuses_a_non_empty_base():
    patch = AGG.recompress(wheel())
    with pytest.raises(BaseMismatchError):
        AGG.apply(b"x", patch)
    with pytest.raises(BaseMismatchError):
        AGG.apply(wheel(), patch)


def _rewrite(patch: bytes, **changes) -> bytes:
    p = parse(patch)
    sections = [(k, s.codec, s.raw_len, bytes(s.payload)) for k, s in p.sections.items()]
    fields = dict(
        base_size=p.base_size,
        target_size=p.target_size,
        base_sha256=p.base_sha256,
        target_sha256=p.target_sha256,
        sections=sections,
    )
    fields.update(changes)
    return serialize(Method.EXPANDED, **fields)


def test_a_header_naming_a_non_empty_base_is_refused():
    patch = AGG.recompress(wheel())
    lying = _rewrite(patch, base_size=1, base_sha256=hashlib.sha256(b"x").digest())
    with pytest.raises(CorruptPatchError, match="non-empty base"):
        AGG.apply(b"x", lying)
    with pytest.raises(CorruptPatchError, match="non-empty base"):
        ExpandedDecoder().feed(lying)


def test_limits_are_refused_before_allocation():
    data = wheel()
    patch = AGG.recompress(data)
    small_out = DeltaAggregator(max_output_size=len(data) - 1)
    with pytest.raises(OutputTooLargeError):
        small_out.apply(b"", patch)
    with pytest.raises(OutputTooLargeError):
        small_out.expanded_decoder().feed(patch)
    small_exp = DeltaAggregator(max_expanded_size=len(data))
    with pytest.raises(OutputTooLargeError):
        small_exp.apply(b"", patch)
    with pytest.raises(OutputTooLargeError):
        small_exp.expanded_decoder().feed(patch)


def test_a_frame_declaring_a_huge_window_or_size_is_refused():
    data = wheel()
    p = parse(AGG.recompress(data))
    layout = (
        Section.LAYOUT,
        p.sections[Section.LAYOUT].codec,
        p.sections[Section.LAYOUT].raw_len,
        bytes(p.sections[Section.LAYOUT].payload),
    )
    expanded = AGG.inspect(
        serialize(
            Method.EXPANDED,
            base_size=0,
            target_size=p.target_size,
            base_sha256=EMPTY_SHA256,
            target_sha256=p.target_sha256,
            sections=[layout, (Section.CONTENT, Codec.STORED, 0, b"")],
        )
    )
    assert expanded.method == "EXPANDED"
    # A content frame of other content: its declared size does not match the layout.
    other = compress_content(b"x" * 1000, level=1)
    bad = _rewrite(
        AGG.recompress(data), sections=[layout, (Section.CONTENT, Codec.STORED, len(other), other)]
    )
    with pytest.raises(CorruptPatchError, match="declares"):
        AGG.apply(b"", bad)
    with pytest.raises(CorruptPatchError, match="declares"):
        d = ExpandedDecoder()
        d.feed(bad)
    # A window above the cap, hand-written in the frame header (window descriptor byte).
    frame = bytearray(parse(AGG.recompress(data)).sections[Section.CONTENT].payload)
    fhd = frame[4]
    if not fhd & 0x20:  # has a window descriptor
        frame[5] = (31 - 10) << 3  # 2^31
        big = _rewrite(
            AGG.recompress(data),
            sections=[layout, (Section.CONTENT, Codec.STORED, len(frame), bytes(frame))],
        )
        with pytest.raises(OutputTooLargeError, match="window"):
            AGG.apply(b"", big)
        with pytest.raises(OutputTooLargeError, match="window"):
            ExpandedDecoder().feed(big)


def test_sections_in_the_wrong_order_or_codec_are_refused():
    p = parse(AGG.recompress(wheel()))
    lay, con = p.sections[Section.LAYOUT], p.sections[Section.CONTENT]
    lay_t = (Section.LAYOUT, lay.codec, lay.raw_len, bytes(lay.payload))
    con_t = (Section.CONTENT, con.codec, con.raw_len, bytes(con.payload))
    swapped = _rewrite(AGG.recompress(wheel()), sections=[con_t, lay_t])
    for bad in (swapped,):
        with pytest.raises(CorruptPatchError):
            AGG.apply(b"", bad)
        with pytest.raises(CorruptPatchError):
            ExpandedDecoder().feed(bad)
    zstd_content = _rewrite(
        AGG.recompress(wheel()),
        sections=[lay_t, (Section.CONTENT, Codec.ZSTD, con.raw_len, bytes(con.payload))],
    )
    with pytest.raises(CorruptPatchError):
        AGG.apply(b"", zstd_content)
    with pytest.raises(CorruptPatchError):
        ExpandedDecoder().feed(zstd_content)


def test_every_corrupted_byte_is_refused_with_a_registry_core_error():
    data = wheel(7)
    patch = AGG.recompress(data)
    for i in range(0, len(patch), max(1, len(patch) // 200)):
        bad = bytearray(patch)
        bad[i] ^= 0x41
        with pytest.raises(RegistryCoreError):
            AGG.apply(b"", bytes(bad))
        d = ExpandedDecoder()
        with pytest.raises(RegistryCoreError):
            d.feed(bytes(bad))
            d.finish()


def test_corruption_behind_a_valid_trailer_is_refused():
    """A mutated section with a recomputed trailer reaches the decoders: still refused."""
    data = wheel(8)
    p = parse(AGG.recompress(data))
    frame = bytearray(p.sections[Section.CONTENT].payload)
    lay = p.sections[Section.LAYOUT]
    lay_t = (Section.LAYOUT, lay.codec, lay.raw_len, bytes(lay.payload))
    for i in range(20, len(frame), max(1, len(frame) // 50)):
        bad_frame = bytearray(frame)
        bad_frame[i] ^= 0xFF
        bad = _rewrite(
            AGG.recompress(data),
            sections=[lay_t, (Section.CONTENT, Codec.STORED, len(bad_frame), bytes(bad_frame))],
        )
        with pytest.raises(RegistryCoreError):
            AGG.apply(b"", bad)
        d = ExpandedDecoder()
        with pytest.raises(RegistryCoreError):
            d.feed(bad)
            d.finish()


def test_old_patches_still_read():
    old, new = wheel(1), wheel(2)
    for patch in (AGG.diff(old, new), AGG.full_patch(new, base=old)):
        assert AGG.apply(old, patch) == new


@st.composite
def artifacts(draw):
    kind = draw(st.sampled_from(["zip", "gzip", "plain"]))
    rng = random.Random(draw(st.integers(0, 1 << 30)))
    n = draw(st.integers(0, 6))
    blobs = [_text(rng, draw(st.integers(0, 300))) for _ in range(n)]
    if kind == "plain":
        return b"".join(blobs) + rng.randbytes(draw(st.integers(0, 64)))
    if kind == "gzip":
        return gzip.compress(b"".join(blobs), compresslevel=draw(st.integers(1, 9)), mtime=0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, blob in enumerate(blobs):
            zf.writestr(
                f"f{i}",
                blob,
                compress_type=zipfile.ZIP_DEFLATED,
                compresslevel=draw(st.integers(0, 9)),
            )
    return buf.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(artifacts(), st.data())
def test_property_recompress_apply_and_streaming_roundtrip(data, draw):
    agg = DeltaAggregator(level=3, full_margin=0.0)
    patch = agg.recompress(data)
    if patch is None:
        return
    assert len(patch) < len(data) or not data
    assert agg.apply(b"", patch) == data
    d = ExpandedDecoder()
    pos = 0
    while pos < len(patch):
        n = draw.draw(st.integers(1, max(1, len(patch) // 3)))
        d.feed(patch[pos : pos + n])
        pos += n
    assert d.finish() == data


def test_an_expanded_patch_composes_with_the_next_release_as_a_chain():
    first, second = wheel(1), wheel(2)
    composed = AGG.compose([AGG.recompress(first), AGG.diff(first, second)])
    assert AGG.inspect(composed).method == "CHAIN"
    assert AGG.apply(b"", composed) == second


def _native_wheel() -> bytes:
    import zstandard

    lib = Path(zstandard.backend_c.__file__).read_bytes()  # a real ELF / Mach-O / PE image
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pkg/_native.so", lib, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("pkg/__init__.py", b"from ._native import *\n", compress_type=8)
    return buf.getvalue()


def _encode(data: bytes, *, exe: bool) -> bytes | None:
    """The EXPANDED patch whatever its size against the plain file (recompress would serve
    the plain file for a level-3 patch of a library that zstd -3 does not shrink)."""
    from registry_core.delta import _expanded

    return _expanded.encode(data, level=3, max_expanded_size=64 << 20, exe=exe)


def test_native_code_with_and_without_the_exec_transform():
    data = _native_wheel()
    on = _encode(data, exe=True)
    off = _encode(data, exe=False)
    assert on is not None and off is not None
    assert "EXEC" not in AGG.inspect(off).sections
    if "EXEC" in AGG.inspect(on).sections:  # kept only when it made the patch smaller
        assert len(on) < len(off)
    for patch in (on, off):
        assert AGG.apply(b"", patch) == data
        d = ExpandedDecoder()
        for pos in range(0, len(patch), 7777):
            d.feed(patch[pos : pos + 7777])
        assert d.finish() == data


def test_a_hostile_exec_record_is_refused():
    data = _native_wheel()
    patch = _encode(data, exe=True)
    p = parse(patch)
    if Section.EXEC not in p.sections:
        pytest.skip("the transform did not pay on this platform's library")
    sections = [(k, s.codec, s.raw_len, bytes(s.payload)) for k, s in p.sections.items()]
    for body in (
        b"",
        b"\x09",
        b"\x01\x00\x01\x01\x20\x00\xff\xff\xff\xff\x0f\x00\x00",
        b"\x01\x00\x00",
    ):
        bad = [
            (k, Codec.STORED, len(body), body) if k == Section.EXEC else t
            for t in sections
            for k in [t[0]]
        ]
        forged = _rewrite(patch, sections=bad)
        with pytest.raises(RegistryCoreError):
            AGG.apply(b"", forged)
        with pytest.raises(RegistryCoreError):
            d = ExpandedDecoder()
            d.feed(forged)
            d.finish()
