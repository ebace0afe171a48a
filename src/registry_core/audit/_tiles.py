"""C2SP tlog-tiles: tile and entry-bundle paths and encodings, and tree hashes read from tiles.

A tile at level ``L`` index ``N`` holds up to 256 consecutive hashes of tree level ``8 * L``
(raw 32-byte SHA-256 hashes; level 0: leaf hashes); a full tile is 8,192 bytes, the rightmost
ones of a tree are partial (``.p/<W>``, 1..255 hashes). Entry bundles hold the entries of one
level-0 tile, each as a big-endian uint16 length and the bytes. Paths spell ``N`` in 3-digit
groups, all but the last prefixed ``x``: 1234067 -> ``x001/x234/067``. Sans-IO: the reader
takes a ``fetch(path) -> bytes`` callable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable

from .._util import LRU

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileError",
    "TileHashReader",
    "decode_bundle",
    "encode_bundle",
    "entries_path",
    "expand_rows",
    "expand_tile",
    "parse_path",
    "rows_weight",
    "split_hashes",
    "tile_path",
    "tile_width",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY = 0xFFFF
_MAX_LEVEL = 63
_sha256 = hashlib.sha256

_INDEX_PART = re.compile(r"x\d{3}")
_LAST_PART = re.compile(r"\d{3}")


class TileError(ValueError):
    """A tile or bundle that is malformed or missing (the message says which)."""


def _encode_index(n: int) -> str:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"a tile index is a non-negative integer, not {n!r}")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def _suffix(width: int | None) -> str:
    if width is None or width == TILE_WIDTH:
        return ""
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width < TILE_WIDTH:
        raise ValueError(f"a partial tile is 1..255 wide, not {width!r}")
    return f".p/{width}"


def tile_path(level: int, n: int, width: int | None = None) -> str:
    """``tile/<L>/<N>[.p/<W>]`` (``width`` None or 256: the full tile)."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= _MAX_LEVEL:
        raise ValueError(f"a tile level is 0..63, not {level!r}")
    return f"tile/{level}/{_encode_index(n)}{_suffix(width)}"


def entries_path(n: int, width: int | None = None) -> str:
    """``tile/entries/<N>[.p/<W>]``."""
    return f"tile/entries/{_encode_index(n)}{_suffix(width)}"


def parse_path(path: str) -> tuple[int | None, int, int] | None:
    """``(level, index, width)`` of a tile path (level None: an entry bundle; width 256: full),
    or None for anything that is not exactly one in canonical form."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        return None
    kind = parts[1]
    level: int | None
    if kind == "entries":
        level = None
    elif kind.isdigit() and kind.isascii() and (kind == "0" or not kind.startswith("0")):
        level = int(kind)
        if level > _MAX_LEVEL:
            return None
    else:
        return None
    groups = parts[2:]
    width = TILE_WIDTH
    if len(groups) >= 2 and groups[-2].endswith(".p"):  # a partial tile: ".../067.p/12"
        w = groups[-1]
        if not (w.isdigit() and w.isascii()) or w.startswith("0") or not 1 <= int(w) < 256:
            return None
        width = int(w)
        groups = groups[:-2] + [groups[-2][:-2]]
    last = groups[-1]
    if not _LAST_PART.fullmatch(last) or not all(_INDEX_PART.fullmatch(g) for g in groups[:-1]):
        return None
    digits = "".join(g.lstrip("x") for g in groups)
    n = int(digits)
    if _encode_index(n) != "/".join(groups):
        return None  # leading zero groups ("x000/001") are not canonical
    return level, n, width


def tile_width(level: int, n: int, size: int) -> int:
    """How many hashes tile ``level``/``n`` has in a tree of ``size`` (0: not there)."""
    count = size >> (TILE_HEIGHT * level)  # hashes at this tile level
    start = n * TILE_WIDTH
    if count <= start:
        return 0
    return min(TILE_WIDTH, count - start)


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """Entries as a bundle: each a big-endian uint16 length and the bytes."""
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY:
            raise ValueError(f"an entry is at most {MAX_ENTRY} bytes, not {len(e)}")
        out += len(e).to_bytes(2, "big")
        out += e
    return bytes(out)


def decode_bundle(data: bytes, count: int | None = None) -> list[bytes]:
    """The entries of a bundle (exactly ``count`` when given); TileError when malformed."""
    view = memoryview(data)
    out: list[bytes] = []
    pos = 0
    while pos < len(view):
        if pos + 2 > len(view):
            raise TileError("entry bundle: truncated length")
        n = int.from_bytes(view[pos : pos + 2], "big")
        pos += 2
        if pos + n > len(view):
            raise TileError("entry bundle: truncated entry")
        out.append(bytes(view[pos : pos + n]))
        pos += n
        if len(out) > TILE_WIDTH:
            raise TileError("entry bundle: more than 256 entries")
    if count is not None and len(out) != count:
        raise TileError(f"entry bundle: {len(out)} entries, expected {count}")
    return out


def expand_rows(data: bytes) -> list[bytes]:
    """Rows 0..7 of the subtree a tile's raw bytes span, each row one ``bytes`` of its complete
    nodes (hash ``j`` of row ``r``: ``rows[r][32 * j : 32 * j + 32]``). One object per row,
    not per hash: cheap to cache and to weigh, nothing for the garbage collector to walk."""
    if len(data) % 32:
        raise TileError(f"tile: {len(data)} bytes is not a whole number of hashes")
    prefix = _sha256(b"\x01")  # node_hash(l, r) is SHA-256(0x01 || l || r): copy, not rehash
    row = bytes(data)
    rows = [row]
    for _ in range(TILE_HEIGHT - 1):
        out = []
        for i in range(0, len(row) - 63, 64):
            h = prefix.copy()
            h.update(row[i : i + 64])
            out.append(h.digest())
        row = b"".join(out)
        rows.append(row)
    return rows


def expand_tile(hashes: list[bytes]) -> list[list[bytes]]:
    """Rows 0..7 of the subtree a tile spans (row ``r``: the complete level-``r`` nodes)."""
    return [
        [row[i : i + 32] for i in range(0, len(row), 32)] for row in expand_rows(b"".join(hashes))
    ]


def rows_weight(rows: list[bytes]) -> int:
    """The memory an expanded tile holds (its bytes and the objects), for byte-bounded LRUs."""
    return sum(len(r) for r in rows) + 64 * (len(rows) + 1)


def split_hashes(data: bytes, width: int) -> list[bytes]:
    """A tile's raw bytes as ``width`` hashes; TileError on a wrong length."""
    if len(data) != 32 * width:
        raise TileError(f"tile: {len(data)} bytes, expected {32 * width}")
    return [bytes(data[i : i + 32]) for i in range(0, len(data), 32)]


class TileHashReader:
    """``hash_at(level, index)`` over the tiles of a tree of ``size``, read through
    ``fetch(path) -> bytes`` (expanded tiles kept in an LRU of at most ``cache_bytes``)."""

    def __init__(
        self, fetch: Callable[[str], bytes], size: int, *, cache_bytes: int = 8 << 20
    ) -> None:
        self.fetch = fetch
        self.size = size
        self._cache: LRU[tuple[int, int, int], list[bytes]] = LRU(
            max_bytes=cache_bytes, weigh=rows_weight
        )

    def rows(self, tlevel: int, n: int) -> list[bytes]:
        """The expanded tile ``tlevel``/``n`` of this tree (fetched once while cached)."""
        width = tile_width(tlevel, n, self.size)
        if width == 0:
            raise TileError(f"tile {tlevel}/{n} is not part of a tree of size {self.size}")
        key = (tlevel, n, width)
        rows = self._cache.get(key)
        if rows is None:
            data = self.fetch(tile_path(tlevel, n, width))
            if len(data) != 32 * width:
                raise TileError(f"tile: {len(data)} bytes, expected {32 * width}")
            rows = expand_rows(data)
            self._cache.put(key, rows)
        return rows

    def hash_at(self, level: int, index: int) -> bytes:
        tlevel, r = divmod(level, TILE_HEIGHT)
        first = index << r  # the first tile-level hash under this node
        n, off = divmod(first, TILE_WIDTH)
        row = self.rows(tlevel, n)[r]
        j = (off >> r) * 32
        if j + 32 > len(row):
            raise TileError(f"no complete subtree at level {level} index {index}")
        return row[j : j + 32]
