"""Hostile patches and inputs for delta/ (issue 10, R1-R6 and the error-type rule).

Each test builds its hostile input here, expects a registry_core error class, bounds the peak
memory of a fresh subprocess (ru_maxrss growth, allowance measured below) and checks that
nothing was written. No wall-clock assertions: timeouts are only upper bounds for hangs.

Measured on the fixed tree (ru_maxrss growth of the subprocess, 2-core VM): R1 0.0-0.2 MiB,
R2 0.0-0.1 MiB, R3 0.0-0.1 MiB, R4 under 1 MiB. Before the fixes: R1 MemoryError (128 GiB
asked) / +2.5 GiB, R2 MemoryError / +1.2 GB, R3 +120 MB, R4 minutes of CPU.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core import DeltaAggregator
from registry_core.delta._deflate import DeflateParams
from registry_core.delta._format import Codec, Method, Section, encode_section, serialize
from registry_core.delta._layout import Deflate, Layout, Raw
from registry_core.errors import (
    CorruptPatchError,
    OutputTooLargeError,
    RegistryCoreError,
)

MiB = 1 << 20
GiB = 1 << 30
#: RSS growth allowed while a hostile patch is refused: the measured figures above are under
#: 1 MiB; 16 MiB leaves room for allocator noise and still catches any buffer of the declared
#: sizes (64 MiB and up).
RSS_ALLOWANCE = 16 * MiB
BASE = b"the base artifact" * 8

# Runs in a fresh interpreter: reads a patch (and base) from files, applies it, reports the
# exception class and the ru_maxrss growth across the apply alone.
APPLY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from registry_core import DeltaAggregator
    agg = DeltaAggregator(**json.loads(sys.argv[3]))
    agg.apply(b"x" * 100, agg.diff(b"x" * 100, b"x" * 99 + b"y"))  # warm imports
    old, patch = Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]).read_bytes()
    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    before = rss()
    try:
        agg.apply(old, patch)
        error = None
    except BaseException as exc:
        error = [type(exc).__module__, type(exc).__name__, str(exc)]
    print(json.dumps({"grown": rss() - before, "error": error}))
    """
)


def apply_in_subprocess(tmp_path: Path, base: bytes, patch: bytes, **options) -> dict:
    (tmp_path / "base").write_bytes(base)
    (tmp_path / "patch").write_bytes(patch)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            APPLY_SCRIPT,
            str(tmp_path / "base"),
            str(tmp_path / "patch"),
            json.dumps(options),
        ],
        capture_output=True,
        text=True,
        timeout=120,  # an upper bound for a hang, not a measurement
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def expect(result: dict, error: type[Exception]) -> None:
    assert result["error"] is not None, result
    module, name, _message = result["error"]
    assert module == "registry_core.errors", result
    assert issubclass(getattr(__import__(module, fromlist=[name]), name), error), result
    assert result["grown"] <= RSS_ALLOWANCE, result


def header(base: bytes, target_size: int) -> dict:
    import hashlib

    return {
        "base_size": len(base),
        "target_size": target_size,
        "base_sha256": hashlib.sha256(base).digest(),
        "target_sha256": b"\x00" * 32,
    }


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=19).compress(data)


def zeros_frame(size: int, pattern: bytes = b"\x00") -> bytes:
    """A zstd frame of ``size`` bytes repeating ``pattern``, built in 1 MiB pieces (never
    ``size`` bytes in memory)."""
    c = zstandard.ZstdCompressor(level=3).compressobj(size=size)
    piece = (pattern * (MiB // len(pattern) + 1))[:MiB]
    assert MiB % len(pattern) == 0 or size <= MiB
    out = []
    left = size
    while left:
        n = min(left, MiB)
        out.append(c.compress(piece[:n]))
        left -= n
    out.append(c.flush())
    return b"".join(out)


def archive_patch(base: bytes, target_size: int, expanded: int, *, extra: int = 0) -> bytes:
    """An ARCHIVE patch whose target layout is one stream of ``target_size`` compressed bytes
    with a raw child of ``expanded`` bytes, and empty or zero-filled streams."""
    old = Layout("raw", (Raw(len(base)),))
    new = Layout("zip", (Deflate(target_size, DeflateParams(6, 15, 8, 0), (Raw(expanded),)),))
    body = bytearray()
    old_bytes = old.to_bytes()
    body.append(len(old_bytes))
    body += old_bytes + new.to_bytes(relative_to=old)
    sections = [
        encode_section(Section.LAYOUTS, bytes(body), level=19),
        (Section.CTRL, Codec.STORED, 0, b""),
        (Section.DIFF, Codec.STORED, 0, b""),
        (Section.EXTRA, Codec.ZSTD, extra, zeros_frame(extra))
        if extra
        else (Section.EXTRA, Codec.STORED, 0, b""),
    ]
    return serialize(Method.ARCHIVE, sections=sections, **header(base, target_size))


# -- R1 ----------------------------------------------------------------------------------------


def test_r1_archive_declaring_2gib_target_with_64x_child(tmp_path):
    """~160 bytes declaring a 2 GiB target whose expanded form is 128 GiB: refused up front
    (before: a bare MemoryError from a 128 GiB bytearray)."""
    patch = archive_patch(BASE, 2 * GiB, 64 * 2 * GiB)
    assert len(patch) < 400
    expect(apply_in_subprocess(tmp_path, BASE, patch), OutputTooLargeError)


def test_r1_archive_declaring_40mib_target_with_64x_child(tmp_path):
    """The 40 MiB variant (before: 2.6 GB allocated, then CorruptPatchError)."""
    patch = archive_patch(BASE, 40 * MiB, 64 * 40 * MiB)
    expect(apply_in_subprocess(tmp_path, BASE, patch), OutputTooLargeError)


def test_r1_expanded_form_within_limit_but_streams_cannot_produce_it(tmp_path):
    """An expanded size the limit allows (64 MiB for a 1 MiB target) with empty streams: the
    streams must add up to it before any output buffer exists (before: 64 MiB allocated)."""
    patch = archive_patch(BASE, MiB, 64 * MiB)
    expect(apply_in_subprocess(tmp_path, BASE, patch), CorruptPatchError)


def test_r1_cli_apply_prints_one_line_and_exits_2(tmp_path):
    (tmp_path / "base").write_bytes(BASE)
    (tmp_path / "p.rcd").write_bytes(archive_patch(BASE, 2 * GiB, 64 * 2 * GiB))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry_core.cli",
            "apply",
            str(tmp_path / "base"),
            str(tmp_path / "p.rcd"),
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "max_expanded_size" in out.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "p.rcd"]


# -- R2 ----------------------------------------------------------------------------------------


def chain_patch(base: bytes, body_frame: bytes, raw_len: int) -> bytes:
    sections = [(Section.PATCHES, Codec.ZSTD, raw_len, body_frame)]
    return serialize(Method.CHAIN, sections=sections, **header(base, 100))


def test_r2_chain_declaring_a_terabyte_section(tmp_path):
    """130 bytes declaring a 1 TiB PATCHES section (before: MemoryError)."""
    patch = chain_patch(BASE, zstd(b"\x01" + b"\x00" * 200), 1 << 40)
    assert len(patch) < 200
    expect(apply_in_subprocess(tmp_path, BASE, patch), OutputTooLargeError)


def test_r2_chain_of_20_million_two_byte_members(tmp_path):
    """20 M two-byte members in a few KB (before: 1.2 GB and 9-15 s): the member count is
    refused from the section's first bytes, before it is decoded."""
    count = 20_000_000
    head = bytearray()
    n = count
    while n >= 0x80:
        head.append(n & 0x7F | 0x80)
        n >>= 7
    head.append(n)
    c = zstandard.ZstdCompressor(level=19).compressobj(size=len(head) + 2 * count)
    frame = c.compress(bytes(head))
    member = b"\x01\x00" * (MiB // 2)
    for _ in range(2 * count // len(member)):
        frame += c.compress(member)
    frame += c.compress(b"\x01\x00" * ((2 * count % len(member)) // 2)) + c.flush()
    patch = chain_patch(BASE, frame, len(head) + 2 * count)
    assert len(patch) < 16 << 10
    expect(apply_in_subprocess(tmp_path, BASE, patch), CorruptPatchError)


# -- R3 ----------------------------------------------------------------------------------------


def test_r3_binary_ctrl_declaring_30x_target(tmp_path):
    """A BINARY patch whose CTRL section is 30 x the target (before: decoded whole, +120 MB):
    each section is bounded by what the target can need before it is decompressed."""
    target = 4 * MiB
    ctrl_len = 30 * 4 * MiB  # records (1, 0, 0): real, non-zero bytes once decoded
    sections = [
        (Section.CTRL, Codec.ZSTD, ctrl_len, zeros_frame(ctrl_len, b"\x01\x00\x00\x00")),
        (Section.DIFF, Codec.STORED, 0, b""),
        (Section.EXTRA, Codec.ZSTD, target, zeros_frame(target)),
    ]
    patch = serialize(Method.BINARY, sections=sections, **header(BASE, target))
    assert len(patch) < 64 << 10
    expect(apply_in_subprocess(tmp_path, BASE, patch), OutputTooLargeError)


# -- R4 ----------------------------------------------------------------------------------------


def test_r4_layout_with_shared_references_is_refused_by_the_work_budget(tmp_path):
    """A base layout with one stream holding K=30000 streams and a target layout of R=30000
    references to it (a few hundred bytes): quadratic before (K x R recounts: minutes), now
    linear and refused once the tree it describes passes max_nodes."""
    k = r = 30_000
    params = DeflateParams(6, 15, 8, 0)
    leaf = Deflate(1, params, ())
    old = Layout("zip", (Deflate(k, params, (leaf,) * k),))
    old_bytes = old.to_bytes()
    refs = bytearray(b"RCLY\x01\x01")
    n = r
    while n >= 0x80:
        refs.append(n & 0x7F | 0x80)
        n >>= 7
    refs.append(n)
    expected = 0
    for _ in range(r):
        delta = 0 - expected
        z = (delta << 1) ^ (delta >> 63)
        refs.append(3)
        while z >= 0x80:
            refs.append(z & 0x7F | 0x80)
            z >>= 7
        refs.append(z)
        expected = 1 + k
    body = bytearray()
    n = len(old_bytes)
    while n >= 0x80:
        body.append(n & 0x7F | 0x80)
        n >>= 7
    body.append(n)
    body += old_bytes + refs
    base = b"\x00" * k
    sections = [
        encode_section(Section.LAYOUTS, bytes(body), level=19),
        (Section.CTRL, Codec.STORED, 0, b""),
        (Section.DIFF, Codec.STORED, 0, b""),
        (Section.EXTRA, Codec.STORED, 0, b""),
    ]
    patch = serialize(Method.ARCHIVE, sections=sections, **header(base, k * r))
    assert len(patch) < 2048
    result = apply_in_subprocess(tmp_path, base, patch, max_output_size=1 << 40)
    expect(result, CorruptPatchError)
    assert "max_nodes" in result["error"][2]


# -- R5 ----------------------------------------------------------------------------------------


def test_r5_diff_stays_within_what_apply_accepts():
    """An archive whose expansion (120 MiB) lies between the two old default limits (apply:
    64 x a ~1.25 MB target = 80 MB; diff: 200 x = 250 MB). Before, diff wrote an ARCHIVE patch
    that apply refused with OutputTooLargeError; now both sides use one limit (the big member
    stays compressed) and the patch applies. Targets above 1 MiB get no plain-delta candidate,
    so the archive patch is what diff returns."""
    rnd = __import__("random").Random(5)
    noise = rnd.randbytes(1_100_000)
    period = b"".join(b"line %d of a repetitive data file\n" % i for i in range(40))

    def artifact(tag: bytes) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("pkg/noise.bin", noise, compress_type=zipfile.ZIP_STORED)
            with zf.open("pkg/data.txt", "w", force_zip64=True) as f:
                f.write(b"version " + tag + b"\n")
                chunk = period * (MiB // len(period))
                for _ in range(120 * MiB // len(chunk)):
                    f.write(chunk)
        return buf.getvalue()

    old, new = artifact(b"1"), artifact(b"2")
    assert len(new) > 1 << 20 and 64 * len(new) < 120 * MiB < 200 * len(new), len(new)
    agg = DeltaAggregator(archive_aware=True)
    patch = agg.diff(old, new)
    assert agg.apply(old, patch) == new
    assert len(patch) < len(new) // 2


# -- R6 ----------------------------------------------------------------------------------------

TRUNCATE_DURING_DIFF = textwrap.dedent(
    """
    import os, sys
    from registry_core import DeltaAggregator
    from registry_core.cli import main
    old_path = sys.argv[1]
    real_diff = DeltaAggregator.diff
    def diff_then_truncate(self, old, new):
        # The base is truncated by "another process" while diff holds it: with a memory map
        # this raised SIGBUS on the next page read.
        os.truncate(old_path, 4096)
        return real_diff(self, old, new)
    DeltaAggregator.diff = diff_then_truncate
    sys.exit(main(["diff", old_path, sys.argv[2], "-o", sys.argv[3]]))
    """
)

TRUNCATE_DURING_READ = textwrap.dedent(
    """
    import os, sys
    from registry_core.delta import _files
    from registry_core.cli import main
    old_path = sys.argv[1]
    def truncate_once(path, done):
        if os.fspath(path) == old_path and done < os.path.getsize(old_path):
            os.truncate(old_path, 4096)
    _files._after_chunk = truncate_once
    sys.exit(main(["diff", old_path, sys.argv[2], "-o", sys.argv[3]]))
    """
)


@pytest.mark.parametrize(
    "script", [TRUNCATE_DURING_DIFF, TRUNCATE_DURING_READ], ids=["during-diff", "mid-read"]
)
def test_r6_base_truncated_while_diffing(tmp_path, script):
    rnd = __import__("random").Random(6)
    old = rnd.randbytes(20 * MiB)
    new = bytearray(old)
    new[5 * MiB : 5 * MiB + 10] = b"0123456789"
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "new").write_bytes(bytes(new))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "old"),
            str(tmp_path / "new"),
            str(tmp_path / "p.rcd"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr
    assert "changed while it was being read" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old"]


# -- every failure is a registry_core error ------------------------------------------------------


def _fix_trailer(patch: bytearray) -> bytes:
    import hashlib

    patch[-32:] = hashlib.sha256(patch[:-32]).digest()
    return bytes(patch)


_VALID = None


def _valid_patches() -> tuple[bytes, list[bytes]]:
    global _VALID
    if _VALID is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(4):
                zf.writestr(f"m{i}.py", b"def f():\n    return %d\n" % i * 50)
        old = buf.getvalue()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(4):
                zf.writestr(f"m{i}.py", b"def f():\n    return %d\n" % (i + (i == 2)) * 50)
        new = buf.getvalue()
        archive = DeltaAggregator(archive_aware=True, full_margin=0.0)
        plain = DeltaAggregator(archive_aware=False, full_margin=0.0)
        p1, p2 = archive.diff(old, new), plain.diff(old, new)
        chain = archive.compose([p2, archive.diff(new, old)])
        _VALID = (old, [p1, p2, chain, archive.full_patch(new, base=old)])
    return _VALID


@settings(max_examples=300)
@given(st.data())
def test_mutated_patches_raise_only_registry_core_errors(data):
    old, patches = _valid_patches()
    patch = bytearray(data.draw(st.sampled_from(patches)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(patch) - 33))
        patch[i] = data.draw(st.integers(0, 255))
    mutated = _fix_trailer(patch)
    agg = DeltaAggregator(max_output_size=64 * MiB)
    for op in (
        lambda: agg.apply(old, mutated),
        lambda: agg.inspect(mutated),
        lambda: agg.compose([mutated, mutated]),
        lambda: agg.unbundle(mutated),
    ):
        with contextlib.suppress(RegistryCoreError):
            op()  # anything else (MemoryError, ZstdError, zlib.error...) fails the test


def test_nothing_written_by_a_refused_apply_file(tmp_path):
    (tmp_path / "base").write_bytes(BASE)
    (tmp_path / "p.rcd").write_bytes(archive_patch(BASE, MiB, 64 * MiB))
    with pytest.raises(CorruptPatchError):
        DeltaAggregator().apply_file(tmp_path / "base", tmp_path / "p.rcd", tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == ["base", "p.rcd"]
