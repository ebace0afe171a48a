"""The one argument check for bytes-like inputs.

Every public function that takes bytes accepts the same things: ``bytes``, ``bytearray``,
``memoryview`` (C-contiguous, any item size) and ``mmap``; it refuses ``str`` and non-buffers
with :class:`~registry_core.errors.InvalidTypeError`, never copying the data.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidTypeError

__all__ = ["byte_view"]


def byte_view(data: Any, what: str = "data") -> memoryview:
    """A flat, read-only-or-not ``memoryview`` of unsigned bytes over ``data`` (no copy)."""
    if isinstance(data, str):
        raise InvalidTypeError(f"{what} must be a bytes-like buffer, not str (encode it first)")
    try:
        view = memoryview(data)
    except TypeError:
        raise InvalidTypeError(
            f"{what} must be a bytes-like buffer (bytes, bytearray, memoryview, mmap), "
            f"not {type(data).__name__}"
        ) from None
    if not view.c_contiguous:
        raise InvalidTypeError(f"{what} must be a C-contiguous buffer; copy it with bytes() first")
    if view.format == "B" and view.ndim == 1:
        return view
    return view.cast("B")
