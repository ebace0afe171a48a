"""Range requests (RFC 9110 section 14), sans-IO: one byte range on the identity representation.

Supported: ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` (a suffix: what pip and uv send first to
read a wheel's central directory), answered with ``206`` and ``Content-Range``; a range that
starts at or past the end is ``416`` with ``Content-Range: bytes */size``. A set of several
ranges is answered with the full ``200`` (RFC 9110 section 14.2 lets a server ignore Range),
as is any malformed value, another range unit, or an ``If-Range`` that is not our strong ETag
(a date in ``If-Range`` never matches: no ``Last-Modified`` is sent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["UNSATISFIABLE", "ByteRange", "if_range_matches", "parse_range"]

_MAX_FIELD = 1024  # a single range fits easily; longer values are ignored, not parsed
_SPEC = re.compile(r"[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*\Z")


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` .. ``end`` inclusive of a representation of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class _Unsatisfiable:
    def __repr__(self) -> str:
        return "UNSATISFIABLE"


#: Returned by :func:`parse_range` when no range overlaps the representation (answer 416).
UNSATISFIABLE = _Unsatisfiable()


def parse_range(value: str | None, size: int) -> ByteRange | _Unsatisfiable | None:
    """The one range ``value`` asks of ``size`` bytes; None means "ignore Range, send 200"."""
    if value is None or len(value) > _MAX_FIELD:
        return None
    unit, sep, specs = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    members = [m for m in specs.split(",") if m.strip()]
    if len(members) != 1:
        return None  # none, or several ranges: the full representation answers them all
    m = _SPEC.match(members[0])
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if len(first) > 20 or len(last) > 20:
        return None
    if first:
        start = int(first)
        if last:
            end = int(last)
            if end < start:
                return None  # invalid range-spec: the whole field is ignored
        else:
            end = size - 1
        if start >= size:
            return UNSATISFIABLE
        return ByteRange(start, min(end, size - 1), size)
    if not last:
        return None  # "bytes=-" is not a range
    suffix = int(last)
    if suffix == 0 or size == 0:
        return UNSATISFIABLE
    return ByteRange(max(0, size - suffix), size - 1, size)


def if_range_matches(value: str | None, etag: str) -> bool:
    """RFC 9110 section 13.1.5: Range applies when If-Range is absent or our strong ETag."""
    if value is None:
        return True
    value = value.strip()
    return not value.startswith("W/") and value == etag
