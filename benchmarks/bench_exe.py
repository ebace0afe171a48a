"""Executable transforms on the corpus's native wheels (delta/_exe.py; docs/executables.md).

For each pair of consecutive native wheels (``_corpus.pairs(kinds=["wheel-native"])``) and each
extension module present in both (``*.so``, ``*.pyd``, ``*.dylib``, by member name):

- ``plain``: our patch of the extracted module, ``DeltaAggregator(archive_aware=False)``;
- ``exe``: the same diff after :func:`forward` on both sides, plus the EXEC record's bytes
  (what a patch carrying the transform would hold; the apply path is checked: the patch applied
  to the transformed base and inverted gives the module back);
- ``bsdiff``: Debian's ``bsdiff`` (skipped when absent);
- ``zstd``: ``zstd -19 --long=N --patch-from`` (N covers the larger input).

And per wheel pair: ``DeltaAggregator().diff`` of the wheels (today's patch), bsdiff and zstd of
the wheels, and ``est. exe``: today's wheel patch minus what the transform saves on the
modules (``plain - exe`` summed, only where it saves), an estimate until the aggregator
carries the EXEC section. Sizes in bytes; times are process CPU seconds of our diff.

    .venv/bin/python benchmarks/bench_exe.py [--only NAME] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _corpus import pairs
from registry_core.delta import DeltaAggregator
from registry_core.delta._exe import ExeLimits, decode_record, encode_record, forward, inverse, plan

MODULE_SUFFIXES = (".so", ".pyd", ".dylib")


def _modules(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if n.endswith(MODULE_SUFFIXES)}


def _bsdiff(old: bytes, new: bytes, tmp: Path) -> int | None:
    if shutil.which("bsdiff") is None:
        return None
    a, b, p = tmp / "a", tmp / "b", tmp / "p"
    a.write_bytes(old)
    b.write_bytes(new)
    subprocess.run(["bsdiff", str(a), str(b), str(p)], check=True, capture_output=True)
    return p.stat().st_size


def _zstd(old: bytes, new: bytes, tmp: Path) -> int:
    a, b, p = tmp / "a", tmp / "b", tmp / "p"
    a.write_bytes(old)
    b.write_bytes(new)
    wlog = max(10, min(31, max(len(old), len(new)).bit_length() + 1))
    subprocess.run(
        ["zstd", "-q", "-f", "-19", f"--long={wlog}", f"--patch-from={a}", str(b), "-o", str(p)],
        check=True,
        capture_output=True,
    )
    return p.stat().st_size


def _module_row(old: bytes, new: bytes, tmp: Path) -> dict[str, object]:
    agg = DeltaAggregator(archive_aware=False)
    t = time.process_time()
    plain = agg.diff(old, new)
    t_plain = time.process_time() - t
    ro, rn = plan(old), plan(new)
    t = time.process_time()
    fo, fn = forward(old, ro), forward(new, rn)
    patch = agg.diff(fo, fn)
    t_exe = time.process_time() - t
    record = encode_record(ro, rn)
    _, tgt = decode_record(record, limits=ExeLimits(len(fo), len(fn)))
    out = bytearray(agg.apply(fo, patch))
    inverse(out, tgt)
    if bytes(out) != new:
        raise SystemExit("exe path did not rebuild the module")
    return {
        "size": len(new),
        "code": rn.code_bytes if rn else 0,
        "plain": len(plain),
        "exe": len(patch) + len(record),
        "record": len(record),
        "bsdiff": _bsdiff(old, new, tmp),
        "zstd": _zstd(old, new, tmp),
        "t_plain": round(t_plain, 2),
        "t_exe": round(t_exe, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="series name substring")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, _kind, old_path, new_path in pairs(kinds=["wheel-native"]):
            if args.only and args.only not in name:
                continue
            old_w, new_w = old_path.read_bytes(), new_path.read_bytes()
            wheel = {
                "pair": f"{old_path.name} -> {new_path.name}",
                "size": len(new_w),
                "ours": len(DeltaAggregator().diff(old_w, new_w)),
                "bsdiff": _bsdiff(old_w, new_w, tmp),
                "zstd": _zstd(old_w, new_w, tmp),
                "modules": {},
            }
            mo, mn = _modules(old_path), _modules(new_path)
            saved = 0
            for member in sorted(set(mo) & set(mn)):
                row = _module_row(mo[member], mn[member], tmp)
                wheel["modules"][member] = row
                saved += max(0, int(row["plain"]) - int(row["exe"]))  # type: ignore[call-overload]
                print(f"  {member}: {row}", file=sys.stderr, flush=True)
            wheel["est_exe"] = int(wheel["ours"]) - saved  # type: ignore[call-overload]
            rows.append(wheel)
            print(json.dumps({k: v for k, v in wheel.items() if k != "modules"}), flush=True)
    print()
    print("| module pair | size | code | ours plain | ours exe | exe/plain | bsdiff | zstd |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for w in rows:
        for member, r in w["modules"].items():  # type: ignore[attr-defined]
            ratio = r["exe"] / r["plain"] if r["plain"] else 1.0
            print(
                f"| {w['pair'].split('-')[0]} {w['pair'].split('-')[1]}->"
                f"{w['pair'].split(' -> ')[1].split('-')[1]} {member.rsplit('/', 1)[-1]} | "
                f"{r['size']} | {r['code']} | {r['plain']} | {r['exe']} | {ratio:.3f} | "
                f"{r['bsdiff']} | {r['zstd']} |"
            )
    print()
    print("| wheel pair | size | ours today | est. ours with exe | bsdiff | zstd |")
    print("|---|---:|---:|---:|---:|---:|")
    for w in rows:
        print(
            f"| {w['pair']} | {w['size']} | {w['ours']} | {w['est_exe']} | {w['bsdiff']} | "
            f"{w['zstd']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
