"""StatCache: file content digests remembered by their stat tuple, so unchanged files are not
re-read.

An entry maps an absolute path to ``(dev, inode, size, mtime_ns, ctime_ns) -> SHA-256``, with
the wall-clock time it was recorded. It is used only when every field of a fresh ``stat``
equals the recorded one AND the entry is not *racy* (git's rule, racy-git.txt): a file whose
mtime is not older than the moment of recording minus the timestamp granularity may have been
written again within the same timestamp tick after it was hashed, with an identical stat
tuple; such an entry is rehashed next time (and re-recorded, so it stops being racy once the
file is old enough). The granularity is ``granularity_ns`` (20 ms by default: Linux stamps files
from a clock that ticks once a jiffy, 1 to 10 ms, and may lag ``time.time_ns()`` by one), or
2 s for a file whose mtime has no sub-second part (FAT, old ext3, tools that set whole seconds).

Persistence: one compact binary file (format below), read whole with one ``read`` and parsed
with C-level splits and ``array`` loads (about 20 times faster than a SELECT of the same rows
into a dict, which alone took a third of the 100 ms budget for 10,000 files). A lookup stats
every path, hashes only the misses, and writes only when something changed: under an ``flock``
on ``<file>.lock`` it reads the file again (another process may have written), merges its new
rows over it, writes a temp file and renames it into place, so readers see a whole file and
concurrent writers lose nothing. A damaged file (bad magic, length or checksum) is ignored and
rewritten: the worst it costs is a rehash, since an entry is never trusted unless the whole
stat tuple matches.

File format (little-endian)::

    "RCSTAT\0\1"  u64 n  u64 len(paths)
    paths         n absolute paths, UTF-8 (surrogatepass), joined by NUL
    dev[n] ino[n] size[n]                      u64 each
    mtime_ns[n] ctime_ns[n] recorded_ns[n]     i64 each
    sha256[n]                                  32 raw bytes each
    SHA-256 of everything above                32 bytes

Hashing: ``hashlib.sha256`` (OpenSSL, SHA-NI where the CPU has it) in a thread pool (hashlib
releases the GIL on buffers over 2 KiB), small files read in one ``os.read``, large ones
through ``readinto`` into a per-thread reused 1 MiB buffer. A file whose ``fstat`` differs
before and after it was read changed while being hashed: it is hashed again, then refused with
:class:`CacheError` if it keeps changing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat as stat_mod
import struct
import sys
import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

from ..errors import CacheError, InvalidArgumentError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: writers are not serialised there
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileDigest", "StatCache", "hash_file"]

log = logging.getLogger("registry_core.cache")

_MAGIC = b"RCSTAT\x00\x01"
_HEAD = struct.Struct("<8sQQ")
_MAX_FILE = 1 << 30
_SMALL = 1 << 20  # files up to this size are read with one os.read
_BUF = 1 << 20
_COARSE_NS = 2_000_000_000
_PARALLEL_BYTES = 4 << 20  # below this much to hash, threads cost more than they save
_MAX_SNAPSHOTS = 256  # remembered actions (see StatCache.remember)
_MAX_SNAPSHOT_FILES = 250_000  # files named by them in all (about 60 MB at most)
_SNAP_MAGIC = b"RCSNAP1\n"  # the remembered-actions file: magic, SHA-256 hex, newline, JSON
_MAX_SNAP_FILE = 128 << 20  # a bigger remembered-actions file is ignored (a slow path only)


class FileDigest(NamedTuple):
    """A file's SHA-256 (hex), size and executable bit (the owner's x bit, as Bazel reads it)."""

    sha256: str
    size: int
    is_executable: bool


_Stat = tuple[int, int, int, int, int]  # dev, ino, size, mtime_ns, ctime_ns
_Row = tuple[_Stat, str, int]  # stat tuple, digest, recorded_ns
_local = threading.local()


def _buffer() -> bytearray:
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(_BUF)
    return buf


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


def _hash_fd(fd: int, size: int) -> str:
    h = hashlib.sha256()
    if size <= _SMALL:
        while True:
            block = os.read(fd, size + 1)  # one call for the whole file, and EOF seen
            if not block:
                break
            h.update(block)
        return h.hexdigest()
    buf = _buffer()
    view = memoryview(buf)
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def hash_file(path: str | os.PathLike[str]) -> tuple[str, os.stat_result]:
    """(SHA-256 hex, the ``fstat`` taken before reading) of a regular file that stayed the same
    while it was read (hashed twice at most; CacheError if it kept changing)."""
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise CacheError(f"cannot read {os.fspath(path)!r}: {exc}") from exc
        try:
            before = os.fstat(fd)
            if not stat_mod.S_ISREG(before.st_mode):
                raise InvalidArgumentError(f"{os.fspath(path)!r} is not a regular file")
            digest = _hash_fd(fd, before.st_size)
            after = os.fstat(fd)
        except OSError as exc:
            raise CacheError(f"cannot read {os.fspath(path)!r}: {exc}") from exc
        finally:
            os.close(fd)
        if _same(before, after):
            return digest, before
    raise CacheError(
        f"{os.fspath(path)!r} kept changing while it was hashed; run again once it is stable"
    )


class _Table:
    """The parsed file: path -> row number, six int columns and the raw digests."""

    __slots__ = ("_hex", "cols", "digests", "index")

    def __init__(self, index: dict[str, int], cols: list[array[int]], digests: bytes) -> None:
        self.index = index
        self.cols = cols
        self.digests = digests
        self._hex: str | None = None

    @property
    def hex(self) -> str:
        """All digests in hex, converted once (slicing it is cheaper than a hex() per file)."""
        if self._hex is None:
            self._hex = self.digests.hex()
        return self._hex

    @classmethod
    def empty(cls) -> _Table:
        return cls(
            {}, [array("Q"), array("Q"), array("Q"), array("q"), array("q"), array("q")], b""
        )

    @classmethod
    def parse(cls, data: bytes) -> _Table | None:
        """The table in ``data``, or None when it is not a whole, intact file."""
        if len(data) < _HEAD.size + 32:
            return None
        if hashlib.sha256(memoryview(data)[:-32]).digest() != data[-32:]:
            return None
        magic, n, plen = _HEAD.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEAD.size + plen + 80 * n + 32:
            return None
        pos = _HEAD.size
        try:
            text = data[pos : pos + plen].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return None
        paths = text.split("\0") if n else []
        if len(paths) != n:
            return None
        pos += plen
        cols: list[array[int]] = []
        for code in "QQQqqq":
            col = array(code)
            col.frombytes(data[pos : pos + 8 * n])
            if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
                col.byteswap()
            cols.append(col)
            pos += 8 * n
        return cls(dict(zip(paths, range(n), strict=False)), cols, data[pos : pos + 32 * n])

    def row(self, i: int) -> _Row:
        c = self.cols
        stat_key = (c[0][i], c[1][i], c[2][i], c[3][i], c[4][i])
        return stat_key, self.digests[32 * i : 32 * i + 32].hex(), c[5][i]

    def to_dict(self) -> dict[str, _Row]:
        return {p: self.row(i) for p, i in self.index.items()}

    @staticmethod
    def dump_rows(rows: dict[str, _Row]) -> bytes:
        cols = [array(code) for code in "QQQqqq"]
        digests = bytearray()
        for stat_key, digest, recorded in rows.values():
            for col, value in zip(cols, (*stat_key, recorded), strict=False):
                col.append(value)
            digests += bytes.fromhex(digest)
        return _serialize(list(rows), cols, digests)

    def merged(self, rows: dict[str, _Row]) -> bytes | None:
        """``dump_rows`` of this table's rows updated by ``rows`` (same order: rows already
        here in place, new ones appended), merged column by column: an edit to one file does
        not rebuild a Python row per entry. None when the table cannot be merged this way
        (duplicate paths: then ``to_dict`` and ``dump_rows``)."""
        n = len(self.cols[0])
        if len(self.index) != n:
            return None
        index = self.index
        paths = list(index)
        cols = [c[:] for c in self.cols]  # copies (C-level)
        digests = bytearray(self.digests)
        for path, (stat_key, digest, recorded) in rows.items():
            raw = bytes.fromhex(digest)
            values = (*stat_key, recorded)
            i = index.get(path)
            if i is None:
                paths.append(path)
                for col, value in zip(cols, values, strict=True):
                    col.append(value)
                digests += raw
            else:
                for col, value in zip(cols, values, strict=True):
                    col[i] = value
                digests[32 * i : 32 * i + 32] = raw
        return _serialize(paths, cols, digests)


def _serialize(paths: list[str], cols: list[array[int]], digests: bytes | bytearray) -> bytes:
    """The file format of ``len(paths)`` rows (the columns are byte-swapped in place on
    big-endian hosts: pass arrays the caller no longer needs)."""
    joined = "\0".join(paths).encode("utf-8", "surrogatepass")
    parts = [_HEAD.pack(_MAGIC, len(paths), len(joined)), joined]
    for col in cols:
        if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
            col.byteswap()
        parts.append(col.tobytes())
    parts.append(bytes(digests))
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def _freeze(v: object) -> object:
    """JSON lists back into tuples (a signature is compared with tuples)."""
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


class _Raw:
    """A remembered action as read from the file, decoded only when its signature is asked
    for (a process uses one or two of the up to 256 kept). ``len`` is its number of files."""

    __slots__ = ("data", "n")

    def __init__(self, data: bytes, n: int) -> None:
        self.data, self.n = data, n

    def __len__(self) -> int:
        return self.n


def _parse_index(data: bytes) -> list[tuple[object, _Raw]] | None:
    """The entries of a ``.actions`` file (checked whole by its SHA-256), or None if damaged.

    Layout: magic, the SHA-256 hex of the rest, newline, a JSON index line
    ``[[signature, files, length], ...]``, then the entries' JSON texts back to back.
    """
    head = len(_SNAP_MAGIC)
    if not data.startswith(_SNAP_MAGIC) or data[head + 64 : head + 65] != b"\n":
        return None
    body = memoryview(data)[head + 65 :]
    if hashlib.sha256(body).hexdigest().encode("ascii") != data[head : head + 64]:
        return None
    end = data.find(b"\n", head + 65)
    if end < 0:
        return None
    try:
        index = json.loads(data[head + 65 : end])
        out: list[tuple[object, _Raw]] = []
        pos = end + 1
        for sig, n, length in index:
            if not isinstance(sig, list) or type(n) is not int or type(length) is not int:
                return None
            if n < 0 or length < 0 or pos + length > len(data):
                return None
            out.append((_freeze(sig), _Raw(data[pos : pos + length], n)))
            pos += length
    except (ValueError, TypeError):
        return None
    return out if pos == len(data) else None


def _decode_entry(raw: _Raw) -> tuple[list[str], list[tuple[int, ...]], object] | None:
    """(paths, stat tuples, plain value) of one entry, or None when it has the wrong shape."""
    try:
        paths, flat, plain = json.loads(raw.data.decode("utf-8", "surrogatepass"))
        if (
            not isinstance(paths, list)
            or len(paths) != raw.n
            or not isinstance(flat, list)
            or len(flat) != 6 * len(paths)
            or not set(map(type, paths)) <= {str}
            or not set(map(type, flat)) <= {int}
        ):
            return None
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    it = iter(flat)
    stats: list[tuple[int, ...]] = list(
        zip(it, it, it, it, it, it, strict=False)
    )  # length: checked
    return paths, stats, plain


def _hash_batch(paths: list[str]) -> list[tuple[str, os.stat_result]]:
    return [hash_file(p) for p in paths]


class StatCache:
    """Digests of files by stat tuple, persisted in the file ``path`` (None: in memory only).

    ``hashed`` / ``hashed_bytes`` count the files and bytes read by this object (a test hook
    and a benchmark figure). ``max_entries`` bounds the file: beyond it the entries recorded
    longest ago are dropped at the next write.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        granularity_ns: int = 20_000_000,
        threads: int | None = None,
        max_entries: int = 1_000_000,
        lock_timeout: float = 30.0,
    ) -> None:
        if isinstance(granularity_ns, bool) or not isinstance(granularity_ns, int):
            raise InvalidArgumentError(f"granularity_ns must be an int, got {granularity_ns!r}")
        if granularity_ns < 0:
            raise InvalidArgumentError(f"granularity_ns must be >= 0, got {granularity_ns}")
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise InvalidArgumentError(f"max_entries must be an int >= 1, got {max_entries!r}")
        self.path = None if path is None else Path(path)
        self.granularity_ns = granularity_ns
        self.max_entries = max_entries
        self._lock_timeout = float(lock_timeout)
        self._threads = threads if threads is not None else min(8, os.cpu_count() or 1)
        self._lock = threading.RLock()
        self._table = _Table.empty()
        self._loaded_from: tuple[int, int, int] | None = None  # (ino, size, mtime_ns) read
        self._extra: dict[str, _Row] = {}  # rows recorded since the file was read
        self.hashed = 0
        self.hashed_bytes = 0
        self.discarded = 0  # unreadable or damaged files ignored (costs a rehash only)
        # Snapshots of whole input sets (see remember/recall): in memory, per object.
        self._snapshots: dict[object, tuple[list[str], Sequence[tuple[int, ...]], object]] = {}
        self._snapshot_files = 0
        self._snapshots_loaded = self.path is None  # read lazily from the sibling file
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(f"cannot create the stat cache's directory: {exc}") from exc

    # -- the file -----------------------------------------------------------------------------

    def _read_file(self) -> tuple[_Table, tuple[int, int, int] | None]:
        assert self.path is not None
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                ident = (st.st_ino, st.st_size, st.st_mtime_ns)
                if st.st_size > _MAX_FILE:
                    self.discarded += 1
                    return _Table.empty(), ident
                data = f.read()
        except FileNotFoundError:
            return _Table.empty(), None
        except OSError as exc:
            raise CacheError(f"cannot read the stat cache {self.path}: {exc}") from exc
        table = _Table.parse(data)
        if table is None:
            self.discarded += 1
            log.warning("stat cache %s is damaged; ignored (files are rehashed)", self.path)
            return _Table.empty(), ident
        return table, ident

    def _ident(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot stat the stat cache {self.path}: {exc}") from exc
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _refresh(self) -> None:
        """Read the file again when another process replaced it since we read it."""
        if self.path is None:
            return
        ident = self._ident()
        if ident != self._loaded_from or ident is None:
            self._table, self._loaded_from = self._read_file()

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        assert self.path is not None
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise CacheError(f"cannot open the stat cache lock {lock}: {exc}") from exc
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _store(self, changed: dict[str, _Row]) -> None:
        """Merge ``changed`` into the file under its lock (read, merge, write, rename)."""
        self._extra.update(changed)
        if self.path is None:
            return
        with self._file_lock():
            table, _ident = self._read_file()  # another process may have written since
            data: bytes | None = None
            if len(table.index) + len(self._extra) <= self.max_entries:
                data = table.merged(self._extra)  # the common case: column by column
            if data is None:
                rows = table.to_dict()
                rows.update(self._extra)
                if len(rows) > self.max_entries:
                    keep = sorted(rows.items(), key=lambda kv: kv[1][2])[-self.max_entries :]
                    rows = dict(keep)
                data = _Table.dump_rows(rows)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            except OSError as exc:
                with suppress(OSError):
                    os.unlink(tmp)
                raise CacheError(f"cannot write the stat cache {self.path}: {exc}") from exc
            self._table = _Table.parse(data) or _Table.empty()
            self._loaded_from = self._ident()
            self._extra.clear()

    # -- lookups ----------------------------------------------------------------------------

    def is_racy(self, mtime_ns: int, recorded_ns: int) -> bool:
        """True when a file with this mtime, recorded at ``recorded_ns``, must be rehashed."""
        granularity = _COARSE_NS if mtime_ns % 1_000_000_000 == 0 else self.granularity_ns
        return mtime_ns >= recorded_ns - granularity

    def digests(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        now_ns: int | None = None,
        stats: Sequence[os.stat_result] | None = None,
    ) -> dict[str, FileDigest]:
        """The digest of every path (followed through symlinks), keyed by absolute path,
        rehashing only the files whose stat tuple changed or whose entry is racy. ``now_ns``
        is the recording time (default: the wall clock now, which must be before the stats
        were taken); ``stats`` are ``os.stat`` results the caller took already (one per path,
        taken after ``now_ns``), saving a second stat per file."""
        return self.digests_counted(paths, now_ns=now_ns, stats=stats)[0]

    def digests_counted(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        now_ns: int | None = None,
        stats: Sequence[os.stat_result] | None = None,
    ) -> tuple[dict[str, FileDigest], int]:
        """:meth:`digests` and how many of the files were rehashed by this call (0: every
        digest came from an entry whose stat tuple equals the given stat and is not racy)."""
        if stats is not None and len(stats) != len(paths):
            raise InvalidArgumentError("stats must give one stat result per path")
        recorded = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            self._refresh()
            table, extra = self._table, self._extra
        index = table.index
        hexes = table.hex if index else ""
        c_dev, c_ino, c_size, c_mtime, c_ctime, c_rec = table.cols
        new = tuple.__new__  # FileDigest(...) without the Python-level __new__ frame
        out: dict[str, FileDigest] = {}
        todo: list[str] = []
        total = 0
        fine = self.granularity_ns
        isreg, ixusr, stat = stat_mod.S_ISREG, stat_mod.S_IXUSR, os.stat
        for n, p in enumerate(paths):
            path = p if isinstance(p, str) and p[:1] == "/" else os.path.abspath(p)
            if stats is not None:
                st = stats[n]
            else:
                try:
                    st = stat(path)
                except OSError as exc:
                    raise CacheError(f"cannot stat {path!r}: {exc}") from exc
            mode = st.st_mode
            if not isreg(mode):
                raise InvalidArgumentError(f"{path!r} is not a regular file")
            mtime = st.st_mtime_ns
            coarse = fine if mtime % 1_000_000_000 else _COARSE_NS
            i = index.get(path)
            if i is not None:
                if (
                    c_mtime[i] == mtime
                    and c_size[i] == st.st_size
                    and c_ino[i] == st.st_ino
                    and c_ctime[i] == st.st_ctime_ns
                    and c_dev[i] == st.st_dev
                    and mtime < c_rec[i] - coarse
                ):
                    size = st.st_size
                    out[path] = new(
                        FileDigest, (hexes[64 * i : 64 * i + 64], size, bool(mode & ixusr))
                    )
                    continue
            elif extra:
                row = extra.get(path)
                if (
                    row is not None
                    and row[0] == (st.st_dev, st.st_ino, st.st_size, mtime, st.st_ctime_ns)
                    and mtime < row[2] - coarse
                ):
                    out[path] = FileDigest(row[1], st.st_size, bool(mode & ixusr))
                    continue
            todo.append(path)
            total += st.st_size
        if not todo:
            return out, 0
        if len(todo) > 1 and self._threads > 1 and total >= _PARALLEL_BYTES:
            # Contiguous batches, a few per thread: one task per small file would cost more
            # in the pool than hashing it; several per thread even out uneven sizes.
            step = max(1, -(-len(todo) // (self._threads * 4)))
            batches = [todo[k : k + step] for k in range(0, len(todo), step)]
            with ThreadPoolExecutor(self._threads, thread_name_prefix="rc-hash") as pool:
                done = list(pool.map(_hash_batch, batches))
            results = [r for batch in done for r in batch]
        else:
            results = [hash_file(p) for p in todo]
        changed: dict[str, _Row] = {}
        for path, (digest, st) in zip(todo, results, strict=False):
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            changed[path] = (key, digest, recorded)
            out[path] = FileDigest(digest, st.st_size, bool(st.st_mode & ixusr))
        with self._lock:
            self.hashed += len(results)
            self.hashed_bytes += sum(st.st_size for _d, st in results)
            self._store(changed)
        return out, len(todo)

    def digest(self, path: str | os.PathLike[str], *, now_ns: int | None = None) -> FileDigest:
        """The digest of one file (see :meth:`digests`)."""
        return self.digests([path], now_ns=now_ns)[os.path.abspath(path)]

    # -- snapshots of whole input sets ---------------------------------------------------------

    def _snapshots_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".actions")

    def _load_snapshots(self) -> None:
        """Read the index of the remembered actions a previous process wrote (once; under
        ``_lock``); entries are decoded when asked for (see ``snapshot``).

        The file is checksummed and bounded; anything unreadable, damaged, truncated or of the
        wrong shape is ignored (the per-file path runs instead: never a wrong key).
        """
        self._snapshots_loaded = True
        path = self._snapshots_path()
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size > _MAX_SNAP_FILE:
                    return
                data = f.read()
        except OSError:
            return
        entries = _parse_index(data)
        if entries is None:
            self.discarded += 1
            log.warning("remembered actions %s are damaged; ignored", path)
            return
        limit = min(self.max_entries, _MAX_SNAPSHOT_FILES)
        for sig, raw in entries[-_MAX_SNAPSHOTS:]:
            if self._snapshot_files + raw.n > limit:
                break
            self._snapshots[sig] = (raw, (), raw)  # type: ignore[assignment]
            self._snapshot_files += raw.n

    def _save_snapshots(self) -> None:
        """Write the persistable remembered actions atomically; errors only warn."""
        from .._util._atomic import atomic_write

        index: list[list[object]] = []
        blobs: list[bytes] = []
        try:
            for sig, (paths, stats, value) in self._snapshots.items():
                if isinstance(value, _Raw):
                    blob = value.data
                else:
                    plain = value if isinstance(value, list) else getattr(value, "plain", None)
                    if plain is None:
                        continue
                    flat = [n for t in stats for n in t]
                    blob = json.dumps(
                        [paths, flat, plain], separators=(",", ":"), ensure_ascii=False
                    ).encode("utf-8", "surrogatepass")
                index.append([list(sig) if isinstance(sig, tuple) else sig, len(paths), len(blob)])
                blobs.append(blob)
            line = json.dumps(index, separators=(",", ":"), ensure_ascii=False)
            body = [line.encode("utf-8", "surrogatepass"), b"\n", *blobs]
            if sum(map(len, body)) + 100 > _MAX_SNAP_FILE:
                return
            h = hashlib.sha256()
            for part in body:
                h.update(part)
            digest = h.hexdigest().encode("ascii")
            atomic_write(self._snapshots_path(), [_SNAP_MAGIC, digest, b"\n", *body])
        except (OSError, TypeError, ValueError) as exc:
            log.warning("could not save the remembered actions: %s", exc)

    def remember(
        self,
        signature: object,
        paths: list[str],
        stats: Sequence[tuple[int, ...]],
        value: object,
        *,
        persist: bool = False,
    ) -> None:
        """Keep ``value`` (an action) for ``signature`` while ``paths`` keep these stat tuples.

        Only call this when every digest behind ``value`` came from a trusted entry (not racy,
        its stat tuple equal to ``stats``): then any later change of content changes a stat
        tuple (the racy rule's argument, applied to the whole set), so equal tuples mean equal
        digests. At most ``_MAX_SNAPSHOTS`` are kept, naming at most ``_MAX_SNAPSHOT_FILES``
        (or ``max_entries``) files in all: memory stays bounded; the oldest go first.

        With ``persist`` (and a file), the remembered actions are also written to the sibling
        file ``<path>.actions`` so that a new process takes the fast path: ``signature`` must
        then be a tuple of JSON values and ``value`` must have a ``plain`` attribute (a JSON
        value) that the caller decodes again when ``snapshot`` hands it back as a list.
        """
        limit = min(self.max_entries, _MAX_SNAPSHOT_FILES)
        if len(paths) > limit:
            return
        with self._lock:
            if not self._snapshots_loaded:
                self._load_snapshots()
            snaps = self._snapshots
            old = snaps.pop(signature, None)
            if old is not None:
                self._snapshot_files -= len(old[0])
            snaps[signature] = (paths, stats, value)
            self._snapshot_files += len(paths)
            while len(snaps) > _MAX_SNAPSHOTS or self._snapshot_files > limit:
                self._snapshot_files -= len(snaps.pop(next(iter(snaps)))[0])
            if persist and self.path is not None:
                self._save_snapshots()

    def snapshot(
        self, signature: object
    ) -> tuple[list[str], Sequence[tuple[int, ...]], object] | None:
        """(paths, stat tuples, value) remembered for ``signature``, or None. A value read
        from the file comes back in its plain (JSON) form, for the caller to decode."""
        if not self._snapshots_loaded:
            with self._lock:
                if not self._snapshots_loaded:
                    self._load_snapshots()
        snap = self._snapshots.get(signature)
        if snap is not None and isinstance(snap[2], _Raw):
            with self._lock:
                decoded = _decode_entry(snap[2])
                if self._snapshots.get(signature) is snap:
                    if decoded is None:
                        self._snapshots.pop(signature)
                        self._snapshot_files -= snap[2].n
                        self.discarded += 1
                    else:
                        self._snapshots[signature] = decoded
            return decoded
        return snap

    def recall(
        self, signature: object, paths: list[str], stats: Sequence[tuple[int, ...]]
    ) -> object | None:
        """The value remembered for ``signature`` when ``paths`` (in the same order) still have
        exactly these stat tuples; None otherwise. Two C-level list comparisons."""
        snap = self.snapshot(signature)
        if snap is None or snap[0] != paths or snap[1] != stats:
            return None
        return snap[2]

    # -- counters (for ``registry-core cache stats``) ----------------------------------------

    def _counters_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".counters.json")

    def _read_counters(self) -> dict[str, int]:
        try:
            raw = json.loads(self._counters_path().read_bytes()[: 1 << 16])
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(k, str) and type(v) is int}

    def bump(self, **counts: int) -> None:
        """Add to named persistent counters (hits, misses, saved_ms ...), under the lock."""
        if self.path is None or not counts:
            return
        with self._lock, self._file_lock():
            values = self._read_counters()
            for name, n in counts.items():
                values[name] = values.get(name, 0) + int(n)
            target = self._counters_path()
            tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}")
            try:
                tmp.write_text(json.dumps(values, sort_keys=True))
                os.replace(tmp, target)
            except OSError as exc:
                with suppress(OSError):
                    os.unlink(tmp)
                raise CacheError(f"cannot write {target}: {exc}") from exc

    def counters(self) -> dict[str, int]:
        """The persistent counters (empty in memory)."""
        return {} if self.path is None else self._read_counters()

    def forget(self) -> int:
        """Drop every entry and counter; the number of entries dropped."""
        with self._lock:
            self._refresh()
            n = len(self._table.index) + len(self._extra)
            self._table, self._extra = _Table.empty(), {}
            self._snapshots.clear()
            self._snapshot_files = 0
            if self.path is not None:
                self._snapshots_loaded = True
                with self._file_lock():
                    for p in (self.path, self._counters_path(), self._snapshots_path()):
                        with suppress(FileNotFoundError):
                            os.unlink(p)
                self._loaded_from = None
            return n

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._table.index) + len(self._extra)

    def close(self) -> None:
        """Nothing is held open between calls; kept for symmetry with the stores."""

    def __enter__(self) -> StatCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StatCache({str(self.path) if self.path else None!r})"
