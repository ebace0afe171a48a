"""Bundles: many patches in one stream, each entry with its own SHA-256.

Format (varints are unsigned LEB128)::

    magic b"RCDB", version u8 = 1, entry_count
    per entry: name_len, name (UTF-8), patch_len, sha256(patch) (32 bytes), patch
    trailer: SHA-256 of every byte before it
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from .._util import byte_view, decode_uvarint, encode_uvarint
from ..errors import CorruptPatchError, InvalidArgumentError, InvalidTypeError

MAGIC = b"RCDB"
VERSION = 1
MAX_NAME = 4096


def bundle(patches: Mapping[str, object]) -> bytes:
    if not isinstance(patches, Mapping):
        raise InvalidTypeError("bundle takes a mapping of name -> patch")
    out = bytearray(MAGIC)
    out.append(VERSION)
    encode_uvarint(out, len(patches))
    for name, patch in patches.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("bundle entry names must be non-empty strings")
        raw_name = name.encode("utf-8")
        if len(raw_name) > MAX_NAME:
            raise InvalidArgumentError(f"bundle entry name longer than {MAX_NAME} bytes")
        data = byte_view(patch, f"patch {name!r}")
        encode_uvarint(out, len(raw_name))
        out += raw_name
        encode_uvarint(out, len(data))
        out += hashlib.sha256(data).digest()
        out += data
    out += hashlib.sha256(out).digest()
    return bytes(out)


def unbundle(blob: object, *, max_entries: int) -> dict[str, bytes]:
    view = byte_view(blob, "bundle")
    if len(view) < len(MAGIC) + 2 + 32 or bytes(view[:4]) != MAGIC:
        raise CorruptPatchError("not a registry-core bundle (bad magic or truncated)")
    if view[4] != VERSION:
        raise CorruptPatchError(f"bundle version {view[4]} is not supported")
    body, trailer = view[:-32], view[-32:]
    if hashlib.sha256(body).digest() != bytes(trailer):
        raise CorruptPatchError("bundle checksum mismatch: corrupted or truncated")
    count, pos = decode_uvarint(body, 5, "bundle")
    if count > max_entries:
        raise CorruptPatchError(f"bundle declares {count} entries, above max_entries={max_entries}")
    result: dict[str, bytes] = {}
    for _ in range(count):
        nlen, pos = decode_uvarint(body, pos, "bundle")
        if nlen == 0 or nlen > MAX_NAME or pos + nlen > len(body):
            raise CorruptPatchError("bundle entry name is empty, too long or truncated")
        try:
            name = bytes(body[pos : pos + nlen]).decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptPatchError("bundle entry name is not UTF-8") from None
        pos += nlen
        plen, pos = decode_uvarint(body, pos, "bundle")
        if pos + 32 + plen > len(body):
            raise CorruptPatchError(f"bundle entry {name!r} is truncated")
        digest = bytes(body[pos : pos + 32])
        pos += 32
        data = bytes(body[pos : pos + plen])
        pos += plen
        if hashlib.sha256(data).digest() != digest:
            raise CorruptPatchError(f"bundle entry {name!r} fails its SHA-256 check")
        if name in result:
            raise CorruptPatchError(f"bundle entry {name!r} appears twice")
        result[name] = data
    if pos != len(body):
        raise CorruptPatchError("bundle has trailing bytes")
    return result
