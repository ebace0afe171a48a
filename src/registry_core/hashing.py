"""Content IDs and integrity strings.

- :func:`content_id`: XXH3-128 as 32 lowercase hex digits, a fast non-cryptographic name for a
  chunk or blob (dedup keys, cache keys). Not a security boundary: use integrity strings for that.
- :func:`integrity`: Subresource-Integrity style ``"<alg>-<base64 digest>"`` strings, the form
  package registries publish (``sha256-...`` for PyPI's hashes, ``sha512-...`` in npm's
  ``dist.integrity``). Default algorithm SHA-256.
- :func:`integrity_of_file` streams a file; :class:`IntegrityHasher` is the incremental form;
  :func:`parse_integrity` validates a string and returns ``(algorithm, digest)``.

Inputs are bytes-like buffers (bytes, bytearray, memoryview, mmap); ``str`` or other objects
raise :class:`~registry_core.errors.InvalidTypeError`. ``xxhash`` is imported on first use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import IO, Any, NamedTuple, Union

from ._util._buffers import byte_view
from .errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "ALGORITHMS",
    "Integrity",
    "IntegrityHasher",
    "content_id",
    "integrity",
    "integrity_of_file",
    "parse_integrity",
]

#: Algorithms accepted in integrity strings, with their digest sizes in bytes.
ALGORITHMS = {"sha256": 32, "sha384": 48, "sha512": 64}
DEFAULT_CHUNK_SIZE = 1 << 20

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]


class Integrity(NamedTuple):
    """A parsed integrity string."""

    algorithm: str
    digest: bytes

    def __str__(self) -> str:
        return f"{self.algorithm}-{base64.b64encode(self.digest).decode('ascii')}"


def _check_buffer(data: Any, what: str = "data") -> None:
    byte_view(data, what)


def _check_algorithm(algorithm: Any) -> str:
    if algorithm not in ALGORITHMS:
        raise InvalidArgumentError(
            f"unsupported integrity algorithm {algorithm!r}; use one of {sorted(ALGORITHMS)}"
        )
    return algorithm


def content_id(data: Any) -> str:
    """XXH3-128 of ``data`` as 32 lowercase hex digits."""
    _check_buffer(data)
    import xxhash

    return xxhash.xxh3_128_hexdigest(data)


def integrity(data: Any, algorithm: str = "sha256") -> str:
    """``"<algorithm>-<base64 digest>"`` of ``data`` (SHA-256 by default)."""
    _check_buffer(data)
    digest = hashlib.new(_check_algorithm(algorithm), data).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode('ascii')}"


class IntegrityHasher:
    """Incremental integrity: ``update`` pieces, then ``integrity()`` / ``hexdigest()``."""

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = _check_algorithm(algorithm)
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: Any) -> None:
        """Add ``data`` (any bytes-like buffer)."""
        _check_buffer(data)
        self._hash.update(data)
        self.size += memoryview(data).nbytes

    def digest(self) -> bytes:
        return self._hash.digest()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def integrity(self) -> str:
        return str(Integrity(self.algorithm, self._hash.digest()))


def integrity_of_file(
    path_or_fileobj: PathOrFile, chunk_size: int = DEFAULT_CHUNK_SIZE, algorithm: str = "sha256"
) -> str:
    """Integrity string of a file, read in ``chunk_size`` pieces (memory stays bounded).

    Accepts a path (str or PathLike) or a binary file object opened for reading; a file object
    is read from its current position to EOF and left open.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise InvalidTypeError(f"chunk_size must be an int, not {type(chunk_size).__name__}")
    if chunk_size <= 0:
        raise InvalidArgumentError(f"chunk_size must be positive, got {chunk_size}")
    hasher = IntegrityHasher(algorithm)
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        with open(path_or_fileobj, "rb") as f:
            _hash_stream(hasher, f, chunk_size)
    elif hasattr(path_or_fileobj, "read"):
        _hash_stream(hasher, path_or_fileobj, chunk_size)
    else:
        raise InvalidTypeError(
            "path_or_fileobj must be a path or a binary file object, "
            f"not {type(path_or_fileobj).__name__}"
        )
    return hasher.integrity()


def _hash_stream(hasher: IntegrityHasher, f: IO[bytes], chunk_size: int) -> None:
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        while True:
            n = readinto(view)
            if not n:
                return
            hasher.update(view[:n])
    while True:
        piece = f.read(chunk_size)
        if not piece:
            return
        if isinstance(piece, str):
            raise InvalidTypeError("the file object returned str: open it in binary mode ('rb')")
        hasher.update(piece)


def parse_integrity(value: Any) -> Integrity:
    """Validate ``"<algorithm>-<base64 digest>"`` and return ``Integrity(algorithm, digest)``.

    The algorithm must be one of :data:`ALGORITHMS`, the base64 canonical (standard alphabet,
    padded) and the digest of the algorithm's length; anything else raises
    :class:`~registry_core.errors.InvalidArgumentError`.
    """
    if not isinstance(value, str):
        raise InvalidTypeError(f"an integrity string must be str, not {type(value).__name__}")
    algorithm, sep, encoded = value.strip().partition("-")
    if not sep:
        raise InvalidArgumentError(
            f"integrity string {value!r} has no '-': expected '<algorithm>-<base64 digest>'"
        )
    _check_algorithm(algorithm)
    try:
        digest = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidArgumentError(
            f"integrity string {value!r}: the digest is not valid base64"
        ) from None
    if len(digest) != ALGORITHMS[algorithm]:
        raise InvalidArgumentError(
            f"integrity string {value!r}: a {algorithm} digest is {ALGORITHMS[algorithm]} bytes, "
            f"got {len(digest)}"
        )
    if base64.b64encode(digest).decode("ascii") != encoded:
        raise InvalidArgumentError(f"integrity string {value!r}: base64 is not canonical")
    return Integrity(algorithm, digest)
