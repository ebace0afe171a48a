"""Files replaced atomically: written to a temporary file in the target's directory, optionally
fsynced, then renamed over the target. Readers see the old file or the new one, never a part;
on any failure the temporary file is removed and the target is untouched.

The new file gets the permissions a plain ``open(path, "wb")`` would give under the process
umask (``0o666 & ~umask``), not ``mkstemp``'s 0600: a registry served by another user must be
able to read what the library wrote.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

__all__ = ["AtomicFile", "atomic_write", "default_file_mode"]


_umask_lock = threading.Lock()


def default_file_mode() -> int:
    """``0o666`` less the process umask (read without changing it for other threads)."""
    try:
        # Linux: read it from /proc, which has no race with other threads.
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


class AtomicFile:
    """``with AtomicFile(path) as f: f.write(...)``: the target appears on a clean exit only.

    ``fsync=True`` flushes the data (and the directory entry) to disk before returning;
    ``mode`` overrides the umask-derived permissions. ``overwrite=False`` never replaces an
    existing target: the finished file is hard-linked into place, and ``FileExistsError`` is
    raised on exit (the temporary file removed) if the target exists by then, so two writers
    racing for one name cannot both win.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = False,
        mode: int | None = None,
        overwrite: bool = True,
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.mode = mode
        self.overwrite = overwrite
        self._tmp: str | None = None
        self._file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        directory = self.path.parent if str(self.path.parent) else Path(".")
        fd, self._tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, default_file_mode() if self.mode is None else self.mode)
            self._file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self._discard()
            raise
        return self._file

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._file is not None and self._tmp is not None
        try:
            if exc_type is None:
                if self.fsync:
                    self._file.flush()
                    os.fsync(self._file.fileno())
                self._file.close()
                if self.overwrite:
                    os.replace(self._tmp, self.path)
                    self._tmp = None
                else:
                    os.link(self._tmp, self.path)  # FileExistsError if the name is taken
                    # _discard (below) unlinks the temporary name
                if self.fsync:
                    _fsync_dir(self.path.parent)
        finally:
            if not self._file.closed:
                self._file.close()
            self._discard()

    def _discard(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(
    path: str | os.PathLike[str],
    data: Any,
    *,
    fsync: bool = False,
    mode: int | None = None,
) -> None:
    """Replace ``path`` with ``data`` atomically: any buffer (bytes, memoryview, mmap...) or an
    iterable of byte chunks."""
    with AtomicFile(path, fsync=fsync, mode=mode) as f:
        try:
            view = memoryview(data)
        except TypeError:
            for chunk in data:
                f.write(chunk)
        else:
            f.write(view)
