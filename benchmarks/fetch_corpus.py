"""Download the pinned benchmark corpus from PyPI with ``pip download --no-deps``.

Usage (from the repository root)::

    python benchmarks/fetch_corpus.py [--dir DIR] [--only SERIES ...] [--list]

The manifest (series, kinds, exact versions) lives in ``benchmarks/_corpus.py``. Artifacts go to
``DIR/<series name>/`` where ``DIR`` is ``--dir``, else ``$REGISTRY_CORE_CORPUS``, else
``~/.cache/registry-core/corpus``. Files already present are skipped, so re-running is cheap and
works offline once everything is there. Native wheels are fetched for CPython 3.11 on
manylinux2014 x86_64 (the same bytes on every machine); sdists with ``--no-binary=:all:``.
A summary (files, bytes per series and kind) is printed at the end; the exit status is 1 if
any artifact could not be fetched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _corpus import SERIES, SeriesSpec, corpus_dir, find_artifact

NATIVE_ARGS = [
    "--only-binary=:all:",
    "--platform",
    "manylinux2014_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
]


def pip_args(spec: SeriesSpec) -> list[str]:
    """The ``pip download`` options that select the right artifact for a series' kind."""
    if spec.kind == "wheel-native":
        return list(NATIVE_ARGS)
    if spec.kind == "wheel-pure":
        return ["--only-binary=:all:"]
    if spec.kind == "sdist":
        return ["--no-binary=:all:"]
    raise ValueError(f"unknown kind {spec.kind!r}")


def fetch_series(spec: SeriesSpec, root: Path) -> list[str]:
    """Download the missing releases of ``spec``; return the versions that failed."""
    missing = [v for v in spec.versions if find_artifact(spec, v, root) is None]
    if not missing:
        return []
    folder = root / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for version in missing:
        # Download into a temporary directory first so a half-written file never looks present.
        with tempfile.TemporaryDirectory(dir=folder, prefix=".partial-") as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--dest",
                tmp,
                *pip_args(spec),
                f"{spec.project}=={version}",
            ]
            print(f"  fetching {spec.project}=={version} ({spec.kind})", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            got = sorted(Path(tmp).iterdir())
            if proc.returncode != 0 or not got:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                print(f"  FAILED {spec.project}=={version}: {' | '.join(tail)}", flush=True)
                failed.append(version)
                continue
            for path in got:
                os.replace(path, folder / path.name)
        if find_artifact(spec, version, root) is None:
            print(f"  FAILED {spec.project}=={version}: downloaded file has an unexpected name")
            failed.append(version)
    return failed


def summary(root: Path) -> tuple[int, int]:
    """Print per-series counts and sizes; return (files, bytes) present."""
    total_files = total_bytes = 0
    per_kind: dict[str, list[int]] = {}
    print(f"\ncorpus at {root}")
    print(f"{'series':24} {'kind':13} {'present':>8} {'MB':>9}")
    for spec in SERIES:
        paths = [p for v in spec.versions if (p := find_artifact(spec, v, root))]
        size = sum(p.stat().st_size for p in paths)
        total_files += len(paths)
        total_bytes += size
        k = per_kind.setdefault(spec.kind, [0, 0])
        k[0] += len(paths)
        k[1] += size
        print(
            f"{spec.name:24} {spec.kind:13} {len(paths):>4}/{len(spec.versions):<3} "
            f"{size / 1e6:9.2f}"
        )
    for kind, (n, size) in per_kind.items():
        print(f"{'total ' + kind:38} {n:>4}     {size / 1e6:9.2f}")
    print(f"{'total':38} {total_files:>4}     {total_bytes / 1e6:9.2f}")
    return total_files, total_bytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="corpus directory (default: $REGISTRY_CORE_CORPUS or "
        "~/.cache/registry-core/corpus)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="SERIES",
        default=None,
        help="fetch only these series (names as in benchmarks/_corpus.py)",
    )
    parser.add_argument("--list", action="store_true", help="print the manifest and exit")
    args = parser.parse_args(argv)

    if args.list:
        for spec in SERIES:
            print(f"{spec.name:24} {spec.kind:13} {spec.project}: {', '.join(spec.versions)}")
        return 0
    root = (args.dir or corpus_dir()).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    chosen = SERIES
    if args.only:
        names = {s.name for s in SERIES}
        unknown = set(args.only) - names
        if unknown:
            parser.error(f"unknown series {sorted(unknown)}; known: {sorted(names)}")
        chosen = tuple(s for s in SERIES if s.name in args.only)

    start = time.monotonic()
    failures: dict[str, list[str]] = {}
    for spec in chosen:
        failed = fetch_series(spec, root)
        if failed:
            failures[spec.name] = failed
    summary(root)
    print(f"done in {time.monotonic() - start:.1f} s")
    if failures:
        print("missing:", "; ".join(f"{k}: {', '.join(v)}" for k, v in failures.items()))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
