"""``cache_key``: a stable, domain-separated SHA-256 over a build's inputs.

Every part is written as ``tag || u64 length || payload`` (recursively for containers), after a
fixed domain string and the namespace, so no two different input lists share an encoding:
``("ab", "c")`` and ``("a", "bc")`` differ in their length fields, ``b"1"`` and ``"1"`` and ``1``
in their tags. The encoding is specified in docs/cache.md so another implementation can
reproduce the keys.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from typing import Any, Union

from ..errors import CacheError, InvalidArgumentError, InvalidTypeError

__all__ = ["KEY_DOMAIN", "KeyPart", "cache_key", "cache_key_of_encoded", "encode_part"]

KEY_DOMAIN = b"registry-core/cache-key/v1\x00"
_MAX_DEPTH = 32
_CHUNK = 1 << 20

KeyPart = Union[
    bytes,
    bytearray,
    memoryview,
    str,
    int,
    bool,
    None,
    "os.PathLike[str]",
    Mapping[Any, Any],
    list,
    tuple,
]

_U64 = struct.Struct(">Q")


def _field(h: Any, tag: bytes, payload: bytes) -> None:
    h.update(tag)
    h.update(_U64.pack(len(payload)))
    h.update(payload)


def _file(h: Any, path: os.PathLike[str]) -> None:
    """Hash a file's content, streamed, under the same tag as bytes (content, not name)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h.update(b"B")
            h.update(_U64.pack(size))
            seen = 0
            while True:
                block = f.read(_CHUNK)
                if not block:
                    break
                seen += len(block)
                if seen > size:
                    break
                h.update(block)
    except OSError as exc:
        raise CacheError(f"cannot read key input file {os.fspath(path)!r}: {exc}") from exc
    if seen != size:
        raise CacheError(
            f"key input file {os.fspath(path)!r} changed size while being hashed "
            f"({size} bytes announced, {seen} read); hash it again once it is stable"
        )


def _encode_key(k: Any) -> bytes:
    if isinstance(k, str):
        return b"S" + k.encode("utf-8", "surrogatepass")
    if isinstance(k, (bytes, bytearray)):
        return b"B" + bytes(k)
    raise InvalidTypeError(
        f"mapping keys in a cache key must be str or bytes, got {type(k).__name__}"
    )


def _part(h: Any, part: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidArgumentError(f"cache key input nested deeper than {_MAX_DEPTH} levels")
    if isinstance(part, (bytes, bytearray, memoryview)):
        _field(h, b"B", bytes(part))
    elif isinstance(part, str):
        _field(h, b"S", part.encode("utf-8", "surrogatepass"))
    elif isinstance(part, os.PathLike):
        _file(h, part)
    elif part is None:
        _field(h, b"N", b"")
    elif isinstance(part, bool):  # before int: bool is an int subclass
        _field(h, b"T", b"1" if part else b"0")
    elif isinstance(part, int):
        _field(h, b"I", str(part).encode("ascii"))
    elif isinstance(part, Mapping):
        items = sorted(((_encode_key(k), v) for k, v in part.items()), key=lambda kv: kv[0])
        h.update(b"M")
        h.update(_U64.pack(len(items)))
        for k, v in items:
            _field(h, b"K", k)
            _part(h, v, depth + 1)
    elif isinstance(part, (list, tuple)):
        h.update(b"L")
        h.update(_U64.pack(len(part)))
        for item in part:
            _part(h, item, depth + 1)
    else:
        raise InvalidTypeError(
            "cache key parts must be bytes, str, int, bool, None, a pathlib.Path (hashed by "
            f"content), a mapping or a list/tuple of those; got {type(part).__name__}"
        )


def cache_key(*parts: KeyPart, namespace: str = "default") -> str:
    """The SHA-256 hex key of ``parts`` under ``namespace``.

    Pass files as ``pathlib.Path`` (their content is hashed, streamed; a ``str`` is always text),
    tool and compiler versions as a mapping such as ``{"cc": "gcc 13.2.0"}`` (sorted, so order
    does not matter), and anything else as bytes or str. A file and its bytes give the same key.
    """
    if not isinstance(namespace, str):
        raise InvalidTypeError(f"namespace must be a str, got {type(namespace).__name__}")
    h = hashlib.sha256(KEY_DOMAIN)
    _field(h, b"n", namespace.encode("utf-8", "surrogatepass"))
    h.update(_U64.pack(len(parts)))
    for part in parts:
        _part(h, part, 0)
    return h.hexdigest()


class _Collect:
    """A hasher stand-in that keeps what it is fed (for :func:`encode_part`)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, data: bytes) -> None:
        self.parts.append(bytes(data))


def encode_part(part: KeyPart) -> bytes:
    """The bytes ``cache_key`` hashes for one part (files are read, as there)."""
    c = _Collect()
    _part(c, part, 0)
    return b"".join(c.parts)


def cache_key_of_encoded(encoded: list[bytes], *, namespace: str = "default") -> str:
    """``cache_key(*parts, namespace=...)`` from the parts' :func:`encode_part` bytes, so a
    caller can encode a large regular part faster (``_action`` does, for its inputs)."""
    if not isinstance(namespace, str):
        raise InvalidTypeError(f"namespace must be a str, got {type(namespace).__name__}")
    h = hashlib.sha256(KEY_DOMAIN)
    _field(h, b"n", namespace.encode("utf-8", "surrogatepass"))
    h.update(_U64.pack(len(encoded)))
    for e in encoded:
        h.update(e)
    return h.hexdigest()
