"""RegistryApp: an ASGI application serving package artifacts from a :class:`Storage`.

Per request it does, in order: path validation, ``304`` for a matching ``If-None-Match``,
a ``226 IM Used`` registry-core patch when the client names a version it holds (``A-IM:
rcdelta``), a first-download patch (method 5 EXPANDED, against the empty base) when it names
``expanded`` in ``Delta-Engines`` and one is ready, a ``dcz`` body when it offers a stored
artifact as dictionary, otherwise the full artifact -- a single ``Range`` of it (``206``),
or the whole, content-coded when that helps.
Every response carries a strong ETag (hex SHA-256 of the artifact) and RFC 9530 digests.
Wire format: docs/wire.md; limits: docs/security.md.

The app keeps its state: one :class:`~registry_core.delta.DeltaAggregator` for its lifetime
(its deflate-parameter memo makes consecutive releases cheap), one cache of patches and encoded
bodies with their digests, and a bounded queue for the work a request can cause (patches, dcz
and content codings), so anonymous clients cannot make it burn CPU for others: work beyond the
budget is answered with the full file. Storage is called off the event loop, full bodies are
streamed in pieces with the ASGI ``send`` as backpressure, and HEAD never computes anything.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import hashlib
import logging
import os
import queue as queue_mod
import re
import threading
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from .._util import LRU, SingleFlight, ThreadSingleFlight
from ..errors import InvalidArgumentError, RegistryCoreError
from ..eviction import POLICIES, make_policy
from ..flags import FeatureFlags, resolve_flags
from ..telemetry._context import span
from ..wire._delta import delta_response_headers, etag_for_sha256, parse_delta_request
from ..wire._digest import format_digest
from ._patch_store import PatchStore
from ._patches import BUSY, PatchQueue, diff_refusal
from ._ranges import UNSATISFIABLE, ByteRange, if_range_matches, parse_range
from ._storage import ArtifactInfo, DirectoryStorage, Storage, validate_path

if TYPE_CHECKING:
    from ..delta import DeltaAggregator
    from ._patch_store import RedisPatchCache

__all__ = ["RegistryApp"]

log = logging.getLogger("registry_core.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
T = TypeVar("T")

#: The reference deflate engines an archive-aware patch may need the client to reproduce.
REFERENCE_ENGINES = frozenset({"zlib", "miniz"})
#: SHA-256 of the empty byte string: the base of every first-download (EXPANDED) patch.
EMPTY_SHA256 = hashlib.sha256(b"").digest()
#: First-download patch modes: layouts whose streams the reference engines rebuild (version
#: 1), and layouts that may hold reconstructed streams too (version 2, clients naming recon).
FIRST_MODES = ("expanded", "expandedrecon")
#: The first-download mode computed after every upload: today's clients name ``recon``.
FIRST_PRECOMPUTED_MODE = "expandedrecon"
# Request fields that hold one value: a repeated one is treated as absent, not combined.
_SINGLETONS = frozenset({"range", "if-range", "available-dictionary", "content-length", "host"})
# Cached marker: computed, not worth sending.
_NOT_WORTH: tuple[bytes, str] = (b"", "")
# Files up to this size are read with their stat (one worker-thread hop).
_PREFETCH = 16 << 10
#: Where signed patch envelopes are served (docs/wire.md section 7).
ENVELOPE_PREFIX = "/.well-known/registry-core/envelopes/"
#: Longest inline ``Delta-Envelope`` value (wire/_sf.py refuses longer fields).
MAX_INLINE_ENVELOPE = 16384
_ENVELOPE_NAME = re.compile(r"([0-9a-f]{64})-([0-9a-f]{64})\.dsse\Z")


def _envelope_fits(envelope: bytes, path: str, keys: str) -> bool:
    """Whether a stored envelope (signed by this server) names ``path`` and is signed by
    exactly ``keys`` (comma-joined sorted key ids; "" = not checked)."""
    import base64
    import json

    try:
        doc = json.loads(envelope)
        statement = json.loads(base64.b64decode(doc["payload"]))
        signed_by = ",".join(sorted(str(s["keyid"]) for s in doc["signatures"]))
        return any(s.get("name") == path for s in statement["subject"]) and (
            not keys or signed_by == keys
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def fold_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request fields as one lower-cased dict, repeated list fields combined per RFC 9110
    section 5.3 (``", "``); a repeated singleton field (Range, If-Range, ...) is dropped."""
    out: dict[str, str] = {}
    repeated: set[str] = set()
    for k, v in raw:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1").strip()
        if name in out:
            repeated.add(name)
            out[name] = f"{out[name]}, {value}" if out[name] and value else out[name] or value
        else:
            out[name] = value
    for name in repeated & _SINGLETONS:
        del out[name]
    return out


async def _drain(receive: Receive, limit: int = 1 << 20) -> None:
    """Consume a request body we do not use (bounded), so the protocol state stays clean."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def split_mode(mode: str) -> tuple[str, bool, bool]:
    """A patch mode read as (kind, zstd-prefix allowed, exe transforms allowed): ``reconzexe``
    is ``("recon", True, True)``, ``archive`` is ``("archive", False, False)``; the kinds are
    ``binary``, ``archive``, ``recon`` and the first-download kinds of :data:`FIRST_MODES`."""
    exe = mode.endswith("exe")
    if exe:
        mode = mode[:-3]
    z = mode.endswith("z")
    if z:
        mode = mode[:-1]
    return mode, z, exe


class _Changed(Exception):
    """The artifact changed between its stat and its opening."""


@dataclass(frozen=True)
class _Job:
    """One precompute job: what it is (for the log), the work, its single-flight key."""

    label: str
    fn: Callable[[], None]
    once: Hashable | None = None


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    file: BinaryIO | None = None  # streamed from here: ``length`` bytes from ``offset``
    offset: int = 0
    length: int = 0


@dataclass
class _Stats:
    """What the app did, for tests, benchmarks and operators."""

    patches_served: int = 0
    patch_busy: int = 0  # requests answered in full because the work queue was full
    patch_timeouts: int = 0  # requests answered in full because the patch took too long
    patch_refusals: collections.Counter[str] = field(default_factory=collections.Counter)
    encodings_computed: int = 0
    ranges_served: int = 0
    precomputed: int = 0  # patches computed (and stored) by the precompute worker
    precompute_skipped: int = 0  # precompute jobs with nothing to do (known, refused, missing)
    precompute_dropped: int = 0  # precompute jobs not queued: the queue was full (or closed)
    patches_from_store: int = 0  # patches (and "not worth it" marks) read from the PatchStore
    patches_from_shared: int = 0  # patches (and marks) another instance computed (shared_cache)
    envelopes_signed: int = 0  # patch envelopes signed (``envelopes=``)
    first_downloads_served: int = 0  # 226 answers with an EXPANDED patch (empty base)
    first_downloads_computed: int = 0  # EXPANDED patches computed (recompress calls)
    first_downloads_plain: int = 0  # of those, nothing smaller: the plain file is served
    first_downloads_scheduled: int = 0  # computations queued by a request that found none


class _Hits:
    """Requests per existing artifact path, for the most recently requested ``max_paths``."""

    def __init__(self, max_paths: int) -> None:
        self._lru: LRU[str, int] = LRU(max_entries=max_paths)

    def add(self, path: str) -> None:
        self._lru.put(path, (self._lru.get(path) or 0) + 1)

    def __getitem__(self, path: str) -> int:
        return self._lru.get(path) or 0

    def __contains__(self, path: object) -> bool:
        return path in self._lru

    def __len__(self) -> int:
        return len(self._lru)


def _patch_store_for(
    storage: Storage, given: PatchStore | bool | None, eviction: str = "lru"
) -> PatchStore | None:
    """The app's PatchStore: the one given, or by default one in a directory's state dir
    evicting by ``eviction`` (a name of :data:`registry_core.eviction.POLICIES`)."""
    if given is False:
        return None
    if isinstance(given, PatchStore):
        return given
    if given is not None and given is not True:
        raise InvalidArgumentError(
            f"patch_store must be a PatchStore, True, False or None, got {type(given).__name__}"
        )
    if isinstance(storage, DirectoryStorage):
        from ..storage import STATE_DIR

        # the state dir's path, not its property: nothing is created until a patch is written
        return PatchStore(storage.root / STATE_DIR / "patches", policy=make_policy(eviction))
    if given is True:
        raise InvalidArgumentError(
            "patch_store=True needs a DirectoryStorage; pass a PatchStore(directory) instead"
        )
    return None


def _positive(name: str, value: Any, *, zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (value == 0 and not zero)
    ):
        raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")


class RegistryApp:
    """ASGI app serving ``storage`` (a :class:`Storage` or a directory path).

    ``flags``: resolved once here (the process-wide flags when None) into plain switches:
    QUIC_TRANSPORT (send ``alt_svc``), DELTA_AGGREGATOR (answer ``A-IM: rcdelta``),
    DELTA_STABLE (archive-aware patches), ZSTD_COMPRESSION / BROTLI_COMPRESSION (codings).
    ``alt_svc``: value of the ``Alt-Svc`` header advertising HTTP/3 (set by :func:`serve`).
    ``dictionaries``: send ``Use-As-Dictionary`` and answer ``Available-Dictionary`` with
    ``dcz`` (RFC 9842). ``patch_cache_bytes`` bounds the in-memory LRU of computed patches and
    encoded bodies; ``min_delta_saving``: a patch (or dcz body) must save this fraction of
    the full size to be sent.

    Bounds on the work one request can cause (keyword-only; docs/security.md):

    - ``max_diff_bytes`` (32 MiB): artifacts larger than this are never diffed or used as dcz
      dictionaries; their requests get the full file.
    - ``max_expanded_bytes`` (32 MiB): the server's aggregators inflate archive members only up
      to this much per artifact (``DeltaAggregator(max_expanded_size=)``); members beyond stay
      compressed in the patch. A diff takes about 6-9 x the expanded size in memory (measured
      on botocore wheels, 11.8 MB stored, 90 MB expanded: 540 MiB and 2.3 s unbounded; 32 MiB:
      210 MiB and 1.1 s, patch 446 KB instead of 345 KB).
    - ``patch_workers`` (2): threads computing patches and dcz bodies (content codings have
      one thread of their own, with the same queue bounds).
    - ``patch_queue`` (16): jobs queued or running at once; ``patch_queue_per_client`` (2): of
      those, asked for by one client address. A request whose job does not fit gets the full
      file at once (the job is not queued).
    - ``patch_timeout`` (10 s): how long a request waits for its job before it is answered in
      full (the job still finishes and its result is cached for the next request).
    - ``max_encode_bytes`` (16 MiB): larger artifacts are sent as stored, never content-coded.
    - ``verify_patches`` (True): every computed patch is applied once before it is cached, so
      a patch this platform's ``apply`` refuses is never served (R5).
    - ``chunk_size`` (256 KiB): full bodies are streamed from storage in pieces of this size
      (one worker-thread read each); an unread client holds at most one piece.
    - ``max_hit_paths`` (4096): ``hits`` (requests per existing path, which tests use to prove
      client-side coalescing) remembers only this many paths.

    ``envelopes`` (None): a signer of patch envelopes (``signing.PatchEnvelopes``), called as
    ``envelopes(target_path, target_sha256, base_sha256, patch_sha256)``. With it every patch
    computed or precomputed is signed (DSSE) and the envelope kept beside it (memory cache and
    PatchStore); a ``226`` carries it (``Delta-Envelope``, and a ``Link`` to
    ``/.well-known/registry-core/envelopes/<patch sha256>-<target sha256>.dsse``), and a patch
    whose envelope cannot be made is not sent (the full file is). docs/wire.md section 7.

    Only one patch is computed per request: the first base the client names that is a release
    of the same project (same directory, same kind, see ``_patches.diff_refusal``) older than
    the target; patches already cached for other bases are used as well.

    Patches persist (``patch_store``): a :class:`~registry_core.server._patch_store.PatchStore`
    keeps every computed patch (and every "not worth sending" result) on disk, keyed by the
    content of base and target. By default a DirectoryStorage gets one in
    ``DIR/.registry-core/patches/`` (1 GiB, evicting by ``eviction``: ``"lru"`` by default,
    ``"sieve"`` or ``"s3fifo"``, see registry_core.eviction); ``patch_store=False`` turns it
    off; another store gets none unless given one. A request looks in the memory cache, then
    in the store, and only then computes (within the bounds above).

    Several instances share patches through ``shared_cache`` (a
    :class:`~registry_core.server._patch_store.RedisPatchCache`): after the memory cache and
    the store, a computation (a request's or the precompute worker's) takes another
    instance's result from Redis -- applied to the base once and compared with the target's
    SHA-256 before it is kept (with ``verify_patches``) -- or computes under the pair's lease
    and shares it, so N instances compute each patch once (``stats.patches_from_shared``, the
    cache's own ``stats``). HEAD does not read Redis (it never computes). Redis down: patches
    are computed locally. The app does not close the shared cache (its owner does).

    :meth:`precompute` computes patches before anyone asks (the index calls it on upload, with
    the previous releases as bases): one low-priority worker thread of its own, behind a
    bounded queue of ``precompute_queue`` (64) jobs; a job that does not fit is dropped and
    counted, the caller never waits. :meth:`precompute_idle` waits for the queue to drain.

    First downloads (``first_downloads``, on by default; also needs DELTA_AGGREGATOR and
    DELTA_STABLE): a client that holds nothing and names ``expanded`` (with ``zlib`` and
    ``miniz``) in ``Delta-Engines`` gets ``226`` with the artifact's EXPANDED patch
    (``DeltaAggregator.recompress``, method 5, ``Delta-Base`` the SHA-256 of the empty string)
    when one is ready and smaller than the file; mode ``expandedrecon`` when it also names
    ``recon``, else ``expanded`` (streams only the reference engines rebuild). The patch is
    computed once per file in the precompute worker -- after an upload
    (:meth:`precompute_first`, which the index calls) or, for a file that has none yet, when
    a request finds none: that request is answered ``200`` at once and the computation queued
    (one per file and mode, within ``precompute_queue``); it is never computed on the request
    path. Each result is verified (applied once), cached, stored in the PatchStore as
    ``(sha256(b""), target, mode)``; "not smaller" is remembered there as well. docs/wire.md
    section 3, "First downloads". ``max_first_expanded_bytes`` (128 MiB): the expanded form
    a first-download patch may reach (streams beyond stay compressed in it); larger than
    ``max_expanded_bytes`` because one recompression needs far less memory than a diff and
    runs on the single precompute worker (measured: the botocore 1.34.3 wheel, 11.8 MB, 91.7
    MB expanded: patch 50.4 % of the wheel, 375 MiB peak RSS; capped at 32 MiB: 85.7 %).
    With ``envelopes`` a first-download patch is signed when
    it is first served (not in the background), then kept like any envelope.
    """

    def __init__(
        self,
        storage: Storage | str | os.PathLike[str],
        *,
        flags: FeatureFlags | None = None,
        alt_svc: str | None = None,
        patch_cache_bytes: int = 64 << 20,
        min_delta_saving: float = 0.1,
        cache_control: str = "public, max-age=60",
        dictionaries: bool = True,
        max_diff_bytes: int = 32 << 20,
        max_expanded_bytes: int = 32 << 20,
        patch_workers: int = 2,
        patch_queue: int = 16,
        patch_queue_per_client: int = 2,
        patch_timeout: float = 10.0,
        max_encode_bytes: int = 16 << 20,
        verify_patches: bool = True,
        chunk_size: int = 256 << 10,
        max_hit_paths: int = 4096,
        patch_store: PatchStore | bool | None = None,
        eviction: str = "lru",
        precompute_queue: int = 64,
        envelopes: Callable[[str, bytes, bytes, bytes], bytes] | None = None,
        shared_cache: RedisPatchCache | None = None,
        first_downloads: bool = True,
        max_first_expanded_bytes: int = 128 << 20,
    ) -> None:
        for name, value in (
            ("patch_cache_bytes", patch_cache_bytes),
            ("max_diff_bytes", max_diff_bytes),
            ("max_expanded_bytes", max_expanded_bytes),
            ("patch_workers", patch_workers),
            ("patch_queue", patch_queue),
            ("patch_queue_per_client", patch_queue_per_client),
            ("patch_timeout", patch_timeout),
            ("chunk_size", chunk_size),
            ("max_hit_paths", max_hit_paths),
            ("precompute_queue", precompute_queue),
            ("max_first_expanded_bytes", max_first_expanded_bytes),
        ):
            _positive(name, value)
        _positive("max_encode_bytes", max_encode_bytes, zero=True)
        if not 0.0 <= min_delta_saving < 1.0:
            raise InvalidArgumentError(
                f"min_delta_saving must be in [0, 1), got {min_delta_saving}"
            )
        if not isinstance(storage, Storage):
            storage = DirectoryStorage(storage)
        self.storage: Storage = storage
        if eviction not in POLICIES:
            raise InvalidArgumentError(
                f"eviction must be one of {', '.join(POLICIES)}, not {eviction!r:.40}"
            )
        self.patch_store: PatchStore | None = _patch_store_for(storage, patch_store, eviction)
        if envelopes is not None and not callable(envelopes):
            raise InvalidArgumentError("envelopes must be callable (e.g. signing.PatchEnvelopes)")
        self.envelopes = envelopes
        if shared_cache is not None and not callable(getattr(shared_cache, "get_or_compute", None)):
            raise InvalidArgumentError(
                f"shared_cache must be a RedisPatchCache, got {type(shared_cache).__name__}"
            )
        self.shared_cache = shared_cache
        self.first_downloads = bool(first_downloads)
        resolved = resolve_flags(flags)
        self.flags = resolved
        self.quic = resolved.is_enabled("QUIC_TRANSPORT")
        self.deltas = resolved.is_enabled("DELTA_AGGREGATOR")
        self.archive_aware = resolved.is_enabled("DELTA_STABLE")
        self.zstd = resolved.is_enabled("ZSTD_COMPRESSION")
        self.brotli = resolved.is_enabled("BROTLI_COMPRESSION")
        self.alt_svc = alt_svc
        self.cache: LRU[Hashable, tuple[bytes, str]] = LRU(
            max_entries=1 << 16,
            max_bytes=patch_cache_bytes,
            weigh=lambda v: len(v[0]) + len(v[1]) + 256,
        )
        self.min_delta_saving = min_delta_saving
        self.cache_control = cache_control
        self.dictionaries = dictionaries
        self.max_diff_bytes = max_diff_bytes
        self.max_expanded_bytes = max_expanded_bytes
        self.max_first_expanded_bytes = max_first_expanded_bytes
        self.patch_timeout = float(patch_timeout)
        self.max_encode_bytes = max_encode_bytes
        self.verify_patches = verify_patches
        self.chunk_size = chunk_size
        self.queue = PatchQueue(
            workers=patch_workers, max_pending=patch_queue, per_client=patch_queue_per_client
        )
        # content codings (at most max_encode_bytes, well under a second each) have their own
        # worker, so a legitimate download never waits behind somebody's diffs
        self.encode_queue = PatchQueue(
            workers=1, max_pending=patch_queue, per_client=patch_queue_per_client
        )
        self.hits = _Hits(max_hit_paths)
        self.stats = _Stats()
        self.patches_computed = 0
        self._count_lock = threading.Lock()
        self._aggregators: dict[str, DeltaAggregator] = {}
        self._compressors: dict[tuple[str, int], Any] = {}
        self._offer = [
            c for c, on in (("zstd", self.zstd), ("br", self.brotli), ("gzip", True)) if on
        ]
        self._blocking = not getattr(storage, "nonblocking", False)
        self._stat_flight: SingleFlight[tuple[ArtifactInfo | None, bytes | None]] = SingleFlight()
        # request patch workers and the precompute worker share one computation per pair
        self._patch_flight: ThreadSingleFlight[tuple[bytes, str]] = ThreadSingleFlight()
        # the precompute worker: one thread, started on first use, stopped by close()
        self.precompute_queue = int(precompute_queue)
        self._pre_lock = threading.Lock()
        self._pre_queue: queue_mod.Queue[_Job | None] | None = None
        self._pre_once: set[Hashable] = set()  # jobs queued or running that run once at a time
        self._pre_stop = threading.Event()
        self._pre_pending = 0  # jobs queued or running
        self._pre_idle = threading.Event()
        self._pre_idle.set()

    # -- long-lived state ------------------------------------------------------------------

    @property
    def aggregator(self) -> DeltaAggregator:
        """The app's aggregator for today's clients (archive-aware per DELTA_STABLE, with
        deflate reconstruction), kept for its lifetime."""
        return self._aggregator(self._default_mode)

    @property
    def _default_mode(self) -> str:
        return "reconz" if self.archive_aware else "binaryz"

    def _mode_for(self, engines: Any) -> str:
        """The patch mode a client gets from what it names in ``Delta-Engines``.

        The base: ``binary`` when DELTA_STABLE is off or the client does not reproduce the
        reference engines; ``recon`` when it also names ``recon`` (it rebuilds reconstructed
        deflate streams: layout version 2); ``archive`` for the reference engines only, or a
        client that says nothing (layout version 1, what every earlier client reads). A ``z``
        is appended when it names ``zstd-prefix`` (it applies ZSTD_PREFIX patches, method 4),
        then ``exe`` when it names ``exe`` (it inverts executable transforms: EXEC sections);
        without it the aggregator runs with ``exe=False``. Each mode is computed and cached
        apart (``reconzexe``, ``reconz``, ``archiveexe``, ...)."""
        names = {e.lower() for e in engines} if engines is not None else set()
        z = "z" if "zstd-prefix" in names else ""
        x = "exe" if "exe" in names else ""
        if not self.archive_aware:
            return "binary" + z + x
        if engines is None:
            return "archive"
        if not names >= REFERENCE_ENGINES:
            return "binary" + z + x
        return ("recon" if "recon" in names else "archive") + z + x

    def _first_mode_for(self, engines: Any) -> str | None:
        """The first-download mode a client gets, or None when it gets none: it must name
        ``expanded`` and the reference engines (every expanded layout needs them); it gets
        ``expandedrecon`` (layouts may hold reconstructed streams) when it names ``recon``,
        else ``expanded``. ``exe`` does not matter: EXPANDED patches carry no EXEC section."""
        if not (self.first_downloads and self.deltas and self.archive_aware) or engines is None:
            return None
        names = {e.lower() for e in engines}
        if "expanded" not in names or not names >= REFERENCE_ENGINES:
            return None
        return "expandedrecon" if "recon" in names else "expanded"

    def _aggregator(self, mode: str) -> DeltaAggregator:
        """One aggregator per patch mode (:func:`split_mode`: ``binary``, ``archive``,
        ``recon``, each with or without ``z`` (ZSTD_PREFIX allowed) and ``exe`` (executable
        transforms allowed); ``expanded`` and ``expandedrecon`` for first downloads)."""
        agg = self._aggregators.get(mode)
        if agg is None:
            from ..delta import DeltaAggregator

            kind, z, exe = split_mode(mode)
            with self._count_lock:
                agg = self._aggregators.setdefault(
                    mode,
                    DeltaAggregator(
                        archive_aware=kind != "binary",
                        reconstruct=kind in ("recon", "expandedrecon"),
                        prefix=z,
                        # every client naming `expanded` reads EXEC sections in EXPANDED patches
                        exe=exe or kind in FIRST_MODES,
                        max_expanded_size=self.max_first_expanded_bytes
                        if kind in FIRST_MODES
                        else self.max_expanded_bytes,
                    ),
                )
        return agg

    def _compressor(self, coding: str, level: int) -> Any:
        comp = self._compressors.get((coding, level))
        if comp is None:
            from ..compress import Compressor

            comp = Compressor(coding, level, flags=self.flags)
            self._compressors[(coding, level)] = comp
        return comp

    def close(self) -> None:
        """Stop the patch workers and the precompute worker (also done at ASGI lifespan
        shutdown). Queued precompute jobs are dropped; a running one finishes. A later
        :meth:`precompute` starts a new worker."""
        self.queue.close()
        self.encode_queue.close()
        with self._pre_lock:
            q, self._pre_queue = self._pre_queue, None
            self._pre_stop.set()
            if q is not None:
                while True:
                    try:
                        job = q.get_nowait()
                    except queue_mod.Empty:
                        break
                    if job is not None:
                        self._pre_once.discard(job.once)
                        self._pre_pending -= 1
                q.put_nowait(None)  # wakes the worker, which ends
            if self._pre_pending == 0:
                self._pre_idle.set()

    # -- precompute ------------------------------------------------------------------------

    def precompute(self, target_path: str, base_paths: Sequence[str]) -> None:
        """Compute and keep the patches ``base -> target`` for each base, in the background.

        Returns at once (thread-safe, fine on the event loop: no I/O here). Each pair is one
        job for the low-priority precompute worker; a job that does not fit in the queue is
        dropped (``stats.precompute_dropped``). The worker skips pairs the server would never
        serve (``_patches.diff_refusal``; DELTA_AGGREGATOR off) or already has (memory cache
        or store), computes the others in the mode a default client gets (archive-aware when
        DELTA_STABLE is on, else binary; see :meth:`_precompute_modes`), verifies each patch
        by applying it once, and caches and stores the result (``stats.precomputed``).
        """
        if isinstance(base_paths, (str, bytes)):
            raise InvalidArgumentError("base_paths must be a sequence of paths, not one string")
        for base_path in base_paths:
            t, b = str(target_path), str(base_path)
            self._enqueue(f"{t} from {b}", functools.partial(self._precompute_one, t, b))

    def precompute_first(self, target_path: str, mode: str = FIRST_PRECOMPUTED_MODE) -> None:
        """Compute and keep ``target_path``'s first-download patch (``mode``: one of
        :data:`FIRST_MODES`) in the background; returns at once, like :meth:`precompute`.

        The index calls it after every upload. The worker skips a file it would never serve
        one for (first downloads, DELTA_AGGREGATOR or DELTA_STABLE off, over
        ``max_diff_bytes``) or already has one for (memory cache or store), and otherwise
        calls ``DeltaAggregator.recompress``, applies the patch once, and caches and stores
        it (or "plain" when nothing smaller came out)."""
        if mode not in FIRST_MODES:
            raise InvalidArgumentError(f"mode must be one of {', '.join(FIRST_MODES)}")
        path = str(target_path)
        self._enqueue(
            f"first download of {path}",
            functools.partial(self._first_one, path, mode, None),
            once=("first", path, mode),
        )

    def precompute_idle(self, timeout: float | None = None) -> bool:
        """Wait until no precompute job is queued or running; False if ``timeout`` passed
        first (an event, set by the worker: no polling)."""
        return self._pre_idle.wait(timeout)

    def _enqueue(self, label: str, fn: Callable[[], None], once: Hashable | None = None) -> bool:
        """Queue ``fn`` for the precompute worker; False when it was dropped (queue full) or,
        with ``once``, a job with that key is already queued or running (single flight)."""
        with self._pre_lock:
            if once is not None and once in self._pre_once:
                return False
            q = self._pre_queue
            if q is None:
                q = self._pre_queue = queue_mod.Queue(maxsize=self.precompute_queue + 1)
                self._pre_stop = threading.Event()
                threading.Thread(
                    target=self._precompute_worker,
                    args=(q, self._pre_stop),
                    name="registry-core-precompute",
                    daemon=True,
                ).start()
            if q.qsize() >= self.precompute_queue:  # one slot is kept for close()'s wake-up
                with self._count_lock:
                    self.stats.precompute_dropped += 1
                return False
            if once is not None:
                self._pre_once.add(once)
            self._pre_pending += 1
            self._pre_idle.clear()
            q.put_nowait(_Job(label, fn, once))
            return True

    def _precompute_worker(self, q: queue_mod.Queue[_Job | None], stop: threading.Event) -> None:
        # Linux nices a thread on its own: requests' patch workers go first.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            job = q.get()
            if job is None:
                return
            try:
                if not stop.is_set():
                    job.fn()
            except Exception as exc:  # a failed optimisation is logged, never raised
                log.warning("precompute %s failed: %r", job.label, exc)
            finally:
                with self._pre_lock:
                    self._pre_once.discard(job.once)
                    self._pre_pending -= 1
                    if self._pre_pending == 0:
                        self._pre_idle.set()

    def _precompute_modes(self) -> list[str]:
        """The modes precomputed: the one today's clients are served.

        registry-core clients reproduce the reference deflate engines and reconstructed
        streams and apply ZSTD_PREFIX patches, so with DELTA_STABLE on they get ``reconz``
        patches; earlier clients (``archive``) and binary patches (clients that name other
        engines) are computed on demand. Whether a binary diff is cheap is not known before it
        is done (measured:
        botocore 1.34.2 -> 1.34.3, 11.8 MB, 0.6 s for a 4 % patch; zstandard 0.22 -> 0.23,
        5.4 MB, 6.7 s for a 98 % patch, not worth sending), so binary patches are left to the
        request path (computed on demand within its bounds, then stored like any other).
        """
        return [self._default_mode]

    def _precompute_one(self, target_path: str, base_path: str) -> None:
        """In the precompute worker: one pair, in each precomputed mode."""
        tpath, bpath = validate_path(target_path), validate_path(base_path)
        target = self.storage.stat(tpath) if tpath is not None else None
        base = self.storage.stat(bpath) if bpath is not None else None
        if (
            not self.deltas
            or target is None
            or base is None
            or diff_refusal(base, target, self.max_diff_bytes) is not None
        ):
            with self._count_lock:
                self.stats.precompute_skipped += 1
            return
        for mode in self._precompute_modes():
            key = ("patch", base.sha256, target.sha256, mode)
            if key in self.cache or (
                self.patch_store is not None
                and self.patch_store.get(base.sha256, target.sha256, mode) is not None
            ):
                with self._count_lock:
                    self.stats.precompute_skipped += 1
                continue
            self._compute_patch(key, base, target, mode, verify=True)
            with self._count_lock:
                self.stats.precomputed += 1

    # -- first downloads (EXPANDED patches against the empty base) ---------------------------

    def _first_one(self, path: str, mode: str, sha256: bytes | None) -> None:
        """In the precompute worker: ``path``'s first-download patch in ``mode``, unless it
        is known already or would never be served. ``sha256``: the content the request that
        queued it saw (a file replaced since is left to its own next request)."""
        p = validate_path(path)
        info = self.storage.stat(p) if p is not None else None
        key = ("patch", EMPTY_SHA256, info.sha256 if info else b"", mode)
        if (
            info is None
            or not (self.first_downloads and self.deltas and self.archive_aware)
            or (sha256 is not None and info.sha256 != sha256)
            or not 0 < info.size <= self.max_diff_bytes
            or key in self.cache
            or (
                self.patch_store is not None
                and self.patch_store.get(EMPTY_SHA256, info.sha256, mode) is not None
            )
        ):
            with self._count_lock:
                self.stats.precompute_skipped += 1
            return
        self._patch_flight.do(key, lambda: self._compute_first(key, info, mode))

    def _compute_first(self, key: Hashable, info: ArtifactInfo, mode: str) -> tuple[bytes, str]:
        """Recompress, verify and keep one first-download patch (in the precompute worker).
        Kept as "plain" (``b""``) when the patch does not save ``min_delta_saving`` of the file; a
        failure is cached in memory as plain but not stored (it may not happen again)."""
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        result, state = _NOT_WORTH, "failed"
        with span("patch.compute", **{"patch.mode": mode, "patch.target": info.path}) as sp:
            try:
                new = self.storage.read(info.path)
                if len(new) != info.size or hashlib.sha256(new).digest() != info.sha256:
                    sp.set_attribute("patch.outcome", "changed")
                    return _NOT_WORTH  # its next request stats (and hashes) it again
                agg = self._aggregator(mode)
                patch = agg.recompress(new)
                with self._count_lock:
                    self.stats.first_downloads_computed += 1
                state = "settled"
                # Like deltas: only a real saving is worth the client's rebuild (an sdist at
                # 94.7 % of its bytes costs more time to rebuild than it saves on the wire).
                if patch is not None and len(patch) <= len(new) * (1 - self.min_delta_saving):
                    if not self.verify_patches or (
                        hashlib.sha256(agg.apply(b"", patch)).digest() == info.sha256
                    ):
                        result = (patch, format_digest(patch))
                    else:
                        state = "failed"
                if not result[0]:
                    with self._count_lock:
                        self.stats.first_downloads_plain += 1
                sp.set_attribute("patch.outcome", "patch" if result[0] else "not_worth")
                sp.set_attribute("patch.bytes", len(result[0]))
            except Exception as exc:  # a failed optimisation never fails the download
                sp.set_attribute("patch.outcome", "failed")
                log.warning(
                    "first-download patch of %s not served: %r",
                    info.path,
                    exc,
                    exc_info=not isinstance(exc, (RegistryCoreError, MemoryError, OSError)),
                )
                result, state = _NOT_WORTH, "failed"
        self.cache.put(key, result)
        if state == "settled" and self.patch_store is not None:
            self.patch_store.put(EMPTY_SHA256, info.sha256, mode, result[0])
        # with ``envelopes``, signed when first served (then kept like any envelope): files
        # nobody downloads fresh cost no signature
        return result

    def _schedule_first(self, info: ArtifactInfo, mode: str) -> None:
        """Queue the first-download patch of a file that has none yet (once per content and
        mode; dropped when the precompute queue is full: a later request queues it again)."""
        if self._enqueue(
            f"first download of {info.path}",
            functools.partial(self._first_one, info.path, mode, info.sha256),
            once=("first", info.sha256, mode),
        ):
            with self._count_lock:
                self.stats.first_downloads_scheduled += 1

    async def _first_download(
        self, method: str, info: ArtifactInfo, mode: str
    ) -> tuple[bytes, str] | None:
        """The ready first-download patch (memory cache, then store) or None; a GET that finds
        nothing queues its computation and gets the plain file (HEAD never queues work)."""
        if not 0 < info.size <= self.max_diff_bytes:
            return None
        key = ("patch", EMPTY_SHA256, info.sha256, mode)
        hit = self.cache.get(key)
        if hit is None and self.patch_store is not None:
            hit = await asyncio.to_thread(self._first_from_store, key, info, mode)
        if hit is not None:
            return hit if hit[0] else None
        if method == "GET":
            self._schedule_first(info, mode)
        return None

    def _first_from_store(
        self, key: Hashable, info: ArtifactInfo, mode: str
    ) -> tuple[bytes, str] | None:
        """The stored first-download patch (``b""``: plain) or None (in a thread); a stored
        one not smaller than the file counts as plain."""
        assert self.patch_store is not None
        data = self.patch_store.get(EMPTY_SHA256, info.sha256, mode)
        if data is None:
            return None
        with self._count_lock:
            self.stats.patches_from_store += 1
        result = (data, format_digest(data)) if data and len(data) < info.size else _NOT_WORTH
        self.cache.put(key, result)
        return result

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """Storage calls run in a worker thread unless the store says it never blocks."""
        if self._blocking:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers = fold_headers(scope["headers"])
        method = scope["method"]
        if method not in ("GET", "HEAD") or headers.get("content-length", "0") != "0":
            await _drain(receive)
        client = (scope.get("client") or ("-",))[0]
        resp = await self._respond(method, scope["path"], headers, client)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": [
                        (k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers
                    ],
                }
            )
            if method == "HEAD":
                await send({"type": "http.response.body", "body": b""})
            elif resp.file is None:
                await send({"type": "http.response.body", "body": resp.body})
            else:
                await self._stream(resp, send)
        finally:
            if resp.file is not None:
                await self._io(resp.file.close)

    async def _stream(self, resp: _Response, send: Send) -> None:
        """Send ``resp.length`` bytes of ``resp.file`` in ``chunk_size`` pieces; each ``send``
        returns once the server has taken the piece, so unread clients hold one piece each."""
        f = resp.file
        assert f is not None
        left = resp.length
        if resp.offset:
            await self._io(f.seek, resp.offset)
        while left > 0:
            piece = await self._io(f.read, min(self.chunk_size, left))
            if not piece:
                raise RuntimeError(f"artifact shrank while being sent ({left} bytes missing)")
            left -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": left > 0})
            del piece
        if resp.length == 0:
            await send({"type": "http.response.body", "body": b""})

    # -- request handling (transport independent) -------------------------------------------

    async def handle(
        self, method: str, raw_path: str, headers: dict[str, str], client: str = "-"
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer one request: returns (status, headers, body), the body read whole (for tests
        and embedders; the ASGI entry point streams it instead)."""
        resp = await self._respond(
            method, raw_path, {k.lower(): v for k, v in headers.items()}, client
        )
        body = resp.body if method != "HEAD" else b""
        if resp.file is not None:
            try:
                if method != "HEAD":
                    if resp.offset:
                        await self._io(resp.file.seek, resp.offset)
                    body = await self._io(resp.file.read, resp.length)
            finally:
                await self._io(resp.file.close)
        return resp.status, resp.headers, body

    async def _respond(
        self, method: str, raw_path: str, headers: dict[str, str], client: Hashable
    ) -> _Response:
        """One answer; an artifact replaced while being answered is looked at once more."""
        for _ in range(2):
            try:
                return await self._answer(method, raw_path, headers, client)
            except _Changed:
                continue
        return _Response(503, [("retry-after", "1"), ("content-length", "0")])

    async def _answer(
        self, method: str, raw_path: str, headers: dict[str, str], client: Hashable
    ) -> _Response:
        common: list[tuple[str, str]] = []
        if self.alt_svc and self.quic:
            common.append(("alt-svc", self.alt_svc))
        if method not in ("GET", "HEAD"):
            return _Response(405, [*common, ("allow", "GET, HEAD"), ("content-length", "0")])
        if self.envelopes is not None and raw_path.startswith(ENVELOPE_PREFIX):
            return await self._serve_envelope(raw_path, common)
        path = validate_path(raw_path)
        info, small = await self._stat(path) if path is not None else (None, None)
        if info is None:
            msg = b"not found\n"
            return _Response(
                404,
                [
                    *common,
                    ("content-type", "text/plain; charset=utf-8"),
                    ("content-length", str(len(msg))),
                ],
                msg,
            )
        self.hits.add(raw_path)
        etag = etag_for_sha256(info.sha256)
        common += [("etag", etag), ("cache-control", self.cache_control)]
        ask = parse_delta_request(headers)
        inm = headers.get("if-none-match", "").strip()
        if inm == "*" or any((t[2:] if t.startswith("W/") else t) == etag for t in ask.etags):
            return _Response(304, [*common, ("vary", "a-im, if-none-match, accept-encoding")])
        repr_digest = format_digest(digests={"sha-256": info.sha256})
        rng = None
        if (
            method == "GET"
            and "range" in headers
            and if_range_matches(headers.get("if-range"), etag)
        ):
            rng = parse_range(headers["range"], info.size)
        if rng is UNSATISFIABLE:
            return _Response(
                416,
                [
                    *common,
                    ("content-range", f"bytes */{info.size}"),
                    ("accept-ranges", "bytes"),
                    ("content-length", "0"),
                ],
            )
        if isinstance(rng, ByteRange):
            return await self._ranged(info, rng, common, repr_digest)
        if ask.wants_rcdelta and self.deltas:
            mode = self._mode_for(ask.engines)
            patch = await self._patch(method, ask.base_sha256s()[:32], info, mode, client)
            if patch is None:  # nothing from a base the client holds: a first download?
                first_mode = self._first_mode_for(ask.engines)
                first = None
                if first_mode is not None:
                    first = await self._first_download(method, info, first_mode)
                patch = (EMPTY_SHA256, first) if first is not None else None
            signed: list[tuple[str, str]] | None = []
            if patch is not None and self.envelopes is not None:
                signed = await self._envelope_headers(info, patch[0], patch[1])
            if patch is not None and signed is not None:
                base_sha, (body, digest) = patch
                if base_sha == EMPTY_SHA256:
                    self.stats.first_downloads_served += 1
                else:
                    self.stats.patches_served += 1
                hdrs = delta_response_headers(etag_for_sha256(base_sha), etag, repr_digest)
                return _Response(
                    226,
                    [
                        *common[:-2],
                        *hdrs.items(),
                        *signed,
                        ("content-length", str(len(body))),
                        ("content-digest", digest),
                    ],
                    body,
                )
        dcz = await self._dcz(method, headers, info, client)
        if dcz is not None:
            body, digest = dcz
            return _Response(
                200,
                [
                    *common,
                    ("content-type", info.content_type),
                    ("content-encoding", "dcz"),
                    ("vary", "accept-encoding, available-dictionary, a-im, if-none-match"),
                    ("content-length", str(len(body))),
                    ("repr-digest", digest),
                    ("content-digest", digest),
                    *self._use_as_dictionary(info),
                ],
                body,
            )
        out = [
            *common,
            ("content-type", info.content_type),
            ("vary", "accept-encoding, a-im, if-none-match"),
            ("accept-ranges", "bytes"),
            *self._use_as_dictionary(info),
        ]
        encoded = await self._encoded(method, headers, info, client)
        if encoded is not None:
            coding, (body, digest) = encoded
            # RFC 9530: the digests are of the encoded representation
            return _Response(
                200,
                [
                    *out,
                    ("content-encoding", coding),
                    ("content-length", str(len(body))),
                    ("repr-digest", digest),
                    ("content-digest", digest),
                ],
                body,
            )
        if method != "GET":
            f, body = None, b""
        elif small is not None:  # read with the stat
            f, body = None, small
        elif info.size <= self.chunk_size:  # one worker-thread hop: open, read, close
            f, body = None, await self._io(self._read_piece, info, 0, info.size)
        else:
            f, body = await self._open(info), b""
        return _Response(
            200,
            [
                *out,
                ("content-length", str(info.size)),
                ("repr-digest", repr_digest),
                ("content-digest", repr_digest),
            ],
            body,
            file=f,
            length=info.size,
        )

    # -- storage ---------------------------------------------------------------------------

    async def _stat(self, path: str) -> tuple[ArtifactInfo | None, bytes | None]:
        """The artifact's metadata and, for small files, its bytes: one worker-thread hop."""
        if not self._blocking:
            return self.storage.stat(path), None
        # concurrent first requests for one large file hash it once
        return await self._stat_flight.do(path, lambda: asyncio.to_thread(self._stat_small, path))

    def _stat_small(self, path: str) -> tuple[ArtifactInfo | None, bytes | None]:
        info = self.storage.stat(path)
        if info is None or info.size > _PREFETCH:
            return info, None
        try:
            return info, self._read_piece(info, 0, info.size)
        except (_Changed, OSError):
            return info, None  # read again (and checked again) when the body is sent

    async def _open(self, info: ArtifactInfo) -> BinaryIO:
        """The artifact opened for streaming; raises _Changed if it is no longer ``info``."""
        return await self._io(self._open_checked, info)

    def _open_checked(self, info: ArtifactInfo) -> BinaryIO:
        opener = getattr(self.storage, "open", None)
        if opener is None:  # a store with the three protocol methods only: read whole
            import io

            try:
                data = self.storage.read(info.path)
            except FileNotFoundError:
                raise _Changed(info.path) from None
            if len(data) != info.size:
                raise _Changed(info.path)
            return io.BytesIO(data)
        try:
            f: BinaryIO = opener(info.path)
        except FileNotFoundError:
            raise _Changed(info.path) from None  # removed since stat: stat again (404)
        try:
            st = os.fstat(f.fileno())
        except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
            return f  # not a real file: the store answers for its consistency
        if st.st_size != info.size or (
            info.mtime_ns is not None and st.st_mtime_ns != info.mtime_ns
        ):
            f.close()
            raise _Changed(info.path)  # replaced between stat and open: stat again
        return f

    def _read_piece(self, info: ArtifactInfo, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of the artifact, opened and closed here (a thread)."""
        f = self._open_checked(info)
        try:
            if offset:
                f.seek(offset)
            data = f.read(length)
        finally:
            f.close()
        if len(data) != length:
            raise _Changed(info.path)
        return data

    async def _ranged(
        self, info: ArtifactInfo, rng: ByteRange, common: list[tuple[str, str]], repr_digest: str
    ) -> _Response:
        self.stats.ranges_served += 1
        if rng.length <= self.chunk_size:  # pip's metadata reads: one worker-thread hop
            f, body = None, await self._io(self._read_piece, info, rng.start, rng.length)
        else:
            f, body = await self._open(info), b""
        return _Response(
            206,
            [
                *common,
                ("content-type", info.content_type),
                ("content-range", rng.content_range()),
                ("content-length", str(rng.length)),
                ("accept-ranges", "bytes"),
                ("vary", "accept-encoding, a-im, if-none-match"),
                ("repr-digest", repr_digest),
                *self._use_as_dictionary(info),
            ],
            body,
            file=f,
            offset=rng.start,
            length=rng.length,
        )

    # -- patches -----------------------------------------------------------------------------

    async def _patch(
        self, method: str, bases: list[bytes], target: ArtifactInfo, mode: str, client: Hashable
    ) -> tuple[bytes, tuple[bytes, str]] | None:
        """(base, (patch, digest)): cached or computed from one of ``bases``, or None."""
        bases = [b for b in bases if b != target.sha256]
        for base in bases:  # any cached patch will do, whatever its position
            hit = self.cache.get(("patch", base, target.sha256, mode))
            if hit is not None and hit[0]:
                return base, hit
        todo = [b for b in bases if ("patch", b, target.sha256, mode) not in self.cache]
        if todo and self.patch_store is not None:  # then the store (reading is not computing)
            stored = await asyncio.to_thread(self._from_store, todo, target, mode)
            if stored is not None:
                return stored
            todo = [b for b in todo if ("patch", b, target.sha256, mode) not in self.cache]
        if method != "GET":
            return None  # HEAD never computes
        if not todo:
            return None
        picked = await self._io(self._pick_base, todo, target)
        if picked is None:
            return None
        base_sha, base_info = picked
        key = ("patch", base_sha, target.sha256, mode)
        # the worker thread runs in this request's context, so its spans nest under the request
        ctx = contextvars.copy_context()
        result = await self._queued(
            key, client, lambda: ctx.run(self._compute_patch, key, base_info, target, mode)
        )
        if result is None or not result[0]:
            return None
        return base_sha, result

    def _from_store(
        self, bases: list[bytes], target: ArtifactInfo, mode: str
    ) -> tuple[bytes, tuple[bytes, str]] | None:
        """(base, (patch, digest)) for the first base the store has a patch from (in a thread);
        what it holds for the bases before (a "not worth it") is cached in memory on the way.
        A stored patch that does not save ``min_delta_saving`` (stored by a server configured
        otherwise) counts as not worth sending."""
        assert self.patch_store is not None
        for base in bases:
            data = self.patch_store.get(base, target.sha256, mode)
            if data is None:
                continue
            with self._count_lock:
                self.stats.patches_from_store += 1
            if len(data) > target.size * (1 - self.min_delta_saving):
                data = b""
            result = (data, format_digest(data)) if data else _NOT_WORTH
            self.cache.put(("patch", base, target.sha256, mode), result)
            if data:
                return base, result
        return None

    def _pick_base(
        self, bases: list[bytes], target: ArtifactInfo
    ) -> tuple[bytes, ArtifactInfo] | None:
        """The first base the store holds that may be diffed against ``target`` (in a thread)."""
        for base in bases:
            path = self.storage.find_by_sha256(base)
            if path is None:
                self._refuse("unknown base")
                continue
            info = self.storage.stat(path)
            if info is None or info.sha256 != base:
                continue
            why = diff_refusal(info, target, self.max_diff_bytes)
            if why is None:
                return base, info
            self._refuse(why)
        return None

    def _refuse(self, why: str) -> None:
        with self._count_lock:  # called from worker threads
            self.stats.patch_refusals[why] += 1

    async def _queued(
        self,
        key: Hashable,
        client: Hashable,
        job: Callable[[], tuple[bytes, str]],
        queue: PatchQueue | None = None,
    ) -> tuple[bytes, str] | None:
        """Run ``job`` through a bounded queue; None when it did not fit or took too long."""
        queue = queue or self.queue
        try:
            result = await asyncio.wait_for(queue.run(key, client, job), self.patch_timeout)
        except asyncio.TimeoutError:
            self.stats.patch_timeouts += 1
            return None
        if result is BUSY:
            self.stats.patch_busy += 1
            return None
        return result

    def _compute_patch(
        self,
        key: Hashable,
        base: ArtifactInfo,
        target: ArtifactInfo,
        mode: str,
        *,
        verify: bool | None = None,
    ) -> tuple[bytes, str]:
        """In a patch worker or the precompute worker: the patch for ``key``, computed once
        when both ask at the same time (a thread single flight), or found in the memory cache
        when the other finished it since this job was queued. With a ``shared_cache`` the
        other instances' results come first, and one instance computes each pair."""

        def run() -> tuple[bytes, str]:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            if self.shared_cache is not None:
                return self._shared_diff(key, base, target, mode, verify)
            result, state = self._diff_once(base, target, mode, verify)
            return self._keep(key, base, target, mode, result, state)

        return self._patch_flight.do(key, run)

    def _shared_diff(
        self,
        key: Hashable,
        base: ArtifactInfo,
        target: ArtifactInfo,
        mode: str,
        verify: bool | None,
    ) -> tuple[bytes, str]:
        """The patch through the shared cache (in a worker thread): another instance's result
        (checked by applying it, see :meth:`_check_shared`), or computed here under the pair's
        lease and shared; kept in memory and in the PatchStore either way."""
        assert self.shared_cache is not None
        state = "failed"

        def compute() -> tuple[bytes, bool]:
            nonlocal state
            result, state = self._diff_once(base, target, mode, verify)
            return result[0], state == "settled"

        got = self.shared_cache.get_or_compute(
            base.sha256,
            target.sha256,
            mode,
            compute,
            check=lambda patch: self._check_shared(base, target, mode, patch),
        )
        if got.source == "shared":
            state = "settled"
            with self._count_lock:
                self.stats.patches_from_shared += 1
        data = got.patch
        if len(data) > target.size * (1 - self.min_delta_saving):
            data = b""  # shared by an instance configured otherwise: not worth it here
        result = (data, format_digest(data)) if data else _NOT_WORTH
        return self._keep(key, base, target, mode, result, state)

    def _check_shared(
        self, base: ArtifactInfo, target: ArtifactInfo, mode: str, patch: bytes
    ) -> bool:
        """True when ``patch`` (read from the shared cache) turns the base into the target's
        exact bytes (SHA-256), so a value another process wrote is never served unchecked.
        Without ``verify_patches`` only the Redis envelope and the pair binding are checked."""
        if not self.verify_patches:
            return True
        old = self.storage.read(base.path)  # a failure raises: "could not check here"
        if len(old) != base.size:
            raise OSError(f"{base.path} changed since it was looked at")
        try:
            new = self._aggregator(mode).apply(old, patch)
        except Exception:  # not a patch of this base: wrong, whatever the reason
            return False
        return len(new) == target.size and hashlib.sha256(new).digest() == target.sha256

    def _diff_once(
        self,
        base: ArtifactInfo,
        target: ArtifactInfo,
        mode: str,
        verify: bool | None,
    ) -> tuple[tuple[bytes, str], str]:
        """Diff and check (in a worker thread): (result, state). ``state``: "settled" (a patch
        or a poor result: keep it), "failed" (cache as not worth it, but do not store it: it
        may not happen again), "changed" (a file changed since stat: keep nothing).
        ``verify``: apply the patch once before keeping it (default ``verify_patches``)."""
        result = _NOT_WORTH
        verify = self.verify_patches if verify is None else verify
        with span("patch.compute", **{"patch.mode": mode, "patch.target": target.path}) as sp:
            try:
                old = self.storage.read(base.path)
                new = self.storage.read(target.path)
                if len(old) != base.size or len(new) != target.size:
                    sp.set_attribute("patch.outcome", "changed")
                    return _NOT_WORTH, "changed"  # the next stat re-hashes
                agg = self._aggregator(mode)
                patch = agg.diff(old, new)
                with self._count_lock:
                    self.patches_computed += 1
                if len(patch) <= len(new) * (1 - self.min_delta_saving) and (
                    not verify or agg.apply(old, patch) == new
                ):
                    result = (patch, format_digest(patch))
                sp.set_attribute("patch.outcome", "patch" if result[0] else "not_worth")
                sp.set_attribute("patch.bytes", len(result[0]))
                return result, "settled"
            except Exception as exc:  # a failed optimisation never fails the download
                sp.set_attribute("patch.outcome", "failed")
                log.warning(
                    "patch %s -> %s not served: %r",
                    base.path,
                    target.path,
                    exc,
                    exc_info=not isinstance(exc, (RegistryCoreError, MemoryError, OSError)),
                )
                return _NOT_WORTH, "failed"

    def _keep(
        self,
        key: Hashable,
        base: ArtifactInfo,
        target: ArtifactInfo,
        mode: str,
        result: tuple[bytes, str],
        state: str,
    ) -> tuple[bytes, str]:
        """Cache ``result`` (a failure as not worth it), store a settled one, sign a patch."""
        if state == "changed":
            return result
        self.cache.put(key, result)
        if state == "settled" and self.patch_store is not None:
            self.patch_store.put(base.sha256, target.sha256, mode, result[0])
        if result[0] and self.envelopes is not None:
            self._envelope(target, base.sha256, result[0], result[1])
        return result

    # -- patch envelopes (signing.PatchEnvelopes) ------------------------------------------------

    def _envelope(
        self, target: ArtifactInfo, base_sha: bytes, patch: bytes, digest: str
    ) -> bytes | None:
        """The DSSE envelope of ``patch`` (in a thread): from memory, the store, or signed now
        (then kept in both). None when signing failed (logged): the patch is then not sent."""
        from ..wire._digest import parse_digest

        patch_sha = parse_digest(digest).get("sha-256") or hashlib.sha256(patch).digest()
        key = ("env", patch_sha, target.sha256, target.path)
        signing = self._envelope_keys()
        hit = self.cache.get(key)
        if hit is not None and hit[1] == signing:
            return hit[0]
        env = None
        if self.patch_store is not None:
            env = self.patch_store.get(patch_sha, target.sha256, "dsse")
            if env and not _envelope_fits(env, target.path, signing):
                env = None  # for another path with the same bytes, or by other keys: re-sign
        if not env:
            assert self.envelopes is not None
            try:
                env = self.envelopes(target.path, target.sha256, base_sha, patch_sha)
            except Exception as exc:
                log.warning("patch envelope for %s not signed: %r", target.path, exc)
                return None
            if self.patch_store is not None:
                self.patch_store.put(patch_sha, target.sha256, "dsse", env)
            with self._count_lock:
                self.stats.envelopes_signed += 1
        self.cache.put(key, (env, signing))
        self.cache.put(("env", patch_sha, target.sha256), (env, signing))
        return env

    def _envelope_keys(self) -> str:
        """The key ids signing envelopes now (``envelopes.keyids`` when it says), as one
        string: cached envelopes by other keys (before a rotation) are signed again."""
        try:
            ids = getattr(self.envelopes, "keyids", None)
        except Exception:  # no usable key now: signing says so (logged), the patch is not sent
            return "?"
        return ",".join(sorted(ids)) if ids else ""

    async def _envelope_headers(
        self, target: ArtifactInfo, base_sha: bytes, patch: tuple[bytes, str]
    ) -> list[tuple[str, str]] | None:
        """``Delta-Envelope`` (inline, when it fits a field) and its ``Link``; None if the
        patch could not be signed."""
        import base64

        from ..wire._digest import parse_digest

        body, digest = patch
        patch_sha = parse_digest(digest).get("sha-256") or hashlib.sha256(body).digest()
        hit = self.cache.get(("env", patch_sha, target.sha256, target.path))
        env = hit[0] if hit is not None and hit[1] == self._envelope_keys() else None
        if env is None:
            env = await asyncio.to_thread(self._envelope, target, base_sha, body, digest)
            if env is None:
                return None
        url = f"{ENVELOPE_PREFIX}{patch_sha.hex()}-{target.sha256.hex()}.dsse"
        out = [("link", f'<{url}>; rel="delta-envelope"')]
        inline = ":" + base64.b64encode(env).decode("ascii") + ":"
        if len(inline) <= MAX_INLINE_ENVELOPE:
            out.append(("delta-envelope", inline))
        return out

    async def _serve_envelope(self, raw_path: str, common: list[tuple[str, str]]) -> _Response:
        """``GET /.well-known/registry-core/envelopes/<patch>-<target>.dsse``: a stored
        envelope (never signed here: signing needs the patch, which the 226 path has)."""
        name = raw_path[len(ENVELOPE_PREFIX) :]
        env = None
        m = _ENVELOPE_NAME.match(name)
        if m is not None:
            patch_sha, target_sha = bytes.fromhex(m[1]), bytes.fromhex(m[2])
            hit = self.cache.get(("env", patch_sha, target_sha))
            env = hit[0] if hit is not None else None
            if env is None and self.patch_store is not None:
                env = await asyncio.to_thread(self.patch_store.get, patch_sha, target_sha, "dsse")
        if not env:
            msg = b"not found\n"
            return _Response(
                404,
                [
                    *common,
                    ("content-type", "text/plain; charset=utf-8"),
                    ("content-length", str(len(msg))),
                ],
                msg,
            )
        digest = format_digest(env)
        return _Response(
            200,
            [
                *common,
                ("content-type", "application/vnd.dsse.envelope.v1+json"),
                ("cache-control", "public, max-age=31536000, immutable"),
                ("content-length", str(len(env))),
                ("repr-digest", digest),
                ("content-digest", digest),
            ],
            env,
        )

    # -- dcz -------------------------------------------------------------------------------------

    async def _dcz(
        self, method: str, headers: dict[str, str], target: ArtifactInfo, client: Hashable
    ) -> tuple[bytes, str] | None:
        """A dcz body when the client offers a stored artifact as dictionary (RFC 9842)."""
        if not self.dictionaries or not self.zstd or "available-dictionary" not in headers:
            return None
        from ..compress import negotiate
        from ..wire._dictionary import parse_available_dictionary

        dict_hash = parse_available_dictionary(headers["available-dictionary"])
        if dict_hash is None or dict_hash == target.sha256:
            return None
        try:
            if negotiate(headers.get("accept-encoding", ""), ["dcz"]) != "dcz":
                return None
        except Exception:  # a malformed header must not fail the download
            return None
        key = ("dcz", dict_hash, target.sha256)
        hit = self.cache.get(key)
        if hit is not None or method != "GET":
            return hit if hit and hit[0] else None
        picked = await self._io(self._pick_dictionary, dict_hash, target)
        if picked is None:
            return None
        result = await self._queued(key, client, lambda: self._compute_dcz(key, picked, target))
        return result if result and result[0] else None

    def _pick_dictionary(self, dict_hash: bytes, target: ArtifactInfo) -> ArtifactInfo | None:
        path = self.storage.find_by_sha256(dict_hash)
        info = self.storage.stat(path) if path is not None else None
        if info is None or info.sha256 != dict_hash:
            return None
        # Use-As-Dictionary matches the target's directory: nothing else is a dictionary here.
        if info.path.rpartition("/")[0] != target.path.rpartition("/")[0]:
            self._refuse("dictionary not in the same directory")
            return None
        if info.size > self.max_diff_bytes or target.size > self.max_diff_bytes:
            self._refuse("too large")
            return None
        return info

    def _compute_dcz(
        self, key: Hashable, dictionary: ArtifactInfo, target: ArtifactInfo
    ) -> tuple[bytes, str]:
        from ..compress import Compressor, Dictionary

        result = _NOT_WORTH
        try:
            old = self.storage.read(dictionary.path)
            new = self.storage.read(target.path)
            body = Compressor("dcz", dictionary=Dictionary(old), flags=self.flags).compress(new)
            if len(body) <= len(new) * (1 - self.min_delta_saving):
                result = (body, format_digest(body))
        except Exception as exc:  # a failed optimisation never fails the download
            log.warning(
                "dcz %s with %s not served: %r",
                target.path,
                dictionary.path,
                exc,
                exc_info=not isinstance(exc, (RegistryCoreError, MemoryError, OSError)),
            )
        self.cache.put(key, result)
        return result

    # -- content codings ----------------------------------------------------------------------

    def _coding_for(self, headers: dict[str, str], info: ArtifactInfo) -> str:
        """The coding to offer: identity for stored-compressed media, else the client's pick."""
        from ..compress import negotiate
        from ..compress._auto import SMALL_MAX, is_precompressed

        media = info.content_type.split(";", 1)[0].strip().lower()
        if info.size > self.max_encode_bytes or is_precompressed(b"", media):
            return "identity"
        offer = self._offer
        if info.size <= SMALL_MAX and self.brotli:  # Compressor.auto's pick for small payloads
            offer = ["br", *[c for c in offer if c != "br"]]
        try:
            return negotiate(headers.get("accept-encoding", ""), [*offer, "identity"])
        except Exception:  # a malformed header must not fail the download
            return "identity"

    async def _encoded(
        self, method: str, headers: dict[str, str], info: ArtifactInfo, client: Hashable
    ) -> tuple[str, tuple[bytes, str]] | None:
        """(coding, (body, digest)) of the content-coded body (cached), or None to send the
        stored bytes as they are."""
        coding = self._coding_for(headers, info)
        if coding == "identity":
            return None
        key = ("enc", info.sha256, coding)
        hit = self.cache.get(key)
        if hit is None and method == "GET":
            hit = await self._queued(
                key, client, lambda: self._compute_encoding(key, info, coding), self.encode_queue
            )
        return (coding, hit) if hit and hit[0] else None

    def _compute_encoding(
        self, key: Hashable, info: ArtifactInfo, coding: str
    ) -> tuple[bytes, str]:
        """In a worker: encode as ``Compressor.auto`` advises (identity if precompressed)."""
        from ..compress import Compressor
        from ..compress._auto import SMALL_MAX, is_precompressed

        result = _NOT_WORTH
        try:
            data = self.storage.read(info.path)
            media = info.content_type.split(";", 1)[0].strip().lower()
            if not is_precompressed(data, media):
                advice = Compressor.auto(data, content_type=media, flags=self.flags)
                if advice.coding != "identity":
                    level = {
                        "zstd": advice.level
                        if advice.coding == "zstd"
                        else (19 if len(data) <= SMALL_MAX else 9),
                        "br": 5,
                        "gzip": 9,
                    }[coding]
                    # no long-distance window: RFC 9659 limits HTTP zstd to 8 MiB windows
                    body = self._compressor(coding, level).compress(data)
                    with self._count_lock:
                        self.stats.encodings_computed += 1
                    if len(body) < len(data):
                        result = (body, format_digest(body))
        except Exception as exc:  # a failed optimisation never fails the download
            log.warning(
                "%s encoding of %s not served: %r",
                coding,
                info.path,
                exc,
                exc_info=not isinstance(exc, (RegistryCoreError, MemoryError, OSError)),
            )
        self.cache.put(key, result)
        return result

    def _use_as_dictionary(self, info: ArtifactInfo) -> list[tuple[str, str]]:
        """RFC 9842: each artifact may serve as the dictionary for later ones in its directory."""
        if not self.dictionaries or not self.zstd:
            return []
        from ..wire._dictionary import build_use_as_dictionary

        directory = "/" + info.path.rsplit("/", 1)[0] + "/*" if "/" in info.path else "/*"
        return [("use-as-dictionary", build_use_as_dictionary(directory))]
