"""Layout: expand / expand_known / rebuild round trips on archives made by real producers."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
import zlib

import pytest

from registry_core.delta._deflate import DeflateDetector
from registry_core.delta._layout import (
    Deflate,
    DeflateParams,
    Layout,
    Raw,
    compressed_bytes_of_deflate_nodes,
    expand,
    expand_known,
    rebuild,
)
from registry_core.errors import (
    BaseMismatchError,
    CorruptPatchError,
    InvalidArgumentError,
    InvalidTypeError,
    OutputTooLargeError,
)


def _source(i: int, lines: int = 200) -> bytes:
    return "".join(f"def f{i}_{j}(x):\n    return x * {j} + {i}\n" for j in range(lines)).encode()


def make_zip(level: int | None = 6, *, nested_gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for i in range(8):
            zf.writestr(f"pkg/mod{i}.py", _source(i, 50 + 30 * i))
        zf.writestr("pkg/empty.py", b"")
        zf.writestr("pkg/blob.bin", os.urandom(3000), compress_type=zipfile.ZIP_STORED)
        if nested_gz:
            zf.writestr("pkg/data.json.gz", gzip.compress(b'{"k": [1, 2, 3]}\n' * 2000, 9))
    return buf.getvalue()


def make_targz(level: int = 9) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=level) as tf:
        for i in range(4):
            data = _source(i)
            info = tarfile.TarInfo(f"pkg-1.0/pkg/mod{i}.py")
            info.size = len(data)
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
        data = gzip.compress(b'{"v": 1}\n' * 3000, 6, mtime=0)
        info = tarfile.TarInfo("pkg-1.0/data.json.gz")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def roundtrip(data: bytes) -> tuple[Layout, bytes]:
    layout, expanded = expand(data)
    assert layout.original_size() == len(data)
    assert layout.expanded_size() == len(expanded)
    assert rebuild(layout, expanded) == data
    assert expand_known(layout, data) == expanded
    assert Layout.from_bytes(layout.to_bytes()) == layout
    return layout, expanded


@pytest.mark.parametrize("level", [1, 6, 9, None])
def test_zipfile_members_all_reproduced(level):
    data = make_zip(level)
    det = DeflateDetector()
    layout, expanded = expand(data, detector=det)
    assert layout.kind == "zip"
    assert rebuild(layout, expanded) == data
    # 8 modules + empty member + the .json.gz member + its nested gzip body
    assert det.stats.streams == 11
    assert det.stats.reproduced == 11
    assert len(layout.deflate_nodes()) == 11
    assert _source(7, 260) in expanded  # content is visible inflated
    assert b'{"k": [1, 2, 3]}\n' * 2000 in expanded  # nested .json.gz inflated too


def test_targz_with_nested_json_gz():
    data = make_targz()
    layout, expanded = roundtrip(data)
    assert layout.kind == "gzip"
    entries = layout.deflate_entries()
    assert [e.depth for e in entries] == [0, 1]
    assert entries[1].parent == 0
    assert b'{"v": 1}\n' * 3000 in expanded
    streams = compressed_bytes_of_deflate_nodes(layout, data)
    assert [len(s) for s in streams] == [e.node.clen for e in entries]
    assert bytes(streams[0]) == data[entries[0].offset : entries[0].offset + entries[0].node.clen]


def test_raw_input_is_one_raw_node():
    data = os.urandom(5000)
    layout, expanded = roundtrip(data)
    assert layout == Layout("raw", (Raw(5000),))
    assert expanded == data


def test_empty_input():
    layout, expanded = roundtrip(b"")
    assert layout.nodes == () and expanded == b""


def test_expand_is_deterministic():
    data = make_zip(9)
    assert expand(data) == expand(data)


def test_max_depth_zero_keeps_nested_gzip_compressed():
    data = make_zip(6)
    layout, expanded = expand(data, max_depth=0)
    assert all(e.depth == 0 for e in layout.deflate_entries())
    assert b'{"k": [1, 2, 3]}\n' * 2000 not in expanded
    assert rebuild(layout, expanded) == data


def test_copy_from_takes_streams_from_old_artifact():
    old = make_zip(6)
    old_layout, _ = expand(old)
    new_layout, new_expanded = expand(old)
    n = len(new_layout.deflate_entries())
    copying = new_layout.with_copy_from({i: i for i in range(n)})
    assert copying.without_copy_from() == new_layout
    assert Layout.from_bytes(copying.to_bytes()) == copying
    assert rebuild(copying, new_expanded, old_original=old, old_layout=old_layout) == old
    with pytest.raises(InvalidArgumentError):
        rebuild(copying, new_expanded)
    bad = new_layout.with_copy_from({0: n + 5})
    with pytest.raises(CorruptPatchError):
        rebuild(bad, new_expanded, old_original=old, old_layout=old_layout)


def test_rebuild_rejects_inconsistent_sizes():
    data = make_zip(6)
    layout, expanded = expand(data)
    with pytest.raises(CorruptPatchError):
        rebuild(layout, expanded[:-1])
    with pytest.raises(OutputTooLargeError):
        rebuild(layout, expanded, max_output_size=len(data) - 1)
    # wrong parameters: the recompressed stream does not have the recorded length
    first = layout.deflate_entries()[0]
    wrong = DeflateParams(1, 15, 8, 0)
    nodes = tuple(
        Deflate(n.clen, wrong, n.children) if n is first.node else n for n in layout.nodes
    )
    with pytest.raises(CorruptPatchError):
        rebuild(Layout(layout.kind, nodes), expanded)


def test_expand_known_rejects_other_data():
    data = make_zip(6)
    layout, _ = expand(data)
    with pytest.raises(BaseMismatchError):
        expand_known(layout, data + b"x")
    other = bytearray(data)
    off = layout.deflate_entries()[0].offset
    other[off : off + 8] = b"\xff" * 8
    with pytest.raises(CorruptPatchError):
        expand_known(layout, bytes(other))


def _shape(nodes):
    return tuple(
        ("D", n.clen, _shape(n.children)) if isinstance(n, Deflate) else ("R", n.length)
        for n in nodes
    )


def test_shared_detector_gives_the_same_shape():
    """A detector warmed on other producers reorders guesses but never changes what is found."""
    shared = DeflateDetector()
    for level in (1, 9, 3):
        expand(make_zip(level), detector=shared)
        expand(make_targz(level), detector=shared)
    for data in (make_zip(6), make_zip(2), make_targz(9)):
        fresh_layout, fresh_exp = expand(data)
        shared_layout, shared_exp = expand(data, detector=shared)
        assert _shape(fresh_layout.nodes) == _shape(shared_layout.nodes)
        assert fresh_exp == shared_exp
        assert rebuild(shared_layout, shared_exp) == data


def test_detector_shared_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    shared = DeflateDetector()
    blobs = [make_zip(level) for level in (1, 6, 9)] * 3
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda d: expand(d, detector=shared), blobs))
    for data, (layout, expanded) in zip(blobs, results, strict=False):
        assert rebuild(layout, expanded) == data
    assert shared.stats.streams == sum(len(lay.deflate_entries()) for lay, _ in results)


def handmade_zip(entries) -> bytes:
    """A zip written field by field: entries are (name, made_by, compressed, content)."""
    import struct

    out, central = bytearray(), bytearray()
    for name, made_by, comp, content in entries:
        crc = zlib.crc32(content)
        fields = (20, 0, 8, 0, 0, crc, len(comp), len(content), len(name), 0)
        central += (
            struct.pack("<4sH", b"PK\x01\x02", made_by)
            + struct.pack("<HHHHHIIIHHHHHII", *fields, 0, 0, 0, 0, len(out))
            + name
        )
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", *fields) + name + comp
    n = len(entries)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    return bytes(out + central + end)


def test_many_foreign_streams_get_a_short_search():
    """Members no zlib setting reproduces (two stored blocks split by hand), each under its own
    producer key: once the artifact has shown mostly failures, each costs two guesses."""
    entries = []
    for i in range(40):
        content = os.urandom(600)
        comp = b""
        for final, part in ((0, content[:300]), (1, content[300:])):
            comp += bytes([final]) + len(part).to_bytes(2, "little")
            comp += (0xFFFF ^ len(part)).to_bytes(2, "little") + part
        assert zlib.decompress(comp, -15) == content
        entries.append((f"m{i}".encode(), 0x0300 + i, comp, content))
    data = handmade_zip(entries)
    assert [len(zipfile.ZipFile(io.BytesIO(data)).read(f"m{i}")) for i in range(40)] == [600] * 40
    det = DeflateDetector()
    layout, expanded = expand(data, detector=det)
    assert rebuild(layout, expanded) == data
    assert det.stats.streams == 40 and det.stats.reproduced == 0
    full = len(det.candidates(None, 600, comp[0]))
    assert det.stats.attempts <= 16 * full + 24 * 2 < 40 * full


def test_argument_errors():
    with pytest.raises(InvalidArgumentError):
        expand(b"x", max_depth=-1)
    with pytest.raises(InvalidArgumentError):
        expand(b"x", max_expanded_size=-1)
    with pytest.raises(InvalidArgumentError):
        Layout("tar", ()).to_bytes()
    with pytest.raises(InvalidTypeError):
        expand("not bytes")
    with pytest.raises(InvalidTypeError):
        rebuild(b"not a layout", b"")
