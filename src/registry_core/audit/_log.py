"""The tamper-evident audit log: an append-only RFC 9162 tree stored as C2SP tlog tiles.

Layout of the log directory (every file a static one a web server or CDN can serve; the
lock and the journal are private):

- ``checkpoint``: the newest signed checkpoint (C2SP tlog-checkpoint in a signed note,
  Ed25519 + ML-DSA-65).
- ``tile/<L>/<N>``, ``tile/entries/<N>``: full tiles and entry bundles (immutable), and the
  partial ones (``.p/<W>``) of every size a checkpoint was made for (deleted once the full one
  exists, as tlog-tiles allows).
- ``tail``: the journal: an 8-byte bundle index ``S`` and every entry from ``S * 256`` on (as
  in a bundle), each appended with one ``write``.
- ``lock``: held (``flock``) by the one writer.

Group commit: appends only ``write``; bundles and tiles are written as they fill, without
fsync. A flusher thread (every ``flush_interval_s``, and on :meth:`sync`, :meth:`checkpoint`
and :meth:`close`) fsyncs the journal and the new files, and only then rewrites the journal to
start at the first bundle not yet durable. A power failure loses at most the entries of the
last interval; it never leaves a tile that disagrees with the entries: opening rewrites every
bundle and tile the journal covers (and the newest full tile of every level) from the
journal's entries, and cuts off a torn last record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from .._util import LRU, atomic_write
from ..errors import AuditLogError, SigningKeyError
from ._events import AuditEvent
from ._merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_hash,
)
from ._note import Checkpoint, NoteSigner, format_checkpoint, keyring_signers, sign_note
from ._tiles import (
    MAX_ENTRY,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileError,
    decode_bundle,
    encode_bundle,
    entries_path,
    expand_rows,
    parse_path,
    rows_weight,
    tile_path,
)

__all__ = ["AuditLog", "AuditLogError"]

_internal = logging.getLogger("registry_core.audit.log")

_TAIL = "tail"
_LOCK = "lock"
_CHECKPOINT = "checkpoint"
_HEADER = 8
_MODE = 0o600


class _Edge:
    """The incomplete rightmost tile of one tile level: rows 0..7 of its complete nodes."""

    __slots__ = ("index", "rows")

    def __init__(self, index: int) -> None:
        self.index = index
        self.rows: list[list[bytes]] = [[] for _ in range(TILE_HEIGHT)]

    def add(self, h: bytes) -> bytes | None:
        """Add one hash; returns the tile's root when this hash completed it."""
        rows = self.rows
        rows[0].append(h)
        r = 0
        while len(rows[r]) % 2 == 0:
            parent = node_hash(rows[r][-2], rows[r][-1])
            if r + 1 == TILE_HEIGHT:
                return parent
            rows[r + 1].append(parent)
            r += 1
        return None


def _line(event: AuditEvent) -> bytes:
    doc = event.to_json()
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_ENTRY:  # an entry bundle holds at most 65535 bytes per entry
        doc["detail"] = {k: v[:200] for k, v in doc["detail"].items()}
        doc["detail"]["_cut"] = "true"
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_ENTRY:
        doc["detail"] = {"_cut": "true"}
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return data


class AuditLog:
    """A tenant's audit log in ``directory`` (an :class:`~registry_core.audit.AuditSink`).

    ``origin``: the checkpoint origin (``<public host>/<tenant>``); ``keyring``: a
    :class:`~registry_core.signing.Keyring` whose newest active ``audit`` Ed25519 and ML-DSA-65
    keys sign checkpoints (a hybrid pair is generated on first use when the role has none);
    ``key_name``: the signed-note key name (default: the origin). A checkpoint is signed every
    ``checkpoint_every`` entries, on :meth:`checkpoint` and on :meth:`close`; appended entries
    are durable within ``flush_interval_s`` (or at once with :meth:`sync`).
    Proofs read full tiles from disk, expanded (rows 0..7) into two LRUs bounded by bytes:
    ``tile_cache_bytes`` for level-0 tiles, ``upper_cache_bytes`` for the tiles above (a few at
    any size a disk holds: 16 at 1 M entries, so they stay resident whatever level 0 does).
    One writer per directory: a second one raises :class:`AuditLogError`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        origin: str,
        keyring: Any = None,
        key_name: str | None = None,
        checkpoint_every: int | None = 1024,
        flush_interval_s: float = 0.5,
        role: str = "audit",
        tile_cache_bytes: int = 16 << 20,
        upper_cache_bytes: int = 16 << 20,
    ) -> None:
        if not isinstance(origin, str) or not origin or any(c.isspace() for c in origin):
            raise AuditLogError(f"invalid audit log origin {str(origin)[:80]!r}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise AuditLogError("checkpoint_every must be at least 1")
        if not flush_interval_s > 0:
            raise AuditLogError("flush_interval_s must be positive")
        self.directory = Path(directory)
        self.origin = origin
        self.key_name = key_name or origin
        self.keyring = keyring
        self.role = role
        self.checkpoint_every = checkpoint_every
        self.flush_interval_s = float(flush_interval_s)
        self._lock = threading.RLock()
        self._flush_lock = threading.RLock()  # one flush at a time (checkpoint re-enters)
        self._signers: list[NoteSigner] | None = None
        # expanded full tiles (rows as bytes): level 0, and the levels above kept apart
        self._tiles: LRU[tuple[int, int], list[bytes]] = LRU(
            max_bytes=tile_cache_bytes, weigh=rows_weight
        )
        self._upper: LRU[tuple[int, int], list[bytes]] = LRU(
            max_bytes=upper_cache_bytes, weigh=rows_weight
        )
        self._bundles: LRU[int, list[bytes]] = LRU(max_entries=16)
        self._failing = False
        self._checkpoint: bytes | None = None
        self._checkpoint_size = -1
        self._pending: list[str] = []  # files written since the last flush (not yet fsync'd)
        self._dirty = False  # journal bytes written since the last flush
        self._tail_fd: int | None = None
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd: int | None = os.open(
            self.directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _MODE
        )
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise AuditLogError(
                f"audit log {self.directory} is open for writing elsewhere (one writer)"
            ) from None
        try:
            self._recover()
        except BaseException:
            self._release()
            raise

    # -- files -------------------------------------------------------------------------------

    def _path(self, rel: str) -> Path:
        return self.directory / rel

    def _write(self, rel: str, data: bytes, *, durable: bool = True) -> None:
        path = self._path(rel)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, data, fsync=durable, mode=_MODE)
        if not durable:
            self._pending.append(rel)

    def _read(self, rel: str) -> bytes:
        with open(self._path(rel), "rb") as f:
            return f.read(TILE_WIDTH * (MAX_ENTRY + 2) + 1)

    def _read_tile(self, rel: str) -> bytes:
        """A full tile's bytes with one ``pread`` (one more byte than a tile: too long shows)."""
        fd = os.open(self._path(rel), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, 32 * TILE_WIDTH + 1, 0)
        finally:
            os.close(fd)

    def _exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def _drop_partials(self, rel: str) -> None:
        """Delete the partial versions of a tile or bundle once the full one exists."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self._path(rel + ".p"))

    # -- recovery ----------------------------------------------------------------------------

    def _cache_for(self, tlevel: int) -> LRU[tuple[int, int], list[bytes]]:
        return self._tiles if tlevel == 0 else self._upper

    def _full_rows(self, tlevel: int, n: int) -> list[bytes]:
        """Rows 0..7 of full tile ``tlevel``/``n`` (each row one bytes of 32-byte hashes)."""
        cache = self._cache_for(tlevel)
        rows = cache.get((tlevel, n))
        if rows is None:
            try:
                data = self._read_tile(tile_path(tlevel, n))
            except FileNotFoundError:
                raise AuditLogError(f"audit log: tile {tlevel}/{n} is missing") from None
            if len(data) != 32 * TILE_WIDTH:
                raise AuditLogError(
                    f"audit log: tile {tlevel}/{n}: {len(data)} bytes, expected {32 * TILE_WIDTH}"
                )
            rows = expand_rows(data)
            cache.put((tlevel, n), rows)
        return rows

    def _tile_root(self, tlevel: int, n: int) -> bytes:
        top = self._full_rows(tlevel, n)[TILE_HEIGHT - 1]
        return node_hash(top[:32], top[32:64])

    def _ensure_bundle(self, n: int, entries: list[bytes]) -> None:
        data = encode_bundle(entries)
        rel = entries_path(n)
        try:
            ok = self._read(rel) == data
        except FileNotFoundError:
            ok = False
        if not ok:
            self._write(rel, data)
            self._bundles.discard(n)
        self._drop_partials(rel)

    def _ensure_tile(self, tlevel: int, n: int) -> None:
        """Tile ``tlevel``/``n`` must be full: recompute it from below and rewrite it when
        missing or not what the level below says."""
        if tlevel == 0:
            entries = decode_bundle(self._read(entries_path(n)), TILE_WIDTH)
            hashes = [leaf_hash(e) for e in entries]
        else:
            base = n * TILE_WIDTH
            hashes = [self._tile_root(tlevel - 1, base + i) for i in range(TILE_WIDTH)]
        data = b"".join(hashes)
        rel = tile_path(tlevel, n)
        try:
            ok = self._read(rel) == data
        except FileNotFoundError:
            ok = False
        if not ok:
            _internal.warning("audit log %s: rewriting tile %s after a crash", self.directory, rel)
            self._write(rel, data)
            self._cache_for(tlevel).discard((tlevel, n))
        self._drop_partials(rel)

    def _read_journal(self) -> tuple[int, list[bytes]]:
        """(first bundle index, entries) of the journal; a torn last record is cut off."""
        try:
            data = self._read(_TAIL)
        except FileNotFoundError:
            return 0, []
        if len(data) < _HEADER:
            return 0, []
        start = int.from_bytes(data[:_HEADER], "big")
        out: list[bytes] = []
        pos = _HEADER
        while pos + 2 <= len(data):
            n = int.from_bytes(data[pos : pos + 2], "big")
            if pos + 2 + n > len(data):
                break
            out.append(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        if pos != len(data):  # a torn last record (crash mid-write): cut off
            _internal.warning("audit log %s: cutting a torn journal record", self.directory)
        return start, out

    def _recover(self) -> None:
        start, journal = self._read_journal()
        if start and not self._exists(entries_path(start - 1)):
            raise AuditLogError(
                f"audit log {self.directory}: the journal starts at bundle {start} but bundle "
                f"{start - 1} does not exist (entries were removed)"
            )
        # every bundle the journal covers, and its tiles, rewritten from the journal's entries
        full = len(journal) // TILE_WIDTH
        bundles = start + full
        for k in range(full):
            self._ensure_bundle(start + k, journal[k * TILE_WIDTH : (k + 1) * TILE_WIDTH])
        tlevel, lo, hi = 0, start, bundles  # full tiles [lo, hi) of this level to check
        while hi:
            newest = hi - 1  # and the newest full tile of every level, whatever the journal
            for n in sorted(set(range(lo, hi)) | {newest}):
                self._ensure_tile(tlevel, n)
            lo, hi = lo >> TILE_HEIGHT, hi >> TILE_HEIGHT
            tlevel += 1
        if bundles:
            self._drop_partials(entries_path(bundles - 1))
        # the right edge of every tile level above 0, from the full tiles below
        self._edges: list[_Edge] = [_Edge(bundles)]
        tlevel, count = 1, bundles  # count: complete hashes at this tile level
        while count:
            edge = _Edge(count // TILE_WIDTH)
            for i in range(edge.index * TILE_WIDTH, count):
                edge.add(self._tile_root(tlevel - 1, i))
            self._edges.append(edge)
            count >>= TILE_HEIGHT
            tlevel += 1
        self._tail: list[bytes] = journal[full * TILE_WIDTH :]
        for e in self._tail:
            self._edges[0].add(leaf_hash(e))
        self.size = bundles * TILE_WIDTH + len(self._tail)
        # the recovered state is durable: a new journal from the first incomplete bundle
        self._journal_start = bundles
        self._journal: list[bytes] = list(self._tail)
        self._rewrite_journal()
        with contextlib.suppress(FileNotFoundError, OSError):
            self._checkpoint = self._read(_CHECKPOINT)

    def _rewrite_journal(self) -> None:
        """Replace the journal with one starting at ``_journal_start`` (durably)."""
        data = self._journal_start.to_bytes(_HEADER, "big") + encode_bundle(self._journal)
        self._write(_TAIL, data)
        old = self._tail_fd
        self._tail_fd = os.open(self._path(_TAIL), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if old is not None:
            os.close(old)
        self._dirty = False

    # -- appending ---------------------------------------------------------------------------

    def _add(self, tlevel: int, h: bytes) -> None:
        if tlevel == len(self._edges):
            self._edges.append(_Edge(0))
        edge = self._edges[tlevel]
        root = edge.add(h)
        if root is None:
            return
        rel = tile_path(tlevel, edge.index)
        self._write(rel, b"".join(edge.rows[0]), durable=False)
        self._drop_partials(rel)
        self._edges[tlevel] = _Edge(edge.index + 1)
        self._add(tlevel + 1, root)

    def _promote_full(self) -> None:
        """The tail is a full bundle: write it, then its tiles (made durable by the flush)."""
        bundle = self._edges[0].index
        rel = entries_path(bundle)
        self._write(rel, encode_bundle(self._tail), durable=False)
        self._drop_partials(rel)
        self._bundles.put(bundle, list(self._tail))
        edge = self._edges[0]
        self._write(tile_path(0, bundle), b"".join(edge.rows[0]), durable=False)
        self._drop_partials(tile_path(0, bundle))
        top = edge.rows[TILE_HEIGHT - 1]
        self._edges[0] = _Edge(bundle + 1)
        self._add(1, node_hash(top[0], top[1]))
        self._tail = []

    def append(self, entry: bytes) -> int:
        """Append one entry (at most 65535 bytes); returns its index."""
        data = bytes(entry)
        if len(data) > MAX_ENTRY:
            raise AuditLogError(f"an audit entry is at most {MAX_ENTRY} bytes, not {len(data)}")
        with self._lock:
            if self._tail_fd is None:
                raise AuditLogError("the audit log is closed")
            os.write(self._tail_fd, len(data).to_bytes(2, "big") + data)
            self._dirty = True
            self._journal.append(data)
            self._tail.append(data)
            index = self.size
            self.size += 1
            self._edges[0].add(leaf_hash(data))
            if len(self._tail) == TILE_WIDTH:
                self._promote_full()
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name=f"audit-flush {self.origin}", daemon=True
                )
                self._flusher.start()
        if self.checkpoint_every and (index + 1) % self.checkpoint_every == 0:
            self._auto_checkpoint()
        return index

    def emit(self, event: AuditEvent) -> None:
        """AuditSink: append the event's canonical JSON (never raises; a failure is logged
        once per failure streak and the event dropped)."""
        try:
            self.append(_line(event))
            self._failing = False
        except Exception as exc:
            if not self._failing:
                self._failing = True
                _internal.warning("audit log %s: append failed (%s)", self.directory, exc)

    def _flush_loop(self) -> None:
        while not self._wake.wait(self.flush_interval_s):
            try:
                self.sync()
            except Exception as exc:  # logged; the next round tries again
                _internal.warning("audit log %s: flush failed (%s)", self.directory, exc)

    def sync(self) -> None:
        """Make every appended entry and every written file durable now (the group commit:
        fsync the journal and the new files, then restart the journal after them)."""
        with self._flush_lock:
            self._sync()

    def _sync(self) -> None:
        """:meth:`sync` with ``_flush_lock`` held (lock order: ``_flush_lock``, ``_lock``)."""
        with self._lock:
            if self._tail_fd is None or (not self._dirty and not self._pending):
                return
            pending, self._pending = self._pending, []
            fd = os.dup(self._tail_fd)
            self._dirty = False
            durable_bundles = self._edges[0].index
        try:  # the slow part, while appends go on
            os.fsync(fd)
            dirs: set[Path] = set()
            for rel in pending:
                path = self._path(rel)
                with contextlib.suppress(FileNotFoundError):
                    pfd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(pfd)
                    finally:
                        os.close(pfd)
                dirs.add(path.parent)
            for d in dirs:
                with contextlib.suppress(FileNotFoundError):
                    dfd = os.open(d, os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
        finally:
            os.close(fd)
        self._restart_journal(durable_bundles)

    def _restart_journal(self, durable_bundles: int) -> None:
        """Replace the journal with one from bundle ``durable_bundles`` on. The new file is
        written and fsynced outside ``_lock`` (proofs and appends go on); under it only the
        entries appended meanwhile are added, the file renamed over the journal and the fd
        swapped; the directory is fsynced before returning (``_flush_lock`` held throughout,
        so no later flush calls anything durable before the rename is)."""
        with self._lock:
            drop = (durable_bundles - self._journal_start) * TILE_WIDTH
            if drop <= 0 or self._tail_fd is None:
                return
            keep = self._journal[drop:]
            seen = len(self._journal)
        target = self._path(_TAIL)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tail.", suffix=".tmp")
        try:
            os.fchmod(fd, _MODE)
            data = durable_bundles.to_bytes(_HEADER, "big") + encode_bundle(keep)
            if os.write(fd, data) != len(data):
                raise OSError("short write of the audit journal")
            os.fsync(fd)
            with self._lock:
                late = encode_bundle(self._journal[seen:])  # appended while we wrote
                if late and os.write(fd, late) != len(late):
                    raise OSError("short write of the audit journal")
                os.replace(tmp, target)
                tmp = ""
                new_fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                old, self._tail_fd = self._tail_fd, new_fd
                del self._journal[:drop]
                self._journal_start = durable_bundles
                if late:
                    self._dirty = True
            if old is not None:
                os.close(old)
        finally:
            os.close(fd)
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.size

    def hash_at(self, level: int, index: int) -> bytes:
        """The stored hash of the complete subtree at ``level``/``index`` (the merkle source)."""
        tlevel, r = divmod(level, TILE_HEIGHT)
        n, off = divmod(index << r, TILE_WIDTH)
        j = off >> r
        if tlevel < len(self._edges) and n == self._edges[tlevel].index:
            edge_row = self._edges[tlevel].rows[r]
            if j >= len(edge_row):
                raise AuditLogError(f"no complete subtree at level {level} index {index}")
            return edge_row[j]
        if tlevel < len(self._edges) and n < self._edges[tlevel].index:
            return self._full_rows(tlevel, n)[r][32 * j : 32 * j + 32]  # full: j is in range
        raise AuditLogError(f"no subtree at level {level} index {index}")

    def _size(self, size: int | None) -> int:
        s = self.size if size is None else size
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= self.size:
            raise AuditLogError(f"tree size {size!r} is not 0..{self.size}")
        return s

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the tree of the first ``size`` entries (default: all)."""
        with self._lock:
            s = self._size(size)
            return EMPTY_ROOT if s == 0 else tree_hash(self.hash_at, s)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The RFC 9162 inclusion proof of entry ``index`` in the tree of ``size``."""
        with self._lock:
            s = self._size(size)
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < s:
                raise AuditLogError(f"entry {index!r} is not in a tree of size {s}")
            return inclusion_proof(self.hash_at, index, s)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The RFC 9162 consistency proof from ``old_size`` to ``new_size`` (default: all)."""
        with self._lock:
            n = self._size(new_size)
            m = self._size(old_size)
            if m > n:
                raise AuditLogError(f"old size {m} is larger than new size {n}")
            return consistency_proof(self.hash_at, m, n)

    def entry(self, index: int) -> bytes:
        """Entry ``index``."""
        with self._lock:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.size:
                raise AuditLogError(f"no entry {index!r} (size {self.size})")
            bundle, off = divmod(index, TILE_WIDTH)
            if bundle == self._edges[0].index:
                return self._tail[off]
            entries = self._bundles.get(bundle)
            if entries is None:
                try:
                    entries = decode_bundle(self._read(entries_path(bundle)), TILE_WIDTH)
                except (FileNotFoundError, TileError) as exc:
                    raise AuditLogError(f"audit log: bundle {bundle}: {exc}") from None
                self._bundles.put(bundle, entries)
            return entries[off]

    # -- checkpoints -------------------------------------------------------------------------

    def _note_signers(self) -> list[NoteSigner]:
        if self._signers is None:
            if self.keyring is None:
                raise SigningKeyError("the audit log has no keyring: it cannot sign checkpoints")
            if not any(
                k.algorithm in ("ed25519", "ml-dsa-65") for k in self.keyring.keys(self.role)
            ):
                self.keyring.generate_hybrid(self.role, pq="ml-dsa-65")
            self._signers = keyring_signers(self.keyring, self.key_name, role=self.role)
        return self._signers

    def checkpoint(self) -> bytes:
        """Sync, write the partial tiles and bundle of the current size, sign and publish a
        checkpoint; returns the signed note."""
        with self._flush_lock, self._lock:  # appends wait: the checkpoint's files are durable
            signers = self._note_signers()
            self._sync()
            size = self.size
            tlevel = 0
            while (size >> (TILE_HEIGHT * tlevel)) and tlevel < len(self._edges):
                edge = self._edges[tlevel]
                width = len(edge.rows[0])
                if width:
                    rel = tile_path(tlevel, edge.index, width)
                    if not self._exists(rel):
                        self._write(rel, b"".join(edge.rows[0]))
                tlevel += 1
            if self._tail:
                rel = entries_path(self._edges[0].index, len(self._tail))
                if not self._exists(rel):
                    self._write(rel, encode_bundle(self._tail))
            body = format_checkpoint(Checkpoint(self.origin, size, self.root(size)))
            note = sign_note(body, signers)
            self._write(_CHECKPOINT, note)
            self._checkpoint, self._checkpoint_size = note, size
            return note

    def latest_checkpoint(self, *, refresh: bool = True) -> bytes | None:
        """The newest checkpoint; with ``refresh`` a new one first when entries were added."""
        if refresh and self._checkpoint_size != self.size:  # not under _lock: lock order
            try:
                return self.checkpoint()
            except SigningKeyError as exc:
                _internal.warning("audit log %s: no checkpoint: %s", self.directory, exc)
        return self._checkpoint

    def _auto_checkpoint(self) -> None:
        try:
            self.checkpoint()
        except Exception as exc:
            _internal.warning("audit log %s: checkpoint failed (%s)", self.directory, exc)

    def read_static(self, rel: str) -> bytes | None:
        """The bytes of a published file (``checkpoint`` or a tile path), None if absent."""
        if rel != _CHECKPOINT and parse_path(rel) is None:
            return None
        try:
            return self._read(rel)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    # -- closing -----------------------------------------------------------------------------

    def _release(self) -> None:
        fd = self._tail_fd
        if fd is not None:
            os.close(fd)
            self._tail_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        """Sign a last checkpoint if entries were added (and a keyring is set), make everything
        durable, stop the flusher, release the lock."""
        self._wake.set()
        flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join()
        with self._flush_lock, self._lock:
            if self._tail_fd is None:
                return
            if self.keyring is not None and self._checkpoint_size != self.size:
                self._auto_checkpoint()
            self._sync()
            self._release()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.directory)!r}, origin={self.origin!r}, size={self.size})"
