"""Compression benchmark: registry-core's Compressor against gzip -9 (zlib) on real content.

Run from the repository root after ``python benchmarks/fetch_corpus.py``::

    python benchmarks/bench_compress.py [--repeat N] [--quick]

1. Large payloads, each set measured as one total (bytes summed over its payloads):
   - ``sdist-tar``: every corpus sdist, gunzipped to its plain tar;
   - ``wheel-contents``: the newest wheel of each corpus series, its members re-packed into a
     plain tar (tarfile, PAX) -- what a registry stores or streams unpacked;
   - ``published``: the newest artifact of each series as published (.whl, .tar.gz);
   - ``sdists-one-stream``: all corpus sdists, gunzipped and concatenated in release order
     (a mirror bundle: consecutive releases in one stream, where long-distance matching works);
   - ``python-stdlib-tar``: the running interpreter's ``lib/pythonX.Y`` source tree (no
     site-packages, no bytecode, no shared objects) as one tar of at most 64 MiB: the largest
     real source tree available offline here, standing in for a large sdist.
2. Small documents: registry metadata records (JSON, PyPI JSON API ``info`` shape without the
   long description) built from real METADATA files: the corpus wheels' plus every installed
   distribution of this machine's Python environments. Split by *project* (SHA-256 of the name):
   the dictionary (16 KiB, trained on the training half) never saw the projects it is measured
   on. A second split by *document* shows the case of new releases of known projects.
   Each document is compressed on its own (one call per document).

Speeds are single-thread CPU time (``time.thread_time``: time descheduled by other processes on
this shared machine is not counted), best of ``--repeat`` passes; every output is decoded and
compared with its input. Prints tables and writes ``benchmarks/results/compress.json``.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import sysconfig
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _corpus import series
from registry_core import Compressor, build_info
from registry_core.compress import _auto

RESULTS = Path(__file__).resolve().parent / "results" / "compress.json"
MB = 1e6
GOAL_SMALL_SAVING = 55.0  # % smaller than gzip -9
GOAL_SMALL_US = 10.0
GOAL_LARGE_SAVING = 40.0
GOAL_LARGE_CMBS = 10.0
GOAL_LARGE_DMBS = 500.0


# -- data ----------------------------------------------------------------------------------------


def _tar_of(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def large_sets(quick: bool) -> dict[str, list[bytes]]:
    sdists = [p for s in series(kinds=["sdist"]) for p in s.paths]
    newest = [s.paths[-1] for s in series()]
    sets: dict[str, list[bytes]] = {}
    sets["sdist-tar"] = [gzip.decompress(p.read_bytes()) for p in sdists]
    contents = []
    for p in newest:
        if p.name.endswith(".whl"):
            with zipfile.ZipFile(p) as z:
                contents.append(_tar_of([(n, z.read(n)) for n in sorted(z.namelist())]))
    sets["wheel-contents"] = contents
    sets["published"] = [p.read_bytes() for p in newest]
    sets["sdists-one-stream"] = [b"".join(sets["sdist-tar"])]
    sets["python-stdlib-tar"] = [stdlib_tar(16 << 20 if quick else 64 << 20)]
    return {k: v for k, v in sets.items() if v and sum(map(len, v))}


def stdlib_tar(limit: int) -> bytes:
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ("site-packages", "__pycache__", "lib-dynload")
            and not d.startswith("config-")
        )
        for fn in sorted(filenames):
            path = Path(dirpath) / fn
            if fn.endswith((".pyc", ".so", ".a")) or path.is_symlink():
                continue
            size = path.stat().st_size
            if total + size > limit:
                continue
            files.append(path)
            total += size
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in files:
            tf.add(path, arcname=str(path.relative_to(root.parent)))
    return buf.getvalue()


def metadata_record(text: str) -> dict:
    """PyPI JSON API ``info``-like record from a METADATA file (no long description)."""
    import email.parser

    msg = email.parser.Parser().parsestr(text, headersonly=True)
    record: dict = {}
    for key in (
        "Name",
        "Version",
        "Summary",
        "Home-page",
        "Author",
        "Author-email",
        "License",
        "Requires-Python",
        "Metadata-Version",
        "Keywords",
    ):
        value = msg.get(key)
        if value is not None:
            record[key.lower().replace("-", "_")] = str(value)
    for key in ("Classifier", "Requires-Dist", "Provides-Extra", "Project-URL", "Platform"):
        values = msg.get_all(key)
        if values:
            record[key.lower().replace("-", "_")] = [str(v) for v in values]
    return record


def metadata_roots() -> list[str]:
    patterns = [
        os.path.expanduser("~/.pyenv/versions/*/lib/python*/site-packages"),
        "/usr/lib/python3*/dist-packages",
        "/usr/local/lib/python3*/*-packages",
        *[p for p in sys.path if p.endswith("-packages")],
    ]
    return sorted({r for pat in patterns for r in glob.glob(pat)})


def metadata_documents() -> tuple[list[bytes], dict]:
    texts = []
    for s in series():
        for p in s.paths:
            if p.name.endswith(".whl"):
                with zipfile.ZipFile(p) as z:
                    texts += [
                        z.read(n).decode("utf-8", "replace")
                        for n in z.namelist()
                        if n.endswith(".dist-info/METADATA")
                    ]
    from_corpus = len(texts)
    roots = metadata_roots()
    for root in roots:
        for path in sorted(
            glob.glob(f"{root}/*.dist-info/METADATA")
            + glob.glob(f"{root}/*/_vendor/*.dist-info/METADATA")
        ):
            with open(path, encoding="utf-8", errors="replace") as fh:
                texts.append(fh.read())
    seen, docs = set(), []
    for text in texts:
        record = metadata_record(text)
        key = (str(record.get("name", "")).lower(), record.get("version"))
        if not key[0] or key in seen:
            continue
        seen.add(key)
        docs.append(json.dumps(record, sort_keys=True).encode())
    info = {
        "metadata_files": len(texts),
        "from_corpus_wheels": from_corpus,
        "roots": roots,
        "documents": len(docs),
    }
    return docs, info


def split(docs: list[bytes], by: str) -> tuple[list[bytes], list[bytes]]:
    def bucket(d: bytes) -> int:
        key = json.loads(d)["name"].lower().encode() if by == "project" else d
        return hashlib.sha256(key).digest()[0] % 2

    return [d for d in docs if bucket(d) == 0], [d for d in docs if bucket(d) == 1]


# -- timing --------------------------------------------------------------------------------------


def best_cpu(fn: Callable[[], object], repeat: int) -> tuple[object, float]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.thread_time()
        result = fn()
        best = min(best, time.thread_time() - start)
    return result, max(best, 1e-9)


def gzip9(data: bytes) -> bytes:
    cobj = zlib.compressobj(9, zlib.DEFLATED, 31)
    return cobj.compress(data) + cobj.flush()


# -- large ---------------------------------------------------------------------------------------


def large_configs(quick: bool) -> list[tuple[str, Callable[[], Compressor] | None]]:
    configs: list[tuple[str, Callable[[], Compressor] | None]] = [
        ("gzip -9 (zlib)", None),
        ("gzip 6", lambda: Compressor("gzip", 6)),
        ("zstd 3", lambda: Compressor("zstd", 3)),
        ("zstd 9", lambda: Compressor("zstd", 9)),
        (
            f"auto: zstd {_auto.LARGE_LEVEL} + LDM",
            lambda: Compressor("zstd", _auto.LARGE_LEVEL, long_distance=True),
        ),
        ("zstd 12", lambda: Compressor("zstd", 12)),
        ("zstd 19", lambda: Compressor("zstd", 19)),
        ("zstd 19 + LDM", lambda: Compressor("zstd", 19, long_distance=True)),
        ("br 5", lambda: Compressor("br", 5)),
        ("br 9", lambda: Compressor("br", 9)),
    ]
    if quick:
        configs = [c for c in configs if not c[0].startswith(("zstd 19", "br 9"))]
    return configs


def bench_large(sets: dict[str, list[bytes]], repeat: int, quick: bool) -> list[dict]:
    rows = []
    for set_name, payloads in sets.items():
        raw = sum(map(len, payloads))
        base_size = None
        for name, make in large_configs(quick):
            slow = any(k in name for k in ("19", "br 9"))
            reps = 1 if slow else repeat
            if make is None:
                outs, ct = best_cpu(lambda ps=payloads: [gzip9(p) for p in ps], reps)
                dec = gzip.decompress
            else:
                c = make()
                outs, ct = best_cpu(lambda c=c, ps=payloads: [c.compress(p) for p in ps], reps)
                dec = c.decompress  # type: ignore[assignment]
            for p, o in zip(payloads, outs, strict=False):  # type: ignore[call-overload]
                assert dec(o) == p, (set_name, name)
            _, dt = best_cpu(lambda dec=dec, outs=outs: [dec(o) for o in outs], max(3, reps))
            size = sum(map(len, outs))  # type: ignore[arg-type]
            if base_size is None:
                base_size = size
            row = {
                "set": set_name,
                "codec": name,
                "payloads": len(payloads),
                "input_bytes": raw,
                "output_bytes": size,
                "ratio": round(raw / size, 3),
                "vs_gzip9_pct": round(100 * (1 - size / base_size), 1),
                "compress_MBps": round(raw / ct / MB, 1),
                "decompress_MBps": round(raw / dt / MB, 1),
            }
            rows.append(row)
            print(
                f"  {set_name:18s} {name:22s} {size:>11,d} {row['vs_gzip9_pct']:>6.1f}% "
                f"{row['compress_MBps']:>8.1f} {row['decompress_MBps']:>8.1f}",
                flush=True,
            )
    return rows


# -- small ---------------------------------------------------------------------------------------


def bench_small(docs: list[bytes], by: str, repeat: int) -> tuple[list[dict], dict]:
    train, test = split(docs, by)
    d, tt = best_cpu(lambda: Compressor.train_dictionary(train, 16384), 1)
    dictionary = d  # type: ignore[assignment]
    raw = sum(map(len, test))
    configs: list[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]] = [
        ("gzip -9 (zlib)", lambda x: zlib.compress(x, 9), zlib.decompress),
        ("zlib -6", lambda x: zlib.compress(x, 6), zlib.decompress),
        ("gzip 9 (gzip container)", gzip9, gzip.decompress),
    ]

    def add(name: str, c: Compressor) -> None:
        configs.append((name, c.compress, c.decompress))

    add("zstd 3", Compressor("zstd", 3))
    add("zstd 9", Compressor("zstd", 9))
    add("zstd 19", Compressor("zstd", 19))
    add("br 5", Compressor("br", 5))
    add("br 11", Compressor("br", 11))
    for level in (1, 3, 6, 12, 19):
        add(
            f"zstd {level} + dict", Compressor("zstd", level, dictionary=dictionary, checksum=False)
        )
    auto = Compressor.auto(test[0], "application/json", dictionary=dictionary)
    add(f"auto (zstd {auto.level} + dict)", auto)
    rows, base = [], None
    for name, comp, dec in configs:
        outs, ct = best_cpu(lambda comp=comp: [comp(x) for x in test], repeat)
        for x, o in zip(test, outs, strict=False):  # type: ignore[call-overload]
            assert dec(o) == x, name
        _, dt = best_cpu(lambda dec=dec, outs=outs: [dec(o) for o in outs], repeat)
        size = sum(map(len, outs))  # type: ignore[arg-type]
        if base is None:
            base = size
        zlib6 = sum(len(zlib.compress(x, 6)) for x in test)
        row = {
            "split": by,
            "codec": name,
            "documents": len(test),
            "input_bytes": raw,
            "output_bytes": size,
            "vs_gzip9_pct": round(100 * (1 - size / base), 1),
            "vs_zlib6_pct": round(100 * (1 - size / zlib6), 1),
            "compress_us_per_doc": round(ct / len(test) * 1e6, 2),
            "decompress_us_per_doc": round(dt / len(test) * 1e6, 2),
        }
        rows.append(row)
        print(
            f"  {by:8s} {name:24s} {size:>8,d} {row['vs_gzip9_pct']:>6.1f}% "
            f"{row['vs_zlib6_pct']:>6.1f}% {row['compress_us_per_doc']:>9.2f} "
            f"{row['decompress_us_per_doc']:>9.2f}",
            flush=True,
        )
    info = {
        "split": by,
        "train_documents": len(train),
        "test_documents": len(test),
        "dictionary_bytes": len(dictionary),
        "dictionary_id": dictionary.id,
        "train_seconds": round(tt, 3),
    }
    return rows, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="passes per figure (best kept)")
    ap.add_argument("--quick", action="store_true", help="16 MiB stdlib tar, no zstd 19/br 9")
    ap.add_argument("--no-large", action="store_true")
    args = ap.parse_args(argv)
    result: dict = {
        "command": "python benchmarks/bench_compress.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "build": build_info(),
        "goals": {
            "small_saving_pct": GOAL_SMALL_SAVING,
            "small_us_per_doc": GOAL_SMALL_US,
            "large_saving_pct": GOAL_LARGE_SAVING,
            "large_compress_MBps": GOAL_LARGE_CMBS,
            "large_decompress_MBps": GOAL_LARGE_DMBS,
        },
    }
    docs, meta = metadata_documents()
    result["metadata"] = meta
    print(
        f"small documents: {meta['documents']} records from {meta['metadata_files']} "
        "METADATA files"
    )
    print(
        f"  {'split':8s} {'codec':24s} {'bytes':>8s} {'vs gz9':>7s} {'vs z6':>7s} "
        f"{'us/doc c':>9s} {'us/doc d':>9s}"
    )
    small, infos = [], []
    for by in ("project", "document"):
        rows, info = bench_small(docs, by, args.repeat)
        small += rows
        infos.append(info)
    result["small"] = small
    result["dictionaries"] = infos
    if not args.no_large:
        sets = large_sets(args.quick)
        result["large_sets"] = {
            k: {"payloads": len(v), "bytes": sum(map(len, v))} for k, v in sets.items()
        }
        print("large payloads (MB/s: single-thread CPU time)")
        print(
            f"  {'set':18s} {'codec':22s} {'bytes':>11s} {'vs gz9':>7s} {'c MB/s':>8s} "
            f"{'d MB/s':>8s}"
        )
        result["large"] = bench_large(sets, args.repeat, args.quick)
    result["verdict"] = verdict(result)
    for line in result["verdict"]["lines"]:
        print(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


def verdict(result: dict) -> dict:
    """Best configuration per goal, and whether any configuration meets all parts of it."""
    lines = []
    small = [r for r in result["small"] if r["split"] == "project"]
    ok_small = [
        r
        for r in small
        if r["vs_gzip9_pct"] >= GOAL_SMALL_SAVING and r["compress_us_per_doc"] < GOAL_SMALL_US
    ]
    fast_small = [r for r in small if r["compress_us_per_doc"] < GOAL_SMALL_US]
    best_fast = max(fast_small, key=lambda r: r["vs_gzip9_pct"], default=None)
    best_any = max(small, key=lambda r: r["vs_gzip9_pct"])
    lines.append(
        f"small goal (>= {GOAL_SMALL_SAVING}% smaller than gzip -9, < {GOAL_SMALL_US} us/doc): "
        + ("MET by " + ", ".join(r["codec"] for r in ok_small) if ok_small else "MISSED")
        + f"; best under {GOAL_SMALL_US} us: "
        + (
            f"{best_fast['codec']} {best_fast['vs_gzip9_pct']}% at "
            f"{best_fast['compress_us_per_doc']} us"
            if best_fast
            else "none"
        )
        + f"; best overall: {best_any['codec']} {best_any['vs_gzip9_pct']}% at "
        f"{best_any['compress_us_per_doc']} us"
    )
    out = {"small_met": bool(ok_small), "lines": lines}
    if "large" in result:
        src = [r for r in result["large"] if r["set"] in ("python-stdlib-tar", "sdist-tar")]
        for set_name in sorted({r["set"] for r in src}):
            rows = [r for r in src if r["set"] == set_name]
            ok = [
                r
                for r in rows
                if r["vs_gzip9_pct"] >= GOAL_LARGE_SAVING
                and r["compress_MBps"] >= GOAL_LARGE_CMBS
                and r["decompress_MBps"] >= GOAL_LARGE_DMBS
            ]
            fast = [
                r
                for r in rows
                if r["compress_MBps"] >= GOAL_LARGE_CMBS and r["decompress_MBps"] >= GOAL_LARGE_DMBS
            ]
            best = max(fast, key=lambda r: r["vs_gzip9_pct"], default=None)
            top = max(rows, key=lambda r: r["vs_gzip9_pct"])
            lines.append(
                f"large goal on {set_name} (>= {GOAL_LARGE_SAVING}% vs gzip -9, >= "
                f"{GOAL_LARGE_CMBS} MB/s c, >= {GOAL_LARGE_DMBS} MB/s d): "
                + ("MET by " + ", ".join(r["codec"] for r in ok) if ok else "MISSED")
                + "; best within the speeds: "
                + (
                    f"{best['codec']} {best['vs_gzip9_pct']}% ({best['compress_MBps']} / "
                    f"{best['decompress_MBps']} MB/s)"
                    if best
                    else "none"
                )
                + f"; best overall: {top['codec']} {top['vs_gzip9_pct']}% at "
                f"{top['compress_MBps']} MB/s"
            )
            out[f"large_met_{set_name}"] = bool(ok)
    out["lines"] = lines
    return out


if __name__ == "__main__":
    raise SystemExit(main())
