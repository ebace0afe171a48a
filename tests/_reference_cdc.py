"""Pure-Python reference of the chunker in csrc/cdc.c: a direct, slow transcription.

Written from the specification in docs/chunking.md, independently of the C code (it builds its
own gear table with SplitMix64 and its own masks), so agreement between the two is evidence
that both follow the spec. One byte per step; the C core's two-bytes-per-step loop must give
identical boundaries.
"""

from __future__ import annotations

M64 = (1 << 64) - 1
SEED = 0x7265676973747279  # ASCII "registry"


def gear_table() -> list[int]:
    """SplitMix64 outputs 1..256 from SEED."""
    state, table = SEED, []
    for _ in range(256):
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        table.append(z ^ (z >> 31))
    return table


GEAR = gear_table()


def spread_mask(bits: int) -> int:
    """``bits`` one-bits at positions 62 - floor(j * 63 / bits), j = 0 .. bits-1."""
    mask = 0
    for j in range(bits):
        mask |= 1 << (62 - (j * 63) // bits)
    return mask


def masks(avg_size: int) -> tuple[int, int]:
    """(mask_s, mask_l) for normalized chunking level 2."""
    bits = avg_size.bit_length() - 1
    return spread_mask(bits + 2), spread_mask(bits - 2)


def reference_chunks(data: bytes, min_size: int, avg_size: int, max_size: int) -> list[int]:
    """End offsets of the chunks of ``data``, exactly as the spec defines them."""
    mask_s, mask_l = masks(avg_size)
    out: list[int] = []
    pos, n = 0, len(data)
    while pos < n:
        limit = min(n - pos, max_size)
        cut = limit
        h = 0
        for i in range(min_size - 1, limit):
            h = ((h << 1) + GEAR[data[pos + i]]) & M64
            mask = mask_s if i + 1 < avg_size else mask_l
            if h & mask == 0:
                cut = i + 1
                break
        pos += cut
        out.append(pos)
    return out
