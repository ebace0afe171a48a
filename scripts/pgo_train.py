"""Training workload for profile-guided optimisation of the C core.

Exercises the hot loops the way registries do: chunking real-sized buffers and delta encoding /
applying similar inputs (text-like and binary-like). Deterministic, offline, about a second.
"""

from __future__ import annotations

import random

from registry_core.chunking import Chunker, chunks
from registry_core.delta import _binary


def main() -> None:
    rnd = random.Random(2026)
    words = [
        bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rnd.randrange(2, 12)))
        for _ in range(2000)
    ]
    text = b" ".join(rnd.choice(words) for _ in range(1_500_000))
    binary = rnd.randbytes(4 << 20)
    for data in (text, binary):
        chunks(data)
        c = Chunker()
        for i in range(0, len(data), 65536):
            c.feed(data[i : i + 65536])
        c.finish()
    for old in (text[: 3 << 20], binary):
        new = bytearray(old)
        for _ in range(300):
            i = rnd.randrange(len(new))
            new[i : i + rnd.randrange(0, 40)] = rnd.randbytes(rnd.randrange(0, 40))
        streams = _binary.encode(old, bytes(new))
        assert _binary.apply(old, streams, len(new)) == bytes(new)


if __name__ == "__main__":
    main()
