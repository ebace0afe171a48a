"""Cheap similarity between artifacts for base choice: chunk fingerprints of decompressed content.

The content view inflates zip members and gzip streams (bounded, no parameter detection), then
content-defined chunking and XXH3-64 give a multiset of chunk hashes. Bytes of the target whose
chunks a candidate lacks approximate the literal bytes a delta would have to carry.
"""

from __future__ import annotations

import io
import zipfile
import zlib

import xxhash

from ..chunking import chunks

_BUDGET = 1 << 30  # inflated bytes read per artifact at most


def _content(data: memoryview) -> bytes:
    head = bytes(data[:4])
    if head.startswith(b"PK\x03\x04"):
        try:
            parts, total = [], 0
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist():
                    total += info.file_size
                    if total > _BUDGET:
                        break
                    parts.append(info.filename.encode() + b"\0" + zf.read(info))
            return b"".join(parts)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
            return bytes(data)
    if head.startswith(b"\x1f\x8b"):
        try:
            d = zlib.decompressobj(wbits=47)
            out = d.decompress(data, _BUDGET)
            return out
        except zlib.error:
            return bytes(data)
    return bytes(data)


def fingerprint(data: memoryview) -> dict[int, int]:
    """Chunk hash -> chunk length for the content view of ``data``."""
    content = _content(data)
    result: dict[int, int] = {}
    start = 0
    for end in chunks(content):
        result[xxhash.xxh3_64_intdigest(content[start:end])] = end - start
        start = end
    return result


def missing_bytes(target: dict[int, int], candidate: dict[int, int]) -> int:
    return sum(size for h, size in target.items() if h not in candidate)
