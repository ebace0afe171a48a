"""The ML benchmark (issue 16): traces, cache, prediction, runtime, forecast and anomaly tables.

One run prints every table of docs/ml.md, each from its own module under ``benchmarks/ml/``
(``bench_ml_traces``, ``bench_ml_cache``, ``bench_ml_predict``, ``bench_ml_runtime``,
``bench_ml_ops``, ``bench_ml_server``); each module's ``run(quick, seed)`` returns its markdown
and names the trace its figures came from (a generated trace names its model and seed; a
replayed log names its file).

    .venv/bin/python benchmarks/bench_ml.py [--quick] [--seed N] [--only cache,predict] [--out F]

``--quick`` uses smaller traces (about a minute in all); the figures in docs/ml.md come from a
full run.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PARTS = ("traces", "cache", "predict", "runtime", "ops", "server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small traces, about a minute")
    parser.add_argument("--seed", type=int, default=0, help="the traces' and trainers' seed")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    out = [
        "# bench_ml",
        "",
        f"`benchmarks/bench_ml.py{' --quick' if args.quick else ''} --seed {args.seed}` on "
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}.",
        "",
    ]
    print("\n".join(out), flush=True)
    for part in parts:
        module = importlib.import_module(f"ml.bench_ml_{part}")
        started = time.perf_counter()
        text = module.run(quick=args.quick, seed=args.seed)
        took = time.perf_counter() - started
        out += [text.rstrip(), "", f"_({part}: {took:.1f} s)_", ""]
        print("\n".join(out[-4:]), flush=True)
    if args.out:
        args.out.write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
