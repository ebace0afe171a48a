"""Cache eviction: byte miss ratio of our policies and libCacheSim's on the same requests.

Per trace (the generated release-driven trace, the generated static-Zipf trace, and any
oracleGeneral file named by ``--trace`` or ``$RC_CACHE_TRACE``): the successful file downloads,
cache sizes as fractions of the trace's unique bytes, every policy fed the whole sequence with
the first 70 % of the requests only warming the cache (not counted); the learned policy is
trained on those first 70 % (one model per cache size, as LRB does) and measured on the rest.

libCacheSim's policies read the trace from an oracleGeneral file (written with
``registry_core.ml.traces`` ``write_oracle_general``; its ``next_access_vtime`` is what Belady
needs); ours replay the same requests in Python (``registry_core.eviction.replay``). A second
table gives the cost per event of each of our policies and per decision of the learned one,
beside the cost of the file cache's own I/O for one small file, measured in the same run.

    .venv/bin/python benchmarks/ml/bench_ml_cache.py [--quick] [--seed N] [--trace FILE]
        [--sizes 0.005,0.01,0.05,0.1,0.25]
    .venv/bin/python benchmarks/ml/bench_ml_cache.py --agreement   # that table alone
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from registry_core.eviction import make_policy, replay

FULL_SIZES = (0.005, 0.01, 0.05, 0.10, 0.25)
QUICK_SIZES = (0.01, 0.05, 0.10)
LCS_POLICIES = ("LRU", "ARC", "Sieve", "S3FIFO", "WTinyLFU", "LRB", "GLCache", "BeladySize")
TRAIN_FRACTION = 0.7

Req = tuple[str, int, float]


def _file_requests(requests: Sequence[Any]) -> list[Req]:
    from registry_core.ml._learned_cache import file_requests

    return file_requests(requests)


def _write_oracle(requests: Sequence[Any], path: str) -> int:
    from registry_core.ml.traces._readers import write_oracle_general

    return write_oracle_general(requests, path)


def _libcachesim_bmrs(
    path: str, names: Sequence[str], capacity: int, warmup: int, timeout_s: float = 600.0
) -> dict[str, float | str]:
    """Byte miss ratio of each of libCacheSim's ``names`` after ``warmup`` requests, or why
    not. Each runs in a child process of its own with a time limit, since some of its policies
    crash or do not finish on some traces (seen at caches smaller than the largest objects): the
    table says "crashed" or "timeout" rather than the bench ending or hanging."""
    import subprocess

    out: dict[str, float | str] = {}
    for name in names:
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--lcs", path, str(capacity), str(warmup), name],
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            out[name] = f"timeout ({timeout_s:.0f} s)"
            continue
        if done.returncode != 0:
            out[name] = "crashed" if done.returncode < 0 else f"error {done.returncode}"
            continue
        value = (done.stdout.strip().splitlines() or ["? ?"])[-1].partition(" ")[2]
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = value
    return out


def _libcachesim_child(path: str, name: str, capacity: int, warmup: int) -> float | str:
    """In the child: the byte miss ratio (or why not)."""
    try:
        import libcachesim as lcs
    except ImportError:
        return "no libcachesim"
    try:
        cache = getattr(lcs, name)(capacity)
    except Exception as exc:  # a build without LRB/GLCache says so here
        return f"n/a ({type(exc).__name__})"
    reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
    req_bytes = miss_bytes = 0
    for i, req in enumerate(reader):
        hit = cache.get(req)
        if i >= warmup:
            req_bytes += req.obj_size
            if not hit:
                miss_bytes += req.obj_size
    return miss_bytes / req_bytes if req_bytes else 0.0


class _Timed:
    """Wrap a policy, timing its choose_victims calls (the learned policy's decisions)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def record_insert(self, key: str, size: int, now: float) -> None:
        self.inner.record_insert(key, size, now)

    def record_access(self, key: str, now: float) -> None:
        self.inner.record_access(key, now)

    def record_remove(self, key: str) -> None:
        self.inner.record_remove(key)

    def choose_victims(self, need_bytes: int) -> list[str]:
        t = time.process_time()
        out = self.inner.choose_victims(need_bytes)
        self.seconds += time.process_time() - t
        self.calls += 1
        return out


def _fmt(v: float | str, best: float | None) -> str:
    if isinstance(v, str):
        return v
    s = f"{v:.4f}"
    return f"**{s}**" if best is not None and abs(v - best) < 5e-5 else s


def evaluate(
    name: str,
    trace_requests: Sequence[Any],
    source: str,
    sizes: Sequence[float],
    *,
    seed: int,
    meta_factory: Callable[[], Any] | None,
    costs: dict[str, list[float]],
    lcs_timeout_s: float = 600.0,
) -> tuple[str, dict[float, dict[str, float | str]]]:
    """One trace's table (rows: policies, columns: cache sizes) and its figures."""
    from registry_core.ml._learned_cache import LearnedEviction, train

    reqs = _file_requests(trace_requests)
    cut = int(len(reqs) * TRAIN_FRACTION)
    split_t = reqs[cut][2]
    head = [r for r in trace_requests if r.time < split_t]
    unique: dict[str, int] = {}
    for key, size, _ in reqs:
        unique[key] = size
    total_unique = sum(unique.values())
    results: dict[float, dict[str, float | str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.oracleGeneral")
        written = _write_oracle(trace_requests, path)
        assert written == len(reqs), (written, len(reqs))
        for frac in sizes:
            cap = max(1, int(total_unique * frac))
            row: dict[str, float | str] = {}
            theirs = _libcachesim_bmrs(path, LCS_POLICIES, cap, cut, timeout_s=lcs_timeout_s)
            for lname in LCS_POLICIES:
                row[f"libCacheSim {lname}"] = theirs[lname]
            for pname in ("lru", "sieve", "s3fifo"):
                t = time.process_time()
                r = replay(make_policy(pname, capacity_bytes=cap), reqs, cap, warmup=cut)
                costs.setdefault(pname, []).append((time.process_time() - t) / len(reqs))
                row[f"ours {pname.upper() if pname == 'lru' else pname}"] = r.byte_miss_ratio
            variants = [("ours learned", meta_factory() if meta_factory else None)]
            if meta_factory is not None:
                variants.append(("ours learned, no registry features", None))
            for label, meta in variants:
                art = train(
                    head,
                    capacity_bytes=cap,
                    seed=seed,
                    meta=meta,
                    use_catalogue=False,
                    source=source,
                )
                policy = _Timed(LearnedEviction.from_artifact(art, meta=meta))
                r = replay(policy, reqs, cap, warmup=cut)
                row[label] = r.byte_miss_ratio
                if policy.inner.decisions:
                    costs.setdefault("learned decision", []).append(
                        policy.seconds / policy.inner.decisions
                    )
                costs.setdefault("model bytes", []).append(float(len(art.payload)))
            results[frac] = row
    names = list(next(iter(results.values())))
    head_row = "| policy | " + " | ".join(f"{f * 100:g}%" for f in sizes) + " |"
    lines = [
        f"### {name}",
        "",
        f"Trace `{source}`: {len(reqs)} file downloads, {len(unique)} files, "
        f"{total_unique / 1e6:.1f} MB unique; first {TRAIN_FRACTION:.0%} warm (and train), "
        f"byte miss ratio on the remaining {len(reqs) - cut} requests. Cache sizes: % of the "
        "unique bytes. Bold: the best of each column apart from Belady.",
        "",
        head_row,
        "|" + "---|" * (len(sizes) + 1),
    ]
    for n in names:
        cells = []
        for frac in sizes:
            numeric = [
                v for k, v in results[frac].items() if isinstance(v, float) and "Belady" not in k
            ]
            cells.append(_fmt(results[frac][n], min(numeric) if numeric else None))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(_verdict(results, sizes))
    return "\n".join(lines), results


def _verdict(results: dict[float, dict[str, float | str]], sizes: Sequence[float]) -> str:
    """Where the learned policy beats the best of our simple ones (and by how much)."""
    out = []
    for frac in sizes:
        row = results[frac]
        simple = {k: v for k, v in row.items() if k in ("ours LRU", "ours sieve", "ours s3fifo")}
        best_name = min(simple, key=lambda k: float(simple[k]))
        learned = float(row["ours learned"])
        diff = float(simple[best_name]) - learned
        out.append(
            f"{frac * 100:g}%: learned {'wins' if diff > 0 else 'loses'} by {abs(diff):.4f} "
            f"against {best_name}"
        )
    return "Learned vs the best simple policy: " + "; ".join(out) + "."


def _io_cost(seed: int) -> float:
    """Seconds of one FileCache put + read of a 1 KiB file (the cache's own work per file)."""
    from registry_core.proxy._cache import FileCache

    with tempfile.TemporaryDirectory() as tmp:
        cache = FileCache(tmp, max_bytes=1 << 30, clock=time.monotonic)
        data = os.urandom(1024)
        n = 300
        t = time.process_time()
        for i in range(n):
            key = f"p/f{seed}-{i}.tar.gz"
            cache.put(key, data)
            cache.read(key)
        return (time.process_time() - t) / n


def _cost_table(costs: dict[str, list[float]], io: float) -> str:
    lines = [
        "### Cost per event",
        "",
        "CPU time per request replayed (our simple policies: the replay loop included) and per "
        "eviction decision of the learned policy (64 sampled candidates, features and one "
        "TreeEnsemble batch predict), beside one FileCache put + read of a 1 KiB "
        "file (CPU time, the cache's own I/O), medians over the traces and sizes above.",
        "",
        "| what | median |",
        "|---|---|",
    ]
    for name in ("lru", "sieve", "s3fifo"):
        if costs.get(name):
            lines.append(f"| {name} per request | {statistics.median(costs[name]) * 1e9:.0f} ns |")
    if costs.get("learned decision"):
        med = statistics.median(costs["learned decision"])
        lines.append(f"| learned per eviction decision | {med * 1e6:.0f} µs |")
    if costs.get("model bytes"):
        lines.append(f"| learned model size | {statistics.median(costs['model bytes']):.0f} B |")
    lines.append(f"| FileCache put + read, 1 KiB | {io * 1e6:.0f} µs |")
    return "\n".join(lines)


def agreement(seed: int = 0, n: int = 100_000, objects: int = 5000) -> str:
    """Our LRU, SIEVE and S3-FIFO against libCacheSim's on one Zipf(0.9) trace of unit-size
    objects: miss ratios side by side, and on how many requests the two disagree."""
    import random

    try:
        import libcachesim as lcs
    except ImportError:
        return "### Agreement with libCacheSim\n\nlibcachesim is not installed.\n"
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 0.9 for i in range(objects)]
    keys = rng.choices(range(objects), weights=weights, k=n)
    lines = [
        "### Agreement with libCacheSim",
        "",
        f"Zipf(0.9) over {objects} unit-size objects, {n} requests (seed {seed}): object miss "
        "ratio of libCacheSim's policy and ours on the same requests, and the requests where "
        "one hits and the other misses.",
        "",
        "| policy | cache (objects) | libCacheSim | ours | requests decided differently |",
        "|---|---|---|---|---|",
    ]
    for name, theirs in (("lru", "LRU"), ("sieve", "Sieve"), ("s3fifo", "S3FIFO")):
        for cap in (50, 250, 1000):
            cache = getattr(lcs, theirs)(cap)
            a = [bool(cache.get(lcs.Request(obj_size=1, obj_id=k + 1, clock_time=i)))
                 for i, k in enumerate(keys)]  # fmt: skip
            reqs = ((str(k), 1, float(i)) for i, k in enumerate(keys))
            b = replay(make_policy(name, capacity_bytes=cap), reqs, cap, record=True).hits
            diff = sum(x != y for x, y in zip(a, b, strict=True))
            lines.append(
                f"| {name} | {cap} | {1 - sum(a) / n:.4f} | {1 - sum(b) / n:.4f} | {diff} |"
            )
    return "\n".join(lines) + "\n"


def run(
    quick: bool = False,
    seed: int = 0,
    trace: str | None = None,
    sizes: Sequence[float] | None = None,
) -> str:
    """The cache tables (markdown): one per trace, then the cost table. ``sizes``: cache sizes
    as fractions of the unique bytes (default: 1, 5, 10 % quick; 0.5 to 25 % in full)."""
    from registry_core.ml._learned_cache import catalogue_meta
    from registry_core.ml.traces import TrafficModel, generate

    sizes = tuple(sizes) if sizes else (QUICK_SIZES if quick else FULL_SIZES)
    days = 4.0 if quick else 7.0
    clients = 150 if quick else None
    lcs_timeout_s = 120.0 if quick else 900.0  # CPU-starved machines: a slow cell, not a hang
    costs: dict[str, list[float]] = {}
    parts = ["## Cache eviction", ""]
    release = generate(seed=seed, days=days, clients=clients)
    text, _ = evaluate(
        "Release-driven (generated)",
        release.requests,
        release.source,
        sizes,
        seed=seed,
        meta_factory=lambda: catalogue_meta(release.catalogue),
        costs=costs,
        lcs_timeout_s=lcs_timeout_s,
    )
    parts += [text, ""]
    static = generate(TrafficModel.static_zipf(), seed=seed, days=days, clients=clients)
    text, _ = evaluate(
        "Static Zipf (generated)",
        static.requests,
        static.source,
        sizes,
        seed=seed,
        meta_factory=None,
        costs=costs,
        lcs_timeout_s=lcs_timeout_s,
    )
    parts += [text, ""]
    trace = trace or os.environ.get("RC_CACHE_TRACE")
    if trace:
        from registry_core.ml.traces._readers import read_oracle_general

        given = list(read_oracle_general(trace))
        text, _ = evaluate(
            f"oracleGeneral file {Path(trace).name}",
            given,
            f"file:{trace}",
            sizes,
            seed=seed,
            meta_factory=None,
            costs=costs,
        )
        parts += [text, ""]
    parts.append(_cost_table(costs, _io_cost(seed)))
    parts += ["", agreement(seed, n=20_000 if quick else 100_000)]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lcs"]:
        p, c, w, *ns = sys.argv[2:]
        for n in ns:
            print(n, _libcachesim_child(p, n, int(c), int(w)), flush=True)
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trace", help="an oracleGeneral file to evaluate too")
    ap.add_argument("--agreement", action="store_true", help="only the libCacheSim agreement")
    ap.add_argument("--sizes", help="cache sizes as fractions, e.g. 0.005,0.01,0.05,0.1,0.25")
    a = ap.parse_args()
    fracs = [float(x) for x in a.sizes.split(",")] if a.sizes else None
    print(
        agreement(a.seed)
        if a.agreement
        else run(quick=a.quick, seed=a.seed, trace=a.trace, sizes=fracs)
    )
