"""One Compressor shared by many threads (zstd contexts are not thread-safe by themselves)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from registry_core import Compressor
from registry_core.compress import Dictionary


@pytest.mark.parametrize("coding", ["zstd", "br", "gzip", "dcz", "zstd+dict"])
def test_shared_compressor_across_threads(coding, records, trained):
    if coding == "dcz":
        c = Compressor("dcz", dictionary=Dictionary(b"\n".join(records[:5])))
    elif coding == "zstd+dict":
        c = Compressor("zstd", 19, dictionary=trained)
    else:
        c = Compressor(coding, 5 if coding == "br" else None)
    docs = [records[i % len(records)] * (1 + i % 7) for i in range(400)]
    expected = {i: d for i, d in enumerate(docs)}
    barrier = threading.Barrier(8)

    def work(worker: int) -> list[tuple[int, bytes]]:
        barrier.wait()
        out = []
        for i in range(worker, len(docs), 8):
            out.append((i, c.decompress(c.compress(docs[i]))))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for chunk in pool.map(work, range(8)) for r in chunk]
    assert len(results) == len(docs)
    for i, data in results:
        assert data == expected[i]


def test_one_shot_output_is_identical_from_every_thread(records):
    c = Compressor("zstd", 19)
    doc = b"\n".join(records[:10])
    ref = c.compress(doc)
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda _: c.compress(doc), range(60)))
    assert all(o == ref for o in outs)
