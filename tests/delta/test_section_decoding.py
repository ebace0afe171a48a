"""Section decoding grows memory only with real output; a FULL target is one buffer."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import tracemalloc

import pytest
import zstandard

from registry_core import DeltaAggregator
from registry_core.delta._format import Codec, Method, Section, parse, serialize
from registry_core.errors import CorruptPatchError

MiB = 1 << 20


def one_section_patch(kind: Section, method: Method, raw_len: int, payload: bytes) -> bytes:
    return serialize(
        method,
        base_size=0,
        target_size=raw_len,
        base_sha256=b"\0" * 32,
        target_sha256=b"\0" * 32,
        sections=[(kind, Codec.ZSTD, raw_len, payload)],
    )


@pytest.mark.parametrize("actual, declared", [(1000, 5000), (5000, 1000), (3 * MiB, 3 * MiB - 1)])
def test_decoded_length_must_equal_the_declared_one(actual, declared):
    frame = zstandard.ZstdCompressor().compress(b"a" * actual)
    p = parse(one_section_patch(Section.TARGET, Method.FULL, declared, frame))
    with pytest.raises(CorruptPatchError, match="decompressed to"):
        p.section(Section.TARGET, limit=1 << 30)
    with pytest.raises(CorruptPatchError, match="decompressed to"):
        p.section(Section.TARGET, limit=1 << 30, one_buffer=True)


def test_a_section_declaring_a_gigabyte_allocates_nothing_of_it():
    frame = zstandard.ZstdCompressor().compress(b"tiny")
    p = parse(one_section_patch(Section.TARGET, Method.FULL, 1 << 30, frame))
    for one_buffer in (False, True):
        tracemalloc.start()
        try:
            with pytest.raises(CorruptPatchError):
                p.section(Section.TARGET, limit=1 << 31, one_buffer=one_buffer)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * MiB, peak  # measured: ~1 MiB (the first 1 MiB read)


SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from registry_core import DeltaAggregator
    agg = DeltaAggregator()
    patch = Path(sys.argv[1]).read_bytes()
    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    before = rss()
    out = agg.apply(b"base", patch)
    print(json.dumps({"grown": rss() - before, "size": len(out)}))
    """
)


def test_full_patch_apply_holds_the_target_once(tmp_path):
    rnd = random.Random(3)
    target = bytes(rnd.choice(b"abcdefgh") for _ in range(MiB)) * 32
    patch = DeltaAggregator().full_patch(target, base=b"base")
    assert DeltaAggregator.inspect(patch).sections["TARGET"][1] < len(target) // 2  # zstd
    (tmp_path / "p").write_bytes(patch)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "p")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    got = json.loads(out.stdout)
    assert got["size"] == len(target)
    # one target-sized buffer (plus noise); joining decoded pieces would take two
    assert got["grown"] <= 1.4 * len(target), got
