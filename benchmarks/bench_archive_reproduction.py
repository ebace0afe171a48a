"""How much of real artifacts the archive layer can expand and rebuild byte-exact.

For each artifact of the corpus (``benchmarks/fetch_corpus.py``) or of the paths given, prints:
deflate streams found, share reproduced (by count and by compressed bytes), the parameters that
reproduced them, expand time (detection included; wall and CPU, the machine may be shared) and
throughput, expand_known and rebuild throughput, and checks ``rebuild(expand(x)) == x``.
"repro" counts both paths: the exact zlib / miniz parameters ("exact") and reconstruction from
a correction record ("recon", with the records' total size); ``--no-reconstruct`` measures the
exact path alone. Writes the rows as JSON with ``--json``.

    python benchmarks/bench_archive_reproduction.py            # whole corpus, one per series
    python benchmarks/bench_archive_reproduction.py --all      # every artifact
    python benchmarks/bench_archive_reproduction.py a.whl b.tar.gz
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from registry_core.delta._deflate import RECON, DeflateDetector, StreamPolicy
from registry_core.delta._layout import expand_artifact, expand_known, rebuild


def measure(path: Path, reconstruct: bool = True) -> dict:
    data = path.read_bytes()
    det = DeflateDetector()
    policy = StreamPolicy(det, reconstruct=reconstruct)
    t0, c0 = time.perf_counter(), time.process_time()
    got = expand_artifact(data, policy=policy)
    layout, expanded = got.layout, got.expanded()
    t_expand = time.perf_counter() - t0
    cpu_expand = time.process_time() - c0
    t0 = time.perf_counter()
    again = expand_known(layout, data)
    t_known = time.perf_counter() - t0
    t0 = time.perf_counter()
    rebuilt = rebuild(layout, expanded)
    t_rebuild = time.perf_counter() - t0
    st = det.stats
    recon_bytes = sum(
        e.node.clen for e in layout.deflate_entries() if e.node.params.engine == RECON
    )
    params = Counter()
    for p, n in st.per_params.items():
        params[f"L{p.level}/w{p.wbits}/m{p.mem_level}/s{p.strategy}"] += n
    return {
        "artifact": path.name,
        "kind": layout.kind,
        "size": len(data),
        "expanded": len(expanded),
        "streams": st.streams,
        "reproduced": st.reproduced + policy.reconstructed,
        "exact_reproduced": st.reproduced,
        "reconstructed": policy.reconstructed,
        "record_bytes": policy.record_bytes,
        "share": (st.reproduced + policy.reconstructed) / st.streams if st.streams else 1.0,
        "byte_share": (
            (st.reproduced_compressed_bytes + recon_bytes) / st.compressed_bytes
            if st.compressed_bytes
            else 1.0
        ),
        "attempts": st.attempts,
        "params": dict(params.most_common()),
        "producers": {repr(k): v for k, v in st.per_producer.items()},
        "detect_s": st.seconds,
        "expand_s": t_expand,
        "expand_cpu_s": cpu_expand,
        "expand_known_s": t_known,
        "rebuild_s": t_rebuild,
        "exact": rebuilt == data and again == expanded,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path, help="artifacts (default: the corpus)")
    ap.add_argument("--all", action="store_true", help="every corpus artifact, not one per series")
    ap.add_argument("--json", type=Path, help="write the rows here as JSON")
    ap.add_argument(
        "--no-reconstruct", action="store_true", help="exact parameters only (no records)"
    )
    args = ap.parse_args(argv)
    paths = list(args.paths)
    if not paths:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _corpus import series

        for s in series():
            paths.extend(s.paths if args.all else s.paths[-1:])
        if not paths:
            print("no corpus found: run `python benchmarks/fetch_corpus.py` first", file=sys.stderr)
            return 2
    rows = []
    hdr = (
        f"{'artifact':52} {'kind':5} {'size':>9} {'streams':>7} {'exact':>6} {'recon':>5}"
        f" {'rec B':>7} {'repro':>7} {'bytes':>7}"
        f" {'detect s':>8} {'expand cpu s':>12} {'expand MB/s':>11} {'known MB/s':>10}"
        f" {'rebuild MB/s':>12} exact"
    )
    print(hdr)
    for path in paths:
        r = measure(path, reconstruct=not args.no_reconstruct)
        rows.append(r)
        mb = r["size"] / 1e6
        print(
            f"{r['artifact'][:52]:52} {r['kind']:5} {r['size']:9d} {r['streams']:7d}"
            f" {r['exact_reproduced']:6d} {r['reconstructed']:5d} {r['record_bytes']:7d}"
            f" {r['share']:7.1%} {r['byte_share']:7.1%} {r['detect_s']:8.3f}"
            f" {r['expand_cpu_s']:12.3f}"
            f" {mb / r['expand_s']:11.1f} {mb / r['expand_known_s']:10.1f}"
            f" {mb / r['rebuild_s']:12.1f} {r['exact']}"
        )
    streams = sum(r["streams"] for r in rows)
    repro = sum(r["reproduced"] for r in rows)
    recon = sum(r["reconstructed"] for r in rows)
    rec_bytes = sum(r["record_bytes"] for r in rows)
    size = sum(r["size"] for r in rows)
    t = sum(r["expand_s"] for r in rows)
    cpu = sum(r["expand_cpu_s"] for r in rows)
    print(
        f"total: {len(rows)} artifacts, {streams} streams, {repro} reproduced"
        f" ({repro / streams if streams else 1:.1%}; {recon} by reconstruction, records"
        f" {rec_bytes} bytes), expand {size / 1e6 / t:.1f} MB/s of input"
        f" ({size / 1e6 / cpu:.1f} MB/s per CPU second),"
        f" all exact: {all(r['exact'] for r in rows)}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
