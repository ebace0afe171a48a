"""Peak memory of diff and apply, measured as the max RSS growth of a fresh subprocess, held to
the bounds documented in docs/delta-format.md (encode ~10 x base + 3 x target for the index and
streams; apply ~ the output plus its decoded streams)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SIZE = 24 << 20

SCRIPT = textwrap.dedent(
    """
    import json, random, resource, sys
    from pathlib import Path
    from registry_core import DeltaAggregator
    mode, size, tmp = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    agg = DeltaAggregator(archive_aware=False)
    agg.apply(b"x" * 100, agg.diff(b"x" * 100, b"x" * 99 + b"y"))  # warm imports
    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if mode == "diff":
        rnd = random.Random(1)
        old = rnd.randbytes(size)
        new = bytearray(old)
        for _ in range(200):
            i = rnd.randrange(len(new))
            new[i:i] = rnd.randbytes(50)
        new = bytes(new)
        base = rss()
        patch = agg.diff(old, new)
        grown = rss() - base
        (tmp / "old").write_bytes(old)
        (tmp / "patch").write_bytes(patch)
        (tmp / "new").write_bytes(new)
    else:
        old, patch = (tmp / "old").read_bytes(), (tmp / "patch").read_bytes()
        base = rss()
        out = agg.apply(old, patch)
        grown = rss() - base
        assert out == (tmp / "new").read_bytes()
    print(json.dumps({"grown": grown, "patch": len(patch)}))
    """
)


def measure(mode: str, tmp) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(SIZE), str(tmp)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mem")
    return measure("diff", tmp), measure("apply", tmp)


def test_encode_peak_memory_is_linear_and_bounded(measured):
    diff, _ = measured
    # index: 4 B per base position + head table (<= 8 B per position); streams: 2 x target
    assert diff["grown"] <= 13 * SIZE, diff
    assert diff["patch"] < SIZE // 100, diff


def test_apply_peak_memory_is_bounded(measured):
    _, apply = measured
    # output buffer + its bytes copy (2 x) + decoded DIFF and EXTRA (1 x together); measured 3.0 x
    assert apply["grown"] <= 4 * SIZE, apply
