"""registry_core.chunking.Chunker: streaming gives exactly the one-shot boundaries."""

from __future__ import annotations

import itertools
import random
import sysconfig
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.chunking import Chunker, chunks
from registry_core.errors import InvalidArgumentError, InvalidTypeError

pytestmark = pytest.mark.native

SIZES = {"min_size": 256, "avg_size": 1024, "max_size": 4096}


def stream(chunker: Chunker, pieces: list[bytes]) -> list[int]:
    out: list[int] = []
    for piece in pieces:
        got = chunker.feed(piece)
        assert got == sorted(got) and (not out or not got or got[0] > out[-1])
        out += got
    return out + chunker.finish()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    seed=st.integers(0, 2**32),
    n=st.integers(0, 40_000),
    cuts=st.lists(st.integers(0, 40_000), max_size=40),
    low_entropy=st.booleans(),
)
def test_any_split_equals_one_shot(seed: int, n: int, cuts: list[int], low_entropy: bool) -> None:
    rng = random.Random(seed)
    data = bytes(rng.choice(b"ab") for _ in range(n)) if low_entropy else rng.randbytes(n)
    pieces = split(data, cuts)
    assert stream(Chunker(**SIZES), pieces) == chunks(data, **SIZES)


def test_byte_by_byte_equals_one_shot() -> None:
    data = random.Random(1).randbytes(30_000)
    pieces = [data[i : i + 1] for i in range(len(data))]
    assert stream(Chunker(**SIZES), pieces) == chunks(data, **SIZES)


def test_real_file_in_uneven_pieces_default_sizes() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    data = b"".join(p.read_bytes() for p in sorted(stdlib.glob("*.py"))[:120])
    assert len(data) > 500_000
    rng = random.Random(2)
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.choice([1, 7, 100, 4096, 65536, 200_000])
        pieces.append(memoryview(data)[pos : pos + step])
        pos += step
    assert stream(Chunker(), pieces) == chunks(data)


def test_feed_reports_cuts_before_finish_and_bounds_the_buffer() -> None:
    data = random.Random(4).randbytes(200_000)
    chunker = Chunker(**SIZES)
    early: list[int] = []
    for i in range(0, len(data), 1000):
        early += chunker.feed(data[i : i + 1000])
        assert chunker.position - (early[-1] if early else 0) <= SIZES["max_size"] + 1000
    assert len(early) >= len(chunks(data, **SIZES)) - 2
    assert early + chunker.finish() == chunks(data, **SIZES)


def test_finish_resets_for_a_new_stream() -> None:
    a, b = random.Random(5).randbytes(20_000), random.Random(6).randbytes(9_000)
    chunker = Chunker(**SIZES)
    assert stream(chunker, [a]) == chunks(a, **SIZES)
    assert chunker.position == 0
    assert stream(chunker, [b[:5000], b[5000:]]) == chunks(b, **SIZES)
    assert chunker.finish() == []


def test_accepts_buffers_of_every_kind() -> None:
    data = random.Random(8).randbytes(50_000)
    pieces = [bytearray(data[:10_000]), memoryview(data)[10_000:30_000], data[30_000:]]
    assert stream(Chunker(**SIZES), pieces) == chunks(data, **SIZES)


def test_shared_across_threads() -> None:
    # Every piece holds the same bytes, so the stream is the same whatever order the threads
    # interleave in; a chunker without a lock corrupts its buffer under this load.
    piece = random.Random(9).randbytes(3000)
    threads_n, per_thread = 4, 60
    chunker = Chunker(**SIZES)
    found: list[int] = []
    found_lock = threading.Lock()

    def work() -> None:
        for _ in range(per_thread):
            got = chunker.feed(piece)
            with found_lock:
                found.extend(got)

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found += chunker.finish()
    assert sorted(found) == chunks(piece * (threads_n * per_thread), **SIZES)


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        Chunker(min_size=8192, avg_size=4096, max_size=16384)
    with pytest.raises(InvalidTypeError):
        Chunker(avg_size="8192")  # type: ignore[arg-type]
    chunker = Chunker()
    for bad in ("text", 5, [1, 2], None):
        with pytest.raises(InvalidTypeError):
            chunker.feed(bad)
    assert chunker.finish() == []


def test_large_piece_after_a_pending_tail_is_not_copied_whole() -> None:
    import tracemalloc

    data = random.Random(10).randbytes(2_000_000)
    chunker = Chunker(**SIZES)
    got = chunker.feed(data[:100])  # leaves a 100-byte tail pending
    tracemalloc.start()
    try:
        got += chunker.feed(memoryview(data)[100:])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Copying the 2 MB piece into the buffer would show up here; offsets and a max_size
    # join buffer are all that should be allocated.
    assert peak < 400_000, peak
    assert chunker.position - (got[-1] if got else 0) < SIZES["max_size"]
    assert got + chunker.finish() == chunks(data, **SIZES)
