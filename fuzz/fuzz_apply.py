"""Fuzz target: DeltaAggregator.apply, Layout.from_bytes and unbundle on hostile input (atheris).

Three modes (``--mode``, default ``raw``):

- ``raw``: the input is used as it comes. Byte 0 selects the operation (low 2 bits: apply,
  apply, Layout.from_bytes, unbundle) and the base (high 6 bits, modulo the number of bases);
  the rest is the patch / layout / bundle. Almost every mutation breaks the SHA-256 trailer, so
  this mode mostly exercises the container parser and its early checks.
- ``fixup``: the input is a patch *without* its trailer; the harness appends the SHA-256
  trailer of whatever the fuzzer produced, so mutations get past the integrity check and reach
  the section decoders, the layout parser, expand_known / rebuild and the C apply. Seeds have
  their sections re-stored uncompressed (codec STORED) so the fuzzer mutates control, diff,
  extra and layout bytes directly; a few keep zstd sections for the zstd path.
- ``deflate``: the C deflate tokenizer, re-encoder and reconstruction (``delta._reconstruct``).
  Byte 0 even: the rest is tried as a raw deflate stream; when it decodes, re-encoding its
  tokens and rebuilding it from its correction record must give the same bytes back. Byte 0
  odd: bytes 1-2 give a content length n, the next n bytes are content and the rest is an
  untrusted correction record, rebuilt against the content (an error or a stream, never a
  crash).

- ``expanded``: method 5 EXPANDED through both of its decoders. Byte 0 picks the chunk size
  the streaming :class:`~registry_core.delta.ExpandedDecoder` is fed in (see
  :func:`chunk_size`); the rest is an EXPANDED patch without its trailer, appended as in
  ``fixup``. The decoder and ``apply(b"", patch)`` must agree: the same bytes, or both a
  RegistryCoreError. The fixup mode also has EXPANDED seeds (base: the empty one).

Anything but a :class:`registry_core.errors.RegistryCoreError` escaping the harness is a bug
(MemoryError included: every size is meant to be checked against a limit before allocation).
Valid patches found by the fuzzer are also checked: what ``apply`` returns must hash to the
target SHA-256 the patch declares.

Limits (``--limits``, default ``small``): ``small`` applies with ``max_output_size`` = 1 MiB and
``max_expanded_size`` = 8 MiB, so an inflated declared size must be refused; ``default`` uses the
library's own defaults (``DeltaAggregator()``: 2 GiB output), which is what a client gets.

Memory and time oracle (on in the fuzzing loop, ``--no-oracle`` to turn off; off when tests
replay inputs through :func:`one_input`): besides libFuzzer's ``-rss_limit_mb`` and ``-timeout``
(which :func:`main` sets unless given: 512 MB small, 2048 MB default; 20 s), every input's
Python-heap peak (tracemalloc) must stay under :func:`memory_allowance` and its CPU time under
:func:`time_allowance`: both grow with the input, the base and the output size the patch
declares (bounded by the limit), so a tiny input that costs gigabytes or minutes is reported as
a :class:`ResourceFinding` even when it ends in a clean ``RegistryCoreError``.

Run (from the repository root)::

    .venv/bin/python fuzz/fuzz_apply.py --mode raw -max_total_time=300
    .venv/bin/python fuzz/fuzz_apply.py --mode fixup -max_total_time=300
    .venv/bin/python fuzz/fuzz_apply.py --mode fixup --ignore-known -max_total_time=300
    .venv/bin/python fuzz/fuzz_apply.py --mode fixup --limits default -max_total_time=300
    .venv/bin/python fuzz/fuzz_apply.py --mode expanded -max_total_time=300

Seeds are generated at start-up (real zipfile / gzip / tarfile artifacts and their patches) into
``fuzz/corpus/<mode>/`` unless corpus directories are given; crashes are written to
``fuzz/crashers/<mode>/`` (libFuzzer ``-artifact_prefix``) and replayed by
``tests/delta/test_fuzz_corpus.py``. The module imports without atheris so the test can reuse
:func:`one_input` and :func:`seeds`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import sys
import tarfile
import time
import tracemalloc
import zipfile
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("raw", "fixup", "deflate", "expanded")

# Limits the harness applies with: large enough for every seed, small enough that a declared
# size the fuzzer inflates is refused (OutputTooLargeError) instead of eating the machine.
MAX_OUTPUT = 1 << 20
MAX_EXPANDED = 8 << 20
LIMITS = ("small", "default")
#: libFuzzer -rss_limit_mb per limits mode (the process, C allocations included).
RSS_LIMIT_MB = {"small": 512, "default": 2048}
TIMEOUT_S = 20

# The oracle's allowances. Measured on the seeds (both limits): at most 0.36 MB of Python heap
# and 4 ms of CPU per input. A patch's legitimate cost is its output (one buffer, its difference
# and extra streams, the expanded form) plus a constant; the allowances leave a wide margin.
MEMORY_FIXED = 32 << 20
MEMORY_PER_INPUT_BYTE = 64
MEMORY_PER_OUTPUT_BYTE = 8
TIME_FIXED_S = 2.0
TIME_PER_OUTPUT_BYTE_S = 1 / (5 << 20)  # 5 MB/s: far below the slowest real path


class ResourceFinding(AssertionError):
    """An input cost more memory or time than the oracle allows (not a RegistryCoreError)."""


def memory_allowance(input_len: int, base_len: int, declared_output: int) -> int:
    return (
        MEMORY_FIXED
        + MEMORY_PER_INPUT_BYTE * (input_len + base_len)
        + MEMORY_PER_OUTPUT_BYTE * declared_output
    )


def time_allowance(declared_output: int) -> float:
    return TIME_FIXED_S + TIME_PER_OUTPUT_BYTE_S * declared_output


# -- seed artifacts (real producers, deterministic) --------------------------------------------


def _text(rng: random.Random, n: int) -> bytes:
    words = [
        b"def",
        b"return",
        b"import",
        b"class",
        b"self",
        b"value",
        b"registry",
        b"core",
        b"delta",
        b"patch",
        b"(",
        b")",
        b":",
        b"\n",
        b"    ",
        b"=",
        b"1",
        b"2",
    ]
    return b" ".join(rng.choice(words) for _ in range(n))


def _zip(members: dict[str, bytes], *, level: int = 6) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 6))
            stored = name.endswith(".bin")
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=None if stored else level)
    return buf.getvalue()


def _targz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=1_700_000_000)


@lru_cache(maxsize=1)
def artifacts() -> list[tuple[bytes, bytes]]:
    """(old, new) pairs: zip (wheel-like, with a nested .json.gz), tar.gz, raw bytes, unrelated."""
    rng = random.Random(20241126)
    mods = {f"pkg/m{i}.py": _text(rng, 120) for i in range(4)}
    data_gz = gzip.compress(
        b'{"items": [' + b",".join(b"%d" % i for i in range(300)) + b"]}", compresslevel=9, mtime=0
    )
    old_zip = _zip({**mods, "pkg/data.json.gz": data_gz, "pkg/blob.bin": bytes(range(64))})
    mods2 = dict(mods)
    mods2["pkg/m1.py"] = mods["pkg/m1.py"].replace(b"value", b"VALUE", 3) + b"\n# new\n"
    mods2["pkg/m4.py"] = _text(rng, 60)
    data_gz2 = gzip.compress(
        b'{"items": [' + b",".join(b"%d" % i for i in range(310)) + b"]}", compresslevel=9, mtime=0
    )
    new_zip = _zip({**mods2, "pkg/data.json.gz": data_gz2, "pkg/blob.bin": bytes(range(64))})
    src = _text(rng, 1500)
    old_tgz = _targz({"pkg-1/a.py": src, "pkg-1/PKG-INFO": b"Name: pkg\nVersion: 1\n"})
    new_tgz = _targz(
        {
            "pkg-2/a.py": src[:3000] + b"x = 1\n" + src[3000:],
            "pkg-2/PKG-INFO": b"Name: pkg\nVersion: 2\n",
        }
    )
    raw_old = rng.randbytes(3000)
    raw_new = raw_old[:1000] + b"inserted bytes" + raw_old[1000:2500] + raw_old[:200]
    unrelated = rng.randbytes(500)
    return [
        (old_zip, new_zip),
        (old_tgz, new_tgz),
        (raw_old, raw_new),
        (raw_new, unrelated),  # FULL patch (nothing in common)
        (b"", b"tiny"),  # empty base
    ]


def bases() -> list[bytes]:
    return [old for old, _ in artifacts()]


@lru_cache(maxsize=2)
def _aggregator(limits: str = "small"):
    from registry_core import DeltaAggregator

    if limits == "default":
        return DeltaAggregator(archive_aware=True, level=3)
    if limits != "small":
        raise ValueError(f"limits must be one of {LIMITS}")
    return DeltaAggregator(
        archive_aware=True, max_output_size=MAX_OUTPUT, max_expanded_size=MAX_EXPANDED, level=3
    )


def _stored(patch: bytes) -> bytes:
    """The same patch with every section stored uncompressed (what the fixup mode mutates)."""
    from registry_core.delta._format import Codec, parse, serialize

    p = parse(patch)
    sections = []
    for kind in p.sections:
        raw = p.section(kind, limit=1 << 30)
        sections.append((kind, Codec.STORED, len(raw), raw))
    return serialize(
        p.method,
        base_size=p.base_size,
        target_size=p.target_size,
        base_sha256=p.base_sha256,
        target_sha256=p.target_sha256,
        sections=sections,
    )


@lru_cache(maxsize=1)
def patches() -> list[tuple[int, bytes]]:
    """(base index, patch) for every pair, plus a composed chain and a second-generation patch."""
    agg = _aggregator()
    out = []
    for i, (old, new) in enumerate(artifacts()):
        out.append((i, agg.diff(old, new)))
    old_zip, new_zip = artifacts()[0]
    third = new_zip.replace(b"pkg/m4.py", b"pkg/m5.py")  # a renamed member, headers edited
    p1 = agg.diff(old_zip, new_zip)
    p2 = agg.diff(new_zip, third)
    out.append((0, agg.compose([p1, p2])))
    raw_old, raw_new = artifacts()[2]
    out.append((2, agg.full_patch(raw_new, base=raw_old)))
    # Both plain methods explicitly (diff keeps whichever is smaller on this pair): a BINARY
    # patch, and a ZSTD_PREFIX patch (the target as a zstd frame with the base as dictionary).
    from registry_core import DeltaAggregator

    out.append((2, DeltaAggregator(prefix=False, level=3).diff(raw_old, raw_new)))
    out.append((2, _prefix_patch(raw_old, raw_new)))
    # First downloads (method 5 EXPANDED, against the empty base: artifacts()[4][0]).
    out.extend((EMPTY_BASE, p) for p in expanded_patches())
    return out


#: Index in :func:`bases` of the empty base (what EXPANDED patches are made against).
EMPTY_BASE = 4


@lru_cache(maxsize=1)
def expanded_patches() -> list[bytes]:
    """EXPANDED patches of the zip and the tar.gz targets (level 3, whatever their size against
    the plain file: recompress would serve the plain file for some of these small seeds)."""
    from registry_core.delta import _expanded

    agg = _aggregator()
    out = []
    for _, new in artifacts()[:2]:
        patch = _expanded.encode(new, level=3, max_expanded_size=agg.expanded_limit(len(new)))
        if patch is None:  # pragma: no cover - both targets are expandable
            raise AssertionError("seed artifact did not recompress")
        out.append(patch)
    return out


def chunk_size(sel: int) -> int:
    """The feed size the ``expanded`` mode uses for selector byte ``sel``: 1..4096 bytes."""
    return (1, 2, 3, 7, 16, 61, 256, 1000, 4096)[sel % 9]


def _prefix_patch(old: bytes, new: bytes) -> bytes:
    """A ZSTD_PREFIX patch of ``old`` -> ``new`` whatever its size against the other methods."""
    from registry_core.delta import _prefix
    from registry_core.delta._format import Codec, Method, Section, serialize

    frame = _prefix.encode(old, new, level=3)
    return serialize(
        Method.ZSTD_PREFIX,
        base_size=len(old),
        target_size=len(new),
        base_sha256=hashlib.sha256(old).digest(),
        target_sha256=hashlib.sha256(new).digest(),
        sections=[(Section.FRAME, Codec.STORED, len(frame), frame)],
    )


def seeds(mode: str) -> list[bytes]:
    """The seed inputs of ``mode`` (deterministic)."""
    from registry_core.delta._layout import expand

    agg = _aggregator()
    out: list[bytes] = []
    if mode == "raw":
        for base, patch in patches():
            out.append(bytes([base << 2 | 0]) + patch)
        out.append(bytes([2]) + expand(artifacts()[0][0])[0].to_bytes())
        out.append(bytes([2]) + expand(artifacts()[1][0])[0].to_bytes())
        out.append(bytes([3]) + agg.bundle({f"p{i}": p for i, (_, p) in enumerate(patches())}))
        out.append(bytes([3]) + agg.bundle({}))
    elif mode == "fixup":
        for base, patch in patches():
            out.append(bytes([base << 2]) + _stored(patch)[:-32])
            out.append(bytes([base << 2 | 1]) + patch[:-32])  # zstd sections kept
    elif mode == "deflate":
        out.extend(_deflate_seeds())
    elif mode == "expanded":
        for patch in expanded_patches():
            for sel in (0, 3, 5, 8):
                out.append(bytes([sel]) + patch[:-32])
            out.append(bytes([6]) + _stored(patch)[:-32])
    else:
        raise ValueError(f"mode must be one of {MODES}")
    return out


# -- the harness -------------------------------------------------------------------------------


# Findings already reported, which ``--ignore-known`` lets a run step over to look for others.
# Past entry: "chain-target-size" - CHAIN apply did not check the declared target_size against
# the output (fixup mode, 10 s, crash-685b28c7...); fixed in 937f538, the check stays below.
KNOWN: set[str] = set()


def one_input(
    data: bytes,
    mode: str,
    *,
    ignore: frozenset[str] = frozenset(),
    limits: str = "small",
    oracle: bool = False,
) -> None:
    """Run one input; return normally or raise RegistryCoreError. Anything else is a bug.

    ``ignore`` names entries of :data:`KNOWN` not to raise on. ``limits`` picks the
    aggregator's limits (:data:`LIMITS`). With ``oracle`` the input's Python-heap peak and CPU
    time are checked against :func:`memory_allowance` / :func:`time_allowance` (tracemalloc
    must be tracing: :func:`main` starts it) and a :class:`ResourceFinding` is raised beyond.
    """
    if not data:
        return
    if not oracle:
        _run(data, mode, ignore, limits)
        return
    sel, body = data[0], data[1:]
    base = bases()[(sel >> 2) % len(bases())]
    declared = _declared_output(data, mode, limits)
    tracemalloc.reset_peak()
    start_mem = tracemalloc.get_traced_memory()[0]
    start_rss = _max_rss()
    t0 = time.process_time()
    try:
        _run(data, mode, ignore, limits)
    finally:
        cpu = time.process_time() - t0
        peak = tracemalloc.get_traced_memory()[1] - start_mem
        rss_growth = _max_rss() - start_rss
    mem_ok = memory_allowance(len(body), len(base), declared)
    if peak > mem_ok:
        raise ResourceFinding(
            f"{len(data)}-byte input (declared output {declared}) peaked at {peak} bytes of "
            f"Python heap; the allowance is {mem_ok}"
        )
    # Native allocations (zstd windows, the C core) are not traced: the process's peak RSS
    # must not rise by more than the same allowance during one input.
    if rss_growth > mem_ok:
        raise ResourceFinding(
            f"{len(data)}-byte input (declared output {declared}) raised the peak RSS by "
            f"{rss_growth} bytes; the allowance is {mem_ok}"
        )
    t_ok = time_allowance(declared)
    if cpu > t_ok:
        raise ResourceFinding(
            f"{len(data)}-byte input (declared output {declared}) took {cpu:.2f} s of CPU; "
            f"the allowance is {t_ok:.2f} s"
        )


def _max_rss() -> int:
    """Peak resident set size of this process so far, in bytes."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _deflate_seeds() -> list[bytes]:
    """Streams from zlib (levels, strategies, a sync flush) and their records, as deflate-mode
    inputs."""
    import zlib

    from registry_core.delta._reconstruct import correction_record

    rng = random.Random(20261202)
    out: list[bytes] = []
    for i, (level, strategy) in enumerate([(1, 0), (6, 0), (9, 0), (6, 1), (6, 2), (6, 3), (0, 0)]):
        text = _text(rng, 400 + 300 * i)
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
        half = len(text) // 2
        if i % 2:
            stream = c.compress(text[:half]) + c.flush(zlib.Z_SYNC_FLUSH) + c.compress(text[half:])
        else:
            stream = c.compress(text)
        stream += c.flush()
        out.append(b"\x00" + stream)
        record, _ = correction_record(stream, max_content=1 << 20)
        out.append(b"\x01" + len(text).to_bytes(2, "little") + text + record)
    return out


def _run_deflate(data: bytes) -> None:
    from registry_core.delta import _reconstruct as rc
    from registry_core.errors import RegistryCoreError

    sel, body = data[0], data[1:]
    try:
        if sel % 2 == 0:
            t = rc.tokenize(body, max_content=MAX_OUTPUT, max_blocks=4096)
            stream = body[: t.consumed]
            if rc.encode(t.content, t.tokens, t.blocks, max_output=t.consumed) != stream:
                raise AssertionError("encode(tokenize(s)) != s")
            record, _ = rc.correction_record(stream, max_content=MAX_OUTPUT, max_blocks=4096)
            if rc.rebuild_stream(t.content, record, t.consumed) != stream:
                raise AssertionError("rebuild_stream(content, correction_record(s)) != s")
        else:
            n = int.from_bytes(body[:2], "little")
            content, record = body[2 : 2 + n], body[2 + n :]
            rc.rebuild_stream(content, record, 2 * len(content) + 64)
    except RegistryCoreError:
        pass


def _declared_output(data: bytes, mode: str, limits: str) -> int:
    """The output size the input claims, capped by the limit (0 when the header is invalid)."""
    from registry_core.errors import RegistryCoreError

    if mode == "deflate" or not data:
        return 0
    sel, body = data[0], data[1:]
    agg = _aggregator(limits)
    if mode in ("fixup", "expanded"):
        patch = body + hashlib.sha256(body).digest()
    elif sel & 3 in (0, 1):
        patch = body
    else:
        return 0  # layouts and bundles produce no output beyond their input
    try:
        size = agg.inspect(patch).target_size
    except RegistryCoreError:
        return 0
    return max(0, min(int(size), agg.max_output_size))


def _run(data: bytes, mode: str, ignore: frozenset[str], limits: str) -> None:
    from registry_core.delta._layout import Layout
    from registry_core.errors import RegistryCoreError

    if mode == "deflate":
        _run_deflate(data)
        return
    if mode == "expanded":
        _run_expanded(data, limits)
        return
    sel, body = data[0], data[1:]
    agg = _aggregator(limits)
    base = bases()[(sel >> 2) % len(bases())]
    if mode == "fixup":
        patch = body + hashlib.sha256(body).digest()
        op = 0
    else:
        patch = body
        op = sel & 3
    try:
        if op in (0, 1):
            info = agg.inspect(patch)
            out = agg.apply(base, patch)
            # apply verified it; check again here so a silent corruption cannot hide.
            if hashlib.sha256(out).hexdigest() != info.target_sha256:
                raise AssertionError("apply returned bytes that do not match the target digest")
            if len(out) != info.target_size and not (
                info.method == "CHAIN" and "chain-target-size" in ignore
            ):
                raise AssertionError(
                    f"apply returned {len(out)} bytes for a {info.method} patch declaring "
                    f"{info.target_size}"
                )
        elif op == 2:
            layout = Layout.from_bytes(body)
            layout.original_size()
            layout.expanded_size()
            layout.deflate_entries()
            if Layout.from_bytes(layout.to_bytes()) != layout:
                raise AssertionError("Layout.from_bytes(to_bytes(x)) != x")
        else:
            for name, p in agg.unbundle(body, max_entries=64).items():
                if not isinstance(name, str) or not isinstance(p, bytes):
                    raise AssertionError("unbundle returned something else than str -> bytes")
    except RegistryCoreError:
        pass


def _run_expanded(data: bytes, limits: str) -> None:
    """Both EXPANDED decoders on one patch: they must agree (same bytes, or both refuse)."""
    from registry_core.errors import RegistryCoreError

    sel, body = data[0], data[1:]
    agg = _aggregator(limits)
    patch = body + hashlib.sha256(body).digest()
    try:
        one_shot: bytes | None = agg.apply(b"", patch)
        one_err = None
    except RegistryCoreError as exc:
        one_shot, one_err = None, exc
    step = chunk_size(sel)
    dec = agg.expanded_decoder()
    try:
        for pos in range(0, len(patch), step):
            dec.feed(patch[pos : pos + step])
        streamed: bytes | None = dec.finish()
        err = None
    except RegistryCoreError as exc:
        streamed, err = None, exc
    if streamed is not None:
        if hashlib.sha256(streamed).digest() != dec.target_sha256:
            raise AssertionError("ExpandedDecoder returned bytes that do not match the digest")
        if one_shot is None and agg.inspect(patch).method == "EXPANDED":
            raise AssertionError(f"ExpandedDecoder accepted a patch apply refuses ({one_err!r})")
    if one_shot is not None and agg.inspect(patch).method == "EXPANDED" and streamed != one_shot:
        raise AssertionError(f"apply accepted an EXPANDED patch the decoder refuses ({err!r})")


def write_seeds(mode: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in seeds(mode):
        (folder / hashlib.sha1(s).hexdigest()).write_bytes(s)


def main(argv: list[str]) -> None:
    import atheris

    mode = "raw"
    limits = "small"
    oracle = True
    ignore: frozenset[str] = frozenset()
    rest = [argv[0]]
    it = iter(argv[1:])
    for arg in it:
        if arg == "--ignore-known":
            ignore = frozenset(KNOWN)
        elif arg == "--no-oracle":
            oracle = False
        elif arg in ("--mode", "--limits"):
            value = next(it)
            if arg == "--mode":
                mode = value
            else:
                limits = value
        elif arg.startswith("--mode="):
            mode = arg.split("=", 1)[1]
        elif arg.startswith("--limits="):
            limits = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if mode not in MODES:
        raise SystemExit(f"--mode must be one of {MODES}")
    if limits not in LIMITS:
        raise SystemExit(f"--limits must be one of {LIMITS}")
    if not any(a.startswith("-rss_limit_mb=") for a in rest):
        rest.append(f"-rss_limit_mb={RSS_LIMIT_MB[limits]}")
    if not any(a.startswith("-timeout=") for a in rest):
        rest.append(f"-timeout={TIMEOUT_S}")
    with atheris.instrument_imports():
        import registry_core  # noqa: F401
        from registry_core.delta import (  # noqa: F401
            _aggregator,
            _binary,
            _bundle,
            _expanded,
            _format,
            _layout,
            _reconstruct,
        )
    positional = [a for a in rest[1:] if not a.startswith("-")]
    if not positional:
        positional = [str(HERE / "corpus" / mode)]
        rest.append(positional[0])
    first = Path(positional[0])
    if not first.is_dir() or not any(first.iterdir()):
        write_seeds(mode, first)  # an empty or new corpus starts from the seeds
    if not any(a.startswith("-artifact_prefix=") for a in rest):
        # Findings under the library's default limits are kept apart: the corpus replay test
        # runs crashers/<mode>/ with the small limits.
        crashers = HERE / "crashers" / (mode if limits == "small" else f"{mode}-{limits}")
        crashers.mkdir(parents=True, exist_ok=True)
        rest.append(f"-artifact_prefix={crashers}/")
    # Build the seeds' patches before fuzzing starts (they are cached), then trace.
    for s in seeds(mode):
        one_input(s, mode, limits=limits)
    if oracle:
        tracemalloc.start()
        for s in seeds(mode):
            one_input(s, mode, limits=limits, oracle=True)

    def test_one_input(data: bytes) -> None:
        one_input(data, mode, ignore=ignore, limits=limits, oracle=oracle)

    atheris.Setup(rest, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
