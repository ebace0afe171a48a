"""Reading input files for ``diff_file`` / ``apply_file`` without trusting them to stay put.

Inputs used to be memory-mapped. A file truncated by another process while the map is read
kills the reader with SIGBUS, which Python cannot catch. Files are therefore read into memory
(one ``readinto`` pass into a buffer of the size ``fstat`` reported: the pages a map would have
faulted in count in RSS all the same), and the read is checked: a file that shrinks or grows
while it is read, or whose size or modification time differ once the work is done, raises
:class:`~registry_core.errors.InvalidArgumentError` naming it, and nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Union

from ..errors import InvalidArgumentError

__all__ = ["StableFile", "read_stable"]

PathLike = Union[str, "os.PathLike[str]"]

READ_CHUNK = 8 << 20

#: Test hook: called as ``hook(path, bytes_read_so_far)`` after every chunk read. Lets a test
#: truncate a file deterministically in the middle of a read (no sleeps, no races).
_after_chunk: Callable[[PathLike, int], None] | None = None


def _changed(path: PathLike) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{os.fspath(path)} changed while it was being read (truncated or rewritten by another "
        "process); nothing was written: retry once the file is complete"
    )


class StableFile:
    """A file's bytes read whole, plus the ``fstat`` facts to check it did not change since.

    ``data`` is a ``bytearray`` (writable, so no copy is needed to hand it to C).
    """

    __slots__ = ("_stamp", "data", "path")

    def __init__(self, path: PathLike, data: bytearray, stamp: tuple[int, int, int, int]) -> None:
        self.path = path
        self.data = data
        self._stamp = stamp

    def check_unchanged(self) -> None:
        """Raise InvalidArgumentError if the file's identity, size or mtime moved meanwhile."""
        try:
            st = os.stat(self.path)
        except OSError:
            raise _changed(self.path) from None
        if _stamp(st) != self._stamp:
            raise _changed(self.path)


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_stable(path: PathLike) -> StableFile:
    """Read ``path`` whole; raise InvalidArgumentError if its size changes during the read."""
    with open(path, "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        size = st.st_size
        buf = bytearray(size)
        view = memoryview(buf)
        pos = 0
        try:
            while pos < size:
                n = f.readinto(view[pos : pos + READ_CHUNK])
                if not n:
                    raise _changed(path)  # shorter than fstat said: truncated meanwhile
                pos += n
                if _after_chunk is not None:
                    _after_chunk(path, pos)
            if f.read(1):
                raise _changed(path)  # longer than fstat said: still being written
        finally:
            view.release()
        after = os.fstat(f.fileno())
        if _stamp(after) != _stamp(st):
            raise _changed(path)
    return StableFile(path, buf, _stamp(st))
