"""DeltaAggregator: archive-aware binary deltas, verified apply, chains, base choice, bundles."""

from __future__ import annotations

import functools
import hashlib
import itertools
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, Union

from .._util import LRU, atomic_write, byte_view
from ..errors import (
    BaseMismatchError,
    ComposeError,
    CorruptPatchError,
    InvalidArgumentError,
    InvalidTypeError,
    OutputTooLargeError,
    RegistryCoreError,
    ReproductionUnavailableError,
)
from . import _binary, _bundle, _compose, _exe, _expanded, _prefix
from ._deflate import ZLIB, DeflateParams, StreamPolicy, engine_reproduces
from ._files import read_stable
from ._format import (
    FLAG_RAW_BASE,
    Codec,
    Method,
    Patch,
    Section,
    chain_members,
    encode_section,
    layouts_section,
    parse,
    read_layouts,
    read_streams,
    serialize,
    stream_sections,
)
from ._layout import (
    EXPANSION_RATIO,
    DeflateEntry,
    default_max_expanded_size,
    expand_artifact,
    expand_known,
    rebuild,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..flags import FeatureFlags

Buffer = bytes | bytearray | memoryview | mmap.mmap
PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

DEFAULT_MAX_OUTPUT_SIZE = 2 << 30  # 2 GiB: larger artifacts need an explicit opt-in
DEFAULT_EXPANSION_RATIO = EXPANSION_RATIO  # kept for importers; the one limit is in _layout
_ALWAYS_BOTH = 1 << 20  # below this target size, try both archive and plain deltas
# Archives whose target is at most this also get a ZSTD_PREFIX candidate (of their compressed
# bytes). On the corpus it never won on an archive (`bench_delta.py --without-prefix`: the
# same bytes with prefix=False on every pair) and costs one more level-19 pass over the
# compressed bytes, so only small ones get it.
_PREFIX_ARCHIVE_MAX = 256 << 10


@dataclass(frozen=True)
class PatchInfo:
    """What a patch says about itself (from :meth:`DeltaAggregator.inspect`)."""

    method: str
    base_size: int
    target_size: int
    base_sha256: str
    target_sha256: str
    patch_size: int
    sections: dict[str, tuple[int, int]] = field(default_factory=dict)  # name: (raw, stored)

    @property
    def saved(self) -> float:
        """Fraction of the target's size the patch saves (negative when larger)."""
        return 1.0 - self.patch_size / self.target_size if self.target_size else 0.0


# What the decoders underneath may raise on hostile input when a bound is missed somewhere;
# apply / inspect / compose / unbundle turn them into registry_core errors (a safety net: the
# bounds above are what keeps memory and time in check).
def _foreign_errors() -> tuple[type[BaseException], ...]:
    import zstandard

    return (
        zstandard.ZstdError,
        zlib.error,
        struct.error,
        IndexError,
        RecursionError,
        OverflowError,
    )


def _guarded(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except RegistryCoreError:
                raise
            except MemoryError:
                raise OutputTooLargeError(
                    f"{what} needs more memory than this process can get; the patch is hostile "
                    "or the limits (max_output_size, max_expanded_size) are above what this "
                    "machine can hold"
                ) from None
            except _foreign_errors() as exc:
                raise CorruptPatchError(
                    f"{what}: malformed input ({type(exc).__name__}: {exc})"
                ) from exc  # the cause stays attached for debugging

        return inner

    return wrap


class DeltaAggregator:
    """Binary deltas between artifact versions, archive-aware, integrity-checked.

    Options (keyword-only):

    - ``archive_aware``: diff zip / gzip artifacts on their decompressed content and rebuild the
      compressed bytes exactly. Default: the ``DELTA_STABLE`` flag of ``flags``, or its
      catalogue default (on) when ``flags`` is None.
    - ``level``: zstd level for the patch streams (default 19).
    - ``max_output_size``: ``apply`` refuses patches declaring a larger output (default 2 GiB).
    - ``max_expanded_size``: cap on an archive's inflated form, the same for ``diff`` (which
      leaves streams compressed beyond it) and ``apply`` (which refuses patches above it).
      Default: 64 x the target, at least 64 MiB, at most 1 GiB.
    - ``max_chain``: match candidates examined per position in the C core (speed vs. size).
    - ``full_margin``: a patch must be at least this fraction smaller than the target itself, or
      ``diff`` emits a full-content patch instead (default 0.02).
    - ``reconstruct``: streams that no zlib / miniz parameters reproduce (GNU gzip on large
      inputs, libdeflate, 7-Zip, zlib forks...) are expanded anyway and rebuilt by the C core
      from a correction record (layout version 2, docs/delta-format.md). Default on; turn it off
      for clients that only read layout version 1 (registry-core before reconstruction).
    - ``prefix``: also try a ZSTD_PREFIX patch (the target as one zstd frame with the base as
      its dictionary, what ``zstd --patch-from`` does) and keep it when smaller: for inputs
      that are not archives (or when ``archive_aware`` is off) whose base + target fit 128 MiB,
      and for archives up to 256 KiB of target. Default on; turn it off for clients that only
      read methods 0-3 (registry-core before ZSTD_PREFIX).
    - ``exe``: executable-aware transforms (delta/_exe.py); the server turns it off for clients
      that do not name ``exe`` in ``Delta-Engines``. Default on. For ``recompress`` (EXPANDED
      patches) it tries the transform on the expanded form's code and keeps an EXEC section
      only when the patch gets smaller; the lead wires it into BINARY / ARCHIVE diffs.
    - ``flags``: a :class:`~registry_core.flags.FeatureFlags`, read once here. The aggregator
      never looks flags up on its own (no environment, no project file).

    An aggregator keeps ``last_stats`` and a bounded memo of deflate parameters found per
    stream digest (so releases diffed one after another skip repeated searches); both are
    guarded, and one aggregator may be shared between threads.
    """

    def __init__(
        self,
        *,
        archive_aware: bool | None = None,
        level: int = 19,
        max_output_size: int = DEFAULT_MAX_OUTPUT_SIZE,
        max_expanded_size: int | None = None,
        max_chain: int = 32,
        full_margin: float = 0.02,
        flags: FeatureFlags | None = None,
        reconstruct: bool = True,
        prefix: bool = True,
        exe: bool = True,
    ) -> None:
        if not 1 <= level <= 22:
            raise InvalidArgumentError(f"level must be in 1..22, not {level}")
        if max_output_size <= 0:
            raise InvalidArgumentError("max_output_size must be positive")
        if max_expanded_size is not None and max_expanded_size <= 0:
            raise InvalidArgumentError("max_expanded_size must be positive")
        if max_chain < 1:
            raise InvalidArgumentError("max_chain must be >= 1")
        if not 0.0 <= full_margin < 1.0:
            raise InvalidArgumentError("full_margin must be in [0, 1)")
        if archive_aware is None:
            archive_aware = _delta_stable(flags)
        self.archive_aware = bool(archive_aware)
        self.level = level
        self.max_output_size = max_output_size
        self.max_expanded_size = max_expanded_size
        self.max_chain = max_chain
        self.full_margin = full_margin
        self.reconstruct = bool(reconstruct)
        self.prefix = bool(prefix)
        self.exe = bool(exe)
        self._lock = threading.Lock()
        self.last_stats: dict[str, object] = {}
        # Deflate parameters that reproduced a stream, by the stream's SHA-256.
        self._params_memo: LRU[bytes, DeflateParams] = LRU(max_entries=1 << 16)
        self._params_memo_v1: LRU[bytes, DeflateParams] = LRU(max_entries=1 << 16)

    def expanded_limit(self, target_size: int) -> int:
        """The largest expanded form (base or target) of an archive patch for a target of
        ``target_size`` bytes: what ``diff`` stays within and ``apply`` accepts."""
        if self.max_expanded_size is not None:
            return self.max_expanded_size
        return default_max_expanded_size(target_size)

    _expanded_limit = expanded_limit  # the name compose and older callers use

    # -- diff ---------------------------------------------------------------------------------

    def diff(self, old: Buffer, new: Buffer) -> bytes:
        """A patch that turns ``old`` into ``new``; never larger than a full-content patch."""
        old_v, new_v = byte_view(old, "old"), byte_view(new, "new")
        started = time.perf_counter()
        header: dict[str, Any] = {
            "base_size": len(old_v),
            "target_size": len(new_v),
            "base_sha256": hashlib.sha256(old_v).digest(),
            "target_sha256": hashlib.sha256(new_v).digest(),
        }
        stats: dict[str, object] = {}
        candidates: list[bytes] = []
        archive = None
        if self.archive_aware and not len(old_v):
            # A first download: the target's expanded form as one zstd frame (method 5). An
            # ARCHIVE delta from the empty base would carry the same content, less well packed.
            archive = self._recompress(new_v, stats)
            if archive is not None:
                candidates.append(archive)
        if self.archive_aware and archive is None:
            archive = self._diff_archive(old_v, new_v, header, stats)
            if archive is not None:
                candidates.append(archive)
        # Small artifacts: also try the plain delta (layouts cost a few hundred bytes). On large
        # ones a plain delta of compressed bytes does not beat the archive view (measured on
        # the corpus), so it is not worth a second match pass.
        if not candidates or len(new_v) <= _ALWAYS_BOTH:
            streams = _binary.encode(old_v, new_v, max_chain=self.max_chain)
            sections = stream_sections(streams, level=self.level)
            candidates.append(serialize(Method.BINARY, sections=sections, **header))
            del sections, streams  # the stored sections viewed the streams until serialized
            exe = self._exe_candidate(old_v, new_v, Method.BINARY, [], header, stats)
            if exe is not None:
                candidates.append(exe)
        # The zstd-with-the-base-as-prefix candidate: always for plain inputs within the
        # window; for archives only on small targets (on larger ones the archive view wins and
        # a level-19 pass over compressed bytes is not worth its time).
        if (
            self.prefix
            and _prefix.fits(len(old_v), len(new_v))
            and (archive is None or len(new_v) <= _PREFIX_ARCHIVE_MAX)
        ):
            frame = _prefix.encode(old_v, new_v, level=self.level)
            section = (Section.FRAME, Codec.STORED, len(frame), frame)
            candidates.append(serialize(Method.ZSTD_PREFIX, sections=[section], **header))
        best = min(candidates, key=len)
        if len(best) >= len(new_v) * (1.0 - self.full_margin):
            best = self.full_patch(new_v, base=old_v, _header=header)
        stats["seconds"] = time.perf_counter() - started
        stats["method"] = Method(best[5]).name
        with self._lock:
            self.last_stats = stats
        return best

    def _diff_archive(
        self, old: memoryview, new: memoryview, header: dict, stats: dict
    ) -> bytes | None:
        # One limit for both sides: what apply accepts for this target. The inflation budget
        # leaves room for the bytes that stay raw, so neither expanded form can exceed it.
        limit = self.expanded_limit(len(new))
        # The base is only read, never recompressed: inflate every stream the parsers find,
        # without searching parameters, hashing each once. The target's streams that are
        # byte-identical to one of the base's are copied by the patch, so they need no
        # parameters either; only changed streams are detected (and remembered by digest).
        old_x = expand_artifact(
            old, max_expanded_size=max(0, limit - len(old)), policy=StreamPolicy(search=False)
        )
        policy = StreamPolicy(
            known=set(old_x.digests),
            memo=self._params_memo if self.reconstruct else self._params_memo_v1,
            reconstruct=self.reconstruct,
        )
        new_x = expand_artifact(new, max_expanded_size=max(0, limit - len(new)), policy=policy)
        old_layout, new_layout = old_x.layout, new_x.layout
        old_size, new_size = old_layout.expanded_size(), new_layout.expanded_size()
        new_entries = new_layout.deflate_entries()
        stats.update(
            base_kind=old_layout.kind,
            target_kind=new_layout.kind,
            target_streams=len(new_entries),
            expanded_base=old_size,
            expanded_target=new_size,
        )
        if not old_x.digests and not new_x.digests:
            return None  # nothing was inflated: a plain binary delta is the same thing
        if max(old_size, new_size) > limit:  # pragma: no cover - the budgets prevent it
            return None
        # Deflate streams whose compressed bytes are unchanged are copied, not recompressed.
        by_digest: dict[bytes, int] = {}
        for i, digest in enumerate(old_x.digests):
            by_digest.setdefault(digest, i)
        mapping: dict[int, int | None] = {}
        copied: set[int] = set()
        for entry, digest in zip(new_entries, new_x.digests, strict=True):
            if entry.parent is not None and entry.parent in copied:
                copied.add(entry.index)  # inside a copied stream: copied with it
                continue
            j = by_digest.get(digest)
            if j is not None:
                mapping[entry.index] = j
                copied.add(entry.index)
        new_layout = new_layout.with_copy_from(mapping)
        stats["copied_streams"] = len(mapping)
        stats["reconstructed_streams"] = policy.reconstructed
        stats["record_bytes"] = policy.record_bytes
        # Target streams no engine reproduces stay compressed in the expanded target; their
        # unchanged parts can only be found in the base's compressed bytes, so then the delta
        # source is the expanded base followed by the base itself (joined in one copy).
        flags = FLAG_RAW_BASE if policy.failed else 0
        source = old_x.expanded(old) if flags else old_x.expanded()
        del old_x
        target = new_x.expanded()
        del new_x
        stats["raw_base"] = bool(flags)
        streams = _binary.encode(source, target, max_chain=self.max_chain)
        # The expanded forms stay alive only when a transformed candidate will be tried.
        with_code = (source, target) if self.exe and _exe.plan(target) is not None else None
        del source, target
        layouts = layouts_section(old_layout, new_layout, level=self.level)
        sections = [layouts, *stream_sections(streams, level=self.level)]
        best = serialize(Method.ARCHIVE, sections=sections, flags=flags, **header)
        del sections, streams
        if with_code is None:
            return best
        exe = self._exe_candidate(*with_code, Method.ARCHIVE, [layouts], header, stats, flags)
        return exe if exe is not None and len(exe) < len(best) else best

    def _exe_candidate(
        self,
        source: bytes | bytearray | memoryview,
        target: bytes | bytearray | memoryview,
        method: Method,
        leading: list,
        header: dict,
        stats: dict,
        flags: int = 0,
    ) -> bytes | None:
        """The patch of ``method`` diffing ``source`` and ``target`` with their executable
        code transformed (delta/_exe.py), or None when ``exe`` is off or the target holds no
        code. One more match pass, so only for targets with code; the caller keeps the smaller
        patch (on the corpus the transform saves at most 4% and often loses: docs/executables.md).
        """
        if not self.exe:
            return None
        pair = _exe.transform_pair(source, target)
        if pair is None:
            return None
        src_x, tgt_x, body = pair
        streams = _binary.encode(src_x, tgt_x, max_chain=self.max_chain)
        del src_x, tgt_x
        sections = [
            *leading,
            *stream_sections(streams, level=self.level),
            (Section.EXEC, Codec.STORED, len(body), body),
        ]
        patch = serialize(method, sections=sections, flags=flags, **header)
        del sections, streams
        stats["exe_patch"] = len(patch)
        return patch

    def recompress(self, new: Buffer) -> bytes | None:
        """The EXPANDED patch of ``new`` (method 5, against the empty base): what a client
        that holds nothing downloads instead of ``new``.

        None when no stream of ``new`` can be expanded and reproduced, or when the patch is not
        at least ``full_margin`` smaller than ``new`` (serve the plain file: never a larger
        download). ``apply(b"", patch)`` rebuilds ``new`` byte-exact, as does
        :class:`ExpandedDecoder` fed the patch in pieces.
        """
        new_v = byte_view(new, "new")
        started = time.perf_counter()
        stats: dict[str, object] = {}
        patch = self._recompress(new_v, stats)
        if patch is not None and len(patch) >= len(new_v) * (1.0 - self.full_margin):
            patch = None
        stats["seconds"] = time.perf_counter() - started
        stats["method"] = "EXPANDED" if patch is not None else None
        with self._lock:
            self.last_stats = stats
        return patch

    def _recompress(self, new: memoryview, stats: dict) -> bytes | None:
        if not len(new):
            return None
        return _expanded.encode(
            new,
            level=self.level,
            reconstruct=self.reconstruct,
            memo=self._params_memo if self.reconstruct else self._params_memo_v1,
            max_expanded_size=self.expanded_limit(len(new)),
            exe=self.exe,
            stats=stats,
        )

    def expanded_decoder(
        self, *, expected_sha256: bytes | None = None
    ) -> _expanded.ExpandedDecoder:
        """A streaming :class:`~registry_core.delta.ExpandedDecoder` (feed the EXPANDED patch as
        it arrives, ``finish()`` for the verified artifact) with this aggregator's limits."""
        return _expanded.ExpandedDecoder(
            max_output_size=self.max_output_size,
            max_expanded_size=self.max_expanded_size,
            expected_sha256=expected_sha256,
        )

    def full_patch(self, new: Buffer, *, base: Buffer, _header: dict | None = None) -> bytes:
        """A patch that carries ``new`` whole (zstd-compressed when that is smaller)."""
        new_v = byte_view(new, "new")
        header = _header or {
            "base_size": len(byte_view(base, "base")),
            "target_size": len(new_v),
            "base_sha256": hashlib.sha256(byte_view(base, "base")).digest(),
            "target_sha256": hashlib.sha256(new_v).digest(),
        }
        section = encode_section(Section.TARGET, new_v, level=min(self.level, 19))
        return serialize(Method.FULL, sections=[section], **header)

    # -- apply --------------------------------------------------------------------------------

    @_guarded("apply")
    def apply(self, old: Buffer, patch: Buffer) -> bytes:
        """Rebuild the target from ``old`` and ``patch``; every step is verified.

        Raises BaseMismatchError (wrong ``old``), OutputTooLargeError (declared output above
        ``max_output_size``, or an expanded form above ``max_expanded_size``: refused before
        allocating), CorruptPatchError (anything else). Every failure is a registry_core error.
        """
        return self._apply(byte_view(old, "old"), parse(byte_view(patch, "patch")))

    def _apply(self, old: memoryview, p: Patch, *, base_checked: bool = False) -> bytes:
        self._check_base(p, old, digest=not base_checked)
        out = self._apply_parsed(old, p)
        if len(out) != p.target_size:
            raise CorruptPatchError(
                f"patched output is {len(out)} bytes but the patch declares {p.target_size}"
            )
        if hashlib.sha256(out).digest() != p.target_sha256:
            raise CorruptPatchError("patched output does not match the target SHA-256 in the patch")
        return out

    def _check_base(self, p: Patch, old: memoryview, *, digest: bool = True) -> None:
        if p.target_size > self.max_output_size:
            raise OutputTooLargeError(
                f"patch declares a {p.target_size}-byte output, above max_output_size="
                f"{self.max_output_size}"
            )
        if len(old) != p.base_size or (digest and hashlib.sha256(old).digest() != p.base_sha256):
            raise BaseMismatchError(
                f"this patch was made for a base of {p.base_size} bytes with SHA-256 "
                f"{p.base_sha256.hex()[:16]}..., not for the given {len(old)}-byte input"
            )

    def _apply_parsed(self, old: memoryview, p: Patch) -> bytes:
        if p.method == Method.FULL:
            out = p.section(Section.TARGET, limit=p.target_size, one_buffer=True)
            if len(out) != p.target_size:
                raise CorruptPatchError("full-content patch holds the wrong number of bytes")
            return out
        if p.method == Method.BINARY:
            if Section.EXEC in p.sections:
                body = p.section(Section.EXEC, limit=_exe.MAX_RECORD_BYTES)
                source, tgt_rec = _exe.source_for_apply(old, body, target_size=p.target_size)
                streams = read_streams(p, p.target_size, len(source))
                out = bytearray(_binary.apply(source, streams, p.target_size))
                del source, streams
                _exe.inverse(out, tgt_rec)
                return bytes(out)
            streams = read_streams(p, p.target_size, len(old))
            return _binary.apply(old, streams, p.target_size)
        if p.method == Method.CHAIN:
            return self._apply_chain(old, p)
        if p.method == Method.ZSTD_PREFIX:
            frame = p.sections[Section.FRAME]
            if len(frame.payload) != frame.raw_len:
                raise CorruptPatchError("patch section FRAME has the wrong length")
            return _prefix.decode(old, frame.payload, p.target_size)
        if p.method == Method.EXPANDED:
            return _expanded.decode(
                p, max_output_size=self.max_output_size, expanded_limit=self.expanded_limit
            )
        return self._apply_archive(old, p)

    def _apply_chain(self, old: memoryview, p: Patch) -> bytes:
        current: bytes | memoryview = old
        previous: Patch | None = None
        for member in chain_members(p, max_size=self.max_output_size):
            inner = parse(member)
            if previous is not None and inner.base_sha256 != previous.target_sha256:
                raise CorruptPatchError("chain patch members do not follow each other")
            # Each intermediate was verified as the previous member's output, whose digest is
            # the one this member's header names: it need not be hashed again.
            current = self._apply(
                byte_view(current, "intermediate"), inner, base_checked=previous is not None
            )
            previous = inner
        return bytes(current)

    def _apply_archive(self, old: memoryview, p: Patch) -> bytes:
        old_layout, new_layout = read_layouts(p)
        if old_layout.original_size() != len(old) or new_layout.original_size() != p.target_size:
            raise CorruptPatchError("patch layouts do not match the declared sizes")
        limit = self.expanded_limit(p.target_size)
        exp_size, old_exp_size = new_layout.expanded_size(), old_layout.expanded_size()
        if exp_size > limit or old_exp_size > limit:
            raise OutputTooLargeError(
                f"patch needs an expanded form of {max(exp_size, old_exp_size)} bytes, "
                f"above max_expanded_size={limit}"
            )
        entries = new_layout.deflate_entries()  # one walk for the engine check and the copies
        _check_engines(entries)
        raw_base = bool(p.flags & FLAG_RAW_BASE)
        source_size = old_exp_size + (len(old) if raw_base else 0)
        # The streams first: bounded by what this output can need, and they must add up to
        # the expanded size, before the base is expanded or any output buffer exists.
        streams = read_streams(p, exp_size, source_size)
        wanted = {e.node.copy_from for e in entries if e.node.copy_from is not None}
        del entries
        kept: dict[int, bytes | bytearray | memoryview] = {}
        source = expand_known(
            old_layout,
            old,
            max_expanded_size=limit,
            keep=wanted,
            kept=kept,
            tail=old if raw_base else None,
        )
        tgt_rec = None
        if Section.EXEC in p.sections:  # executable code transformed on both sides
            body = p.section(Section.EXEC, limit=_exe.MAX_RECORD_BYTES)
            source, tgt_rec = _exe.source_for_apply(source, body, target_size=exp_size)
        new_exp = bytearray(exp_size)  # rebuild reads it in place: no bytes() copy
        _binary.apply_into(source, streams, new_exp)
        del source, streams
        if tgt_rec is not None:
            _exe.inverse(new_exp, tgt_rec)
        return rebuild(
            new_layout,
            new_exp,
            old_original=old,
            old_layout=old_layout,
            old_streams=kept,
            max_output_size=p.target_size,
        )

    # -- files --------------------------------------------------------------------------------

    def diff_file(self, old_path: PathLike, new_path: PathLike, patch_path: PathLike) -> PatchInfo:
        """Diff two files and write the patch atomically (permissions as ``open()`` gives).

        The inputs are read into memory (not memory-mapped: a file truncated by another
        process while mapped kills the reader with SIGBUS); if either changes while it is read
        or diffed, InvalidArgumentError is raised and nothing is written.
        """
        old, new = read_stable(old_path), read_stable(new_path)
        patch = self.diff(old.data, new.data)
        old.check_unchanged()
        new.check_unchanged()
        del old, new
        atomic_write(patch_path, patch)
        return self.inspect(patch)

    def apply_file(self, old_path: PathLike, patch_path: PathLike, out_path: PathLike) -> PatchInfo:
        """Apply a patch file; ``out_path`` is written only once the output is verified."""
        patch = read_stable(patch_path)
        old = read_stable(old_path)
        out = self.apply(old.data, patch.data)
        old.check_unchanged()
        del old
        atomic_write(out_path, out)
        return self.inspect(patch.data)

    # -- inspection ---------------------------------------------------------------------------

    @staticmethod
    @_guarded("inspect")
    def inspect(patch: Buffer) -> PatchInfo:
        """Header facts of a patch (integrity-checked, nothing decompressed)."""
        view = byte_view(patch, "patch")
        p = parse(view)
        return PatchInfo(
            method=p.method.name,
            base_size=p.base_size,
            target_size=p.target_size,
            base_sha256=p.base_sha256.hex(),
            target_sha256=p.target_sha256.hex(),
            patch_size=len(view),
            sections={s.kind.name: (s.raw_len, len(s.payload)) for s in p.sections.values()},
        )

    # -- aggregation --------------------------------------------------------------------------

    @_guarded("compose")
    def compose(self, patches: Sequence[Buffer]) -> bytes:
        """One patch from the base of ``patches[0]`` to the target of ``patches[-1]``.

        The intermediate artifacts are not needed. Patches of the same kind are merged into one
        delta (usually smaller than the sum of the parts: bytes changed twice travel once);
        patches that work on different views of the intermediate (a plain and an archive delta)
        are carried together as a CHAIN patch, the sum of the parts plus a ~110-byte header.
        Raises ComposeError when the patches do not form a chain.
        """
        if isinstance(patches, (bytes, bytearray, memoryview, str)):
            raise InvalidTypeError("compose takes a sequence of patches")
        parsed = [parse(byte_view(p, "patch")) for p in patches]
        if not parsed:
            raise InvalidArgumentError("compose needs at least one patch")
        for i, (a, b) in enumerate(itertools.pairwise(parsed)):
            if a.target_sha256 != b.base_sha256 or a.target_size != b.base_size:
                raise ComposeError(
                    f"patch {i + 1} does not start where patch {i} ends "
                    "(target and base SHA-256 differ)"
                )
        if len(parsed) == 1:
            return bytes(patches[0])
        acc = parsed[0]
        acc_bytes = bytes(patches[0])
        for nxt, nxt_bytes in zip(parsed[1:], patches[1:], strict=False):
            acc_bytes = _compose.compose_two(self, acc, nxt, acc_bytes, bytes(nxt_bytes))
            acc = parse(acc_bytes)
        return acc_bytes

    def best_base(self, candidates: Iterable[Buffer] | Mapping[str, Buffer], new: Buffer):
        """The candidate likely to give the smallest patch to ``new``, chosen cheaply.

        Compares content-defined chunk fingerprints of the decompressed content (no diff is
        run): the score is the number of bytes of ``new`` whose chunks the candidate lacks.
        Returns the key (for a mapping) or the index (for a sequence) of the best candidate;
        ties go to the later one (usually the newer release).
        """
        from ._similarity import fingerprint, missing_bytes

        items = (
            list(candidates.items())
            if isinstance(candidates, Mapping)
            else list(enumerate(candidates))
        )
        if not items:
            raise InvalidArgumentError("best_base needs at least one candidate")
        target = fingerprint(byte_view(new, "new"))
        best_key, best_score = None, None
        for key, cand in items:
            score = missing_bytes(target, fingerprint(byte_view(cand, "candidate")))
            if best_score is None or score <= best_score:
                best_key, best_score = key, score
        return best_key

    @staticmethod
    def bundle(patches: Mapping[str, Buffer]) -> bytes:
        """Many patches in one stream, each with its own SHA-256 (see docs/delta-format.md)."""
        return _bundle.bundle(patches)

    @staticmethod
    @_guarded("unbundle")
    def unbundle(blob: Buffer, *, max_entries: int = 1 << 16) -> dict[str, bytes]:
        """The patches of a bundle, every entry verified."""
        return _bundle.unbundle(blob, max_entries=max_entries)


def _delta_stable(flags: FeatureFlags | None) -> bool:
    """DELTA_STABLE from ``flags``, read once; its catalogue default when None (no lookup of
    the environment, a project file or process-wide defaults)."""
    if flags is None:
        from ..flags._catalogue import CATALOGUE

        return CATALOGUE["DELTA_STABLE"].default
    from ..flags import FeatureFlags

    if not isinstance(flags, FeatureFlags):
        raise InvalidTypeError(
            f"flags must be a registry_core.flags.FeatureFlags or None, not {type(flags).__name__}"
        )
    return flags.is_enabled("DELTA_STABLE")


def _check_engines(entries: list[DeflateEntry]) -> None:
    """Refuse up front if a stream must be recompressed by an engine that, on this platform,
    does not give the reference output (the final digest check would fail anyway)."""
    needed = {e.node.params.engine for e in entries if e.node.copy_from is None}
    for engine in sorted(needed):
        if not engine_reproduces(engine):
            name = "zlib" if engine == ZLIB else "miniz_oxide (cramjam)"
            raise ReproductionUnavailableError(
                f"this platform's {name} does not produce the reference deflate output "
                "(zlib-ng in compatibility mode?), so this archive patch cannot be rebuilt here; "
                "fetch the full artifact or ask for a plain delta (archive_aware=False)"
            )
