"""Unsigned LEB128 integers (7 bits a byte, low first), as the patch, layout and bundle formats
write them. Decoding is strict: at most 9 bytes, values below 2**63, no over-long (non-minimal)
encodings, so each integer has exactly one encoding (docs/delta-format.md)."""

from __future__ import annotations

from ..errors import CorruptPatchError, InvalidArgumentError

__all__ = ["MAX_UVARINT", "decode_uvarint", "encode_uvarint"]

MAX_UVARINT = (1 << 63) - 1


def encode_uvarint(out: bytearray, value: int) -> None:
    """Append ``value`` to ``out``."""
    if value < 0 or value > MAX_UVARINT:
        raise InvalidArgumentError(f"varint out of range: {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def decode_uvarint(
    data: bytes | bytearray | memoryview, pos: int, what: str = "patch"
) -> tuple[int, int]:
    """Decode the varint at ``pos``; returns ``(value, new_pos)``.

    Raises :class:`CorruptPatchError` (naming ``what``) on truncation, over-long or
    non-minimal encodings and values of 2**63 or more.
    """
    value = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise CorruptPatchError(f"{what} is truncated (inside a varint)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                raise CorruptPatchError(f"{what} holds a non-minimal varint")
            if value > MAX_UVARINT:
                raise CorruptPatchError(f"{what} holds an out-of-range integer")
            return value, pos
        shift += 7
        if shift > 63:
            raise CorruptPatchError(f"{what} holds an over-long varint")
