"""Compression dictionaries: trained zstd dictionaries and raw ones (a previous version).

A :class:`Dictionary` is its bytes. Its id is the SHA-256 of those bytes, which is also the
hash RFC 9842 puts in ``Available-Dictionary`` and in the ``dcz`` header, so one id names the
dictionary in storage, in caches and on the wire. ``to_bytes``/``from_bytes`` round-trip it
exactly (the bytes are the serialisation: a trained dictionary carries the zstd dictionary
magic ``37 A4 30 EC``; anything else is a raw-content dictionary).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from typing import Any

from .._util import byte_view
from ..errors import CompressionError, InvalidArgumentError

_ZSTD_DICT_MAGIC = b"\x37\xa4\x30\xec"
MIN_TRAINING_BYTES = 1024


class Dictionary:
    """An immutable compression dictionary with a stable id (hex SHA-256 of its bytes)."""

    __slots__ = ("_cache", "_data", "_lock", "_sha256")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(byte_view(data, "a dictionary's data"))
        if not data:
            raise InvalidArgumentError("a dictionary cannot be empty")
        self._data = data
        self._sha256 = hashlib.sha256(data).digest()
        self._cache: dict[Any, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Dictionary:
        """Load a dictionary saved with :meth:`to_bytes` (or any raw bytes to use as one)."""
        return cls(data)

    def to_bytes(self) -> bytes:
        """The dictionary's bytes; ``Dictionary.from_bytes(d.to_bytes()) == d``."""
        return self._data

    @property
    def data(self) -> bytes:
        return self._data

    @property
    def sha256(self) -> bytes:
        """The 32-byte SHA-256 of the dictionary (RFC 9842 dictionary hash)."""
        return self._sha256

    @property
    def id(self) -> str:
        """Stable id: lower-case hex SHA-256 of the bytes."""
        return self._sha256.hex()

    @property
    def kind(self) -> str:
        """``"zstd"`` for a trained zstd dictionary, ``"raw"`` for raw content."""
        return "zstd" if self._data.startswith(_ZSTD_DICT_MAGIC) else "raw"

    @property
    def zstd_dict_id(self) -> int:
        """The dictionary id zstd writes in frame headers (0 for raw content)."""
        if self.kind != "zstd":
            return 0
        return int.from_bytes(self._data[4:8], "little")

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and other._sha256 == self._sha256

    def __hash__(self) -> int:
        return hash(self._sha256)

    def __repr__(self) -> str:
        return f"Dictionary(kind={self.kind!r}, size={len(self)}, id={self.id[:16]}...)"

    def zstd(self, *, raw: bool = False, level: int | None = None) -> Any:
        """A (cached) ``zstandard.ZstdCompressionDict``; precomputed for ``level`` if given.

        ``raw=True`` loads the bytes as raw content even if they look like a trained
        dictionary (RFC 9842 ``dcz`` treats every dictionary as raw content).
        """
        import zstandard

        key = (raw, level)
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:
                dict_type = (
                    zstandard.DICT_TYPE_RAWCONTENT
                    if raw or self.kind == "raw"
                    else zstandard.DICT_TYPE_FULLDICT
                )
                try:
                    cached = zstandard.ZstdCompressionDict(self._data, dict_type=dict_type)
                    if level is not None:
                        cached.precompute_compress(level=level)
                except zstandard.ZstdError as exc:
                    raise CompressionError(f"unusable zstd dictionary: {exc}") from None
                self._cache[key] = cached
            return cached


def train_dictionary(samples: Iterable[bytes], size: int = 16384, *, level: int = 3) -> Dictionary:
    """Train a zstd dictionary of at most ``size`` bytes on ``samples`` (COVER algorithm).

    Needs enough samples (a few hundred small documents, or a total input of roughly 100 times
    ``size``); too little input raises CompressionError saying so.
    """
    import zstandard

    if not isinstance(size, int) or size < 256:
        raise InvalidArgumentError(f"dictionary size must be an int >= 256, got {size!r}")
    sample_list = []
    for s in samples:
        sample_list.append(bytes(byte_view(s, "each sample")))
    if len(sample_list) < 8:
        raise InvalidArgumentError(
            f"need at least 8 samples to train a dictionary, got {len(sample_list)}"
        )
    total = sum(map(len, sample_list))
    if total < MIN_TRAINING_BYTES:
        # zstd's COVER trainer crashes the process (SIGFPE/SIGSEGV, zstandard 0.25) on a few
        # bytes of samples; refuse tiny inputs before they reach it.
        raise InvalidArgumentError(
            f"need at least {MIN_TRAINING_BYTES} bytes of samples to train a dictionary, got "
            f"{total}; a useful dictionary wants about 100 times its size"
        )
    try:
        trained = zstandard.train_dictionary(size, sample_list, level=level)
    except zstandard.ZstdError as exc:
        raise CompressionError(
            f"could not train a dictionary ({exc}); give more or larger samples, or a "
            "smaller size"
        ) from None
    return Dictionary(trained.as_bytes())
