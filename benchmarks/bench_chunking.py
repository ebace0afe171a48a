"""Chunking benchmark: registry-core's C FastCDC against pyfastcdc on the real corpus.

Run from the repository root after ``python benchmarks/fetch_corpus.py``::

    python benchmarks/bench_chunking.py [--sizes MIN AVG MAX ...] [--repeat N] [--no-sweep]

1. Throughput (MB/s) of ``registry_core.chunking.chunks`` and ``pyfastcdc.cy.FastCDC``
   (normalized chunking level 2, the same level as ours) with the same (min, avg, max) -- by
   default our defaults and pyfastcdc's usual 2048/8192/65536 -- on three inputs: each corpus
   artifact as downloaded (compressed: high entropy), each artifact's unpacked content (one
   call per artifact), and all unpacked content as one ~160 MB buffer (memory-bound).
   Both run in this process, interleaved; each figure is the best of ``--repeat``
   passes (default 15; the machine is shared, the best pass is the least disturbed one),
   timed by the thread's CPU time (descheduled time not counted) and by the wall clock.
2. Dedup quality, both chunkers: for each two consecutive releases in the corpus, the fraction
   of release N+1's unpacked bytes that lie in chunks also present in release N (matched by
   XXH3-128 content id). "Unpacked" = every archive member's bytes, in member-name order,
   concatenated (a tar-like stream). Aggregated byte-weighted per kind and overall.
3. Size sweep (ours): dedup and chunk count for several average sizes, plus the bytes a client
   would fetch (unmatched bytes + 48 bytes of chunk list per chunk of N+1), which is how the
   defaults were chosen (docs/chunking.md).

Prints tables and writes benchmarks/results/chunking.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tarfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _corpus import corpus_dir, pairs, series
from registry_core import build_info
from registry_core.chunking import (
    DEFAULT_AVG_SIZE,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    chunks,
)
from registry_core.hashing import content_id

RESULTS = Path(__file__).resolve().parent / "results" / "chunking.json"
CHUNK_LIST_COST = 48  # bytes per chunk in a manifest: 16-byte id + offsets + framing


def unpacked(path: Path) -> bytes:
    """Members of a wheel (zip) or sdist (tar.gz) concatenated in name order."""
    parts = []
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as z:
            for name in sorted(z.namelist()):
                parts.append(z.read(name))
    else:
        with tarfile.open(path) as tf:
            members = sorted((m for m in tf.getmembers() if m.isfile()), key=lambda m: m.name)
            for m in members:
                f = tf.extractfile(m)
                if f is not None:
                    parts.append(f.read())
    return b"".join(parts)


def ours(data: bytes, sizes: tuple[int, int, int]) -> list[int]:
    return chunks(data, min_size=sizes[0], avg_size=sizes[1], max_size=sizes[2])


def theirs(data: bytes, sizes: tuple[int, int, int]) -> list[int]:
    from pyfastcdc.cy import FastCDC

    cdc = FastCDC(sizes[1], min_size=sizes[0], max_size=sizes[2], normalized_chunking=2)
    return [c.offset + c.length for c in cdc.cut_buf(data)]


CHUNKERS = {"registry-core": ours, "pyfastcdc": theirs}


def throughput(
    datasets: dict[str, list[bytes]], sizes: tuple[int, int, int], repeat: int
) -> list[dict]:
    """Best-of-``repeat`` MB/s of each chunker over each dataset (a list of buffers, one call
    per buffer), passes interleaved so both see the same machine conditions.

    Two clocks: the thread's CPU time (``time.thread_time``: the C code of both chunkers runs
    on this thread, and time spent descheduled by other jobs on a shared machine is not
    counted) and wall time. The CPU-time figures are the headline; both are recorded.
    """
    rows = []
    for name, items in datasets.items():
        total = sum(len(d) for d in items)
        best_cpu = {k: float("inf") for k in CHUNKERS}
        best_wall = {k: float("inf") for k in CHUNKERS}
        counts = {}
        for _ in range(repeat):
            for label, fn in CHUNKERS.items():
                n = 0
                c0, w0 = time.thread_time(), time.perf_counter()
                for data in items:
                    n += len(fn(data, sizes))
                w1, c1 = time.perf_counter(), time.thread_time()
                best_cpu[label] = min(best_cpu[label], c1 - c0)
                best_wall[label] = min(best_wall[label], w1 - w0)
                counts[label] = n
        cpu = {k: total / v / 1e6 for k, v in best_cpu.items()}
        wall = {k: total / v / 1e6 for k, v in best_wall.items()}
        rows.append(
            {
                "input": name,
                "bytes": total,
                "calls": len(items),
                "ours_mb_s": round(cpu["registry-core"], 1),
                "pyfastcdc_mb_s": round(cpu["pyfastcdc"], 1),
                "ratio": round(cpu["registry-core"] / cpu["pyfastcdc"], 3),
                "ours_wall_mb_s": round(wall["registry-core"], 1),
                "pyfastcdc_wall_mb_s": round(wall["pyfastcdc"], 1),
                "wall_ratio": round(wall["registry-core"] / wall["pyfastcdc"], 3),
                "ours_chunks": counts["registry-core"],
                "pyfastcdc_chunks": counts["pyfastcdc"],
            }
        )
    return rows


def chunk_ids(data: bytes, ends: list[int]) -> list[tuple[str, int]]:
    view = memoryview(data)
    out, start = [], 0
    for end in ends:
        out.append((content_id(view[start:end]), end - start))
        start = end
    return out


def dedup(pairs_data: list[tuple[str, str, bytes, bytes]], fn, sizes) -> dict:
    """Byte-weighted reuse of N's chunks in N+1, per kind and overall."""
    per_kind: dict[str, list[int]] = {}
    for _name, kind, old, new in pairs_data:
        old_ids = {cid for cid, _ in chunk_ids(old, fn(old, sizes))}
        new_chunks = chunk_ids(new, fn(new, sizes))
        reused = sum(n for cid, n in new_chunks if cid in old_ids)
        acc = per_kind.setdefault(kind, [0, 0, 0])
        acc[0] += reused
        acc[1] += len(new)
        acc[2] += len(new_chunks)
    total = [sum(v[i] for v in per_kind.values()) for i in range(3)]
    out = {
        k: {
            "reused_bytes": v[0],
            "bytes": v[1],
            "chunks": v[2],
            "reuse": round(v[0] / v[1], 4) if v[1] else None,
        }
        for k, v in per_kind.items()
    }
    out["all"] = {
        "reused_bytes": total[0],
        "bytes": total[1],
        "chunks": total[2],
        "reuse": round(total[0] / total[1], 4) if total[1] else None,
        "fetch_bytes": total[1] - total[0] + CHUNK_LIST_COST * total[2],
    }
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        nargs=3,
        type=int,
        metavar=("MIN", "AVG", "MAX"),
        action="append",
        default=None,
        help="chunk sizes to compare at (repeatable); default: ours and 8 KiB",
    )
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-sweep", action="store_true", help="skip the size sweep")
    args = parser.parse_args(argv)
    size_sets = [
        tuple(s)
        for s in (
            args.sizes
            or [(DEFAULT_MIN_SIZE, DEFAULT_AVG_SIZE, DEFAULT_MAX_SIZE), (2048, 8192, 65536)]
        )
    ]

    present = series()
    if not present:
        print(f"no corpus under {corpus_dir()}: run python benchmarks/fetch_corpus.py first")
        return 1
    raw = [p.read_bytes() for s in present for p in s.paths]
    unpacked_cache: dict[Path, bytes] = {}

    def unp(path: Path) -> bytes:
        if path not in unpacked_cache:
            unpacked_cache[path] = unpacked(path)
        return unpacked_cache[path]

    content = [unp(p) for s in present for p in s.paths]
    files = len(raw)
    raw_mb, content_mb = sum(map(len, raw)) / 1e6, sum(map(len, content)) / 1e6
    print(
        f"corpus: {files} artifacts in {len(present)} series, {raw_mb:.1f} MB as "
        f"downloaded, {content_mb:.1f} MB unpacked ({corpus_dir()})"
    )
    print(
        f"MB/s from thread CPU time, best of {args.repeat} passes per chunker, interleaved "
        "(wall-clock ratio alongside); load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    datasets = {
        "artifacts, per file": raw,  # compressed: high entropy, cache-sized calls
        "unpacked, per artifact": content,  # one call per artifact's unpacked content
        "unpacked, one buffer": [b"".join(content)],  # one ~160 MB call: memory-bound
    }
    pairs_data = [(name, kind, unp(old), unp(new)) for name, kind, old, new in pairs()]
    rows, quality = [], {}
    for sizes in size_sets:
        label_sizes = "/".join(map(str, sizes))
        print(f"\nthroughput at min/avg/max = {label_sizes}")
        got = throughput(datasets, sizes, args.repeat)
        print(
            f"{'input':24} {'MB':>7} {'registry-core MB/s':>19} {'pyfastcdc MB/s':>15} "
            f"{'ratio':>6} {'wall ratio':>11} {'chunks (ours/theirs)':>21}"
        )
        for r in got:
            r["sizes"] = sizes
            print(
                f"{r['input']:24} {r['bytes'] / 1e6:7.1f} {r['ours_mb_s']:19.0f} "
                f"{r['pyfastcdc_mb_s']:15.0f} {r['ratio']:6.2f} {r['wall_ratio']:11.2f} "
                f"{r['ours_chunks']:>10}/{r['pyfastcdc_chunks']:<10}"
            )
        rows += got

        q = {label: dedup(pairs_data, fn, sizes) for label, fn in CHUNKERS.items()}
        quality[label_sizes] = q
        kinds = [k for k in q["registry-core"] if k != "all"] + ["all"]
        print(
            f"dedup at {label_sizes}: share of release N+1's unpacked bytes in chunks of "
            f"release N ({len(pairs_data)} consecutive pairs)"
        )
        print(f"{'kind':14} {'MB':>8} {'registry-core':>14} {'pyfastcdc':>10}")
        for k in kinds:
            a, b = q["registry-core"][k], q["pyfastcdc"][k]
            print(f"{k:14} {a['bytes'] / 1e6:8.1f} {a['reuse']:14.2%} {b['reuse']:10.2%}")
    del raw, content, datasets

    sweep = []
    if not args.no_sweep:
        print(
            "\nsize sweep (registry-core; fetch = unmatched bytes + "
            f"{CHUNK_LIST_COST} B per chunk of N+1)"
        )
        print(
            f"{'min/avg/max':>20} {'reuse':>7} {'chunks':>8} {'unmatched MB':>13} "
            f"{'fetch MB':>9}"
        )
        for avg in (1024, 2048, 4096, 8192, 16384, 32768):
            cand = (avg // 4, avg, avg * 8)
            q = dedup(pairs_data, ours, cand)["all"]
            sweep.append({"sizes": cand, **q})
            print(
                f"{'/'.join(map(str, cand)):>20} {q['reuse']:7.2%} {q['chunks']:8} "
                f"{(q['bytes'] - q['reused_bytes']) / 1e6:13.2f} {q['fetch_bytes'] / 1e6:9.2f}"
            )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "command": "python benchmarks/bench_chunking.py " + " ".join(argv or sys.argv[1:]),
                "machine": {
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "cpu": _cpu_model(),
                    "cpus": os.cpu_count(),
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                },
                "build": build_info(),
                "corpus": {"dir": str(corpus_dir()), "artifacts": files},
                "sizes": size_sets,
                "repeat": args.repeat,
                "throughput": rows,
                "dedup": quality,
                "sweep": sweep,
            },
            indent=2,
            default=list,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
