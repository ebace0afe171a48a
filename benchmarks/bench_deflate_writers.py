"""Which deflate writers the archive layer reproduces, and at what cost.

Streams are written by the real tools (GNU gzip -1..-9, pigz, libdeflate-gzip, 7-Zip
``-tgzip``, Python's zlib, and zlib-ng when ``--zlib-ng-python`` names an interpreter that has
the ``zlib_ng`` package) over a few real files taken from the corpus
(``benchmarks/fetch_corpus.py``): botocore's largest service JSON (decompressed from its
``.json.gz``), a Python source tree concatenated from a wheel, the tar inside an sdist, and a
native extension module. For every writer, side by side in one run:

- exact: share of streams a zlib / miniz parameter set reproduces (``DeflateDetector.find``,
  the detector's default candidate set);
- recon: share rebuilt byte-exact from a correction record (``_reconstruct``), and the share
  the layout keeps (record at most ``RECON_MAX_RECORD_SHARE`` of the stream);
- record bytes per MB of compressed stream, raw and zstd-19 compressed (the patch's LAYOUTS
  section is zstd-compressed);
- the model chosen, the share of tokens corrected, and the share of dynamic headers predicted;
- record build and rebuild speed in MB of content per second (CPU time).

    python benchmarks/bench_deflate_writers.py [--quick] [--zlib-ng-python PATH] [--pair]

``--pair`` also diffs and applies the last botocore wheel pair of the corpus (the pair of
``bench_delta.py``) with ``DeltaAggregator(reconstruct=False)`` and ``(reconstruct=True)``:
patch bytes, streams reconstructed, record bytes, encode and apply CPU seconds.

Missing tools are reported and skipped. Nothing here is asserted; every figure is printed.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry_core.delta import _reconstruct as rc
from registry_core.delta._deflate import RECON_MAX_RECORD_SHARE, DeflateDetector


def _latest(series: str) -> Path | None:
    from _corpus import corpus_dir

    paths = sorted((corpus_dir() / series).glob("*"))
    return paths[-1] if paths else None


def inputs(quick: bool) -> dict[str, bytes]:
    """Real files from the corpus (fetch it first)."""
    out: dict[str, bytes] = {}
    boto = _latest("botocore-wheel")
    if boto:
        with zipfile.ZipFile(boto) as z:
            name = max(
                (i for i in z.infolist() if i.filename.endswith(".json.gz")),
                key=lambda i: i.file_size,
            ).filename
            out["botocore ec2 json"] = gzip.decompress(z.read(name))
    req = _latest("requests-wheel")
    if req:
        with zipfile.ZipFile(req) as z:
            out["requests .py"] = b"".join(
                z.read(n) for n in sorted(z.namelist()) if n.endswith(".py")
            )
    sdist = _latest("six-sdist")
    if sdist:
        out["six sdist tar"] = gzip.decompress(sdist.read_bytes())
    native = _latest("markupsafe-wheel")
    if native:
        with zipfile.ZipFile(native) as z:
            so = [n for n in z.namelist() if n.endswith(".so")]
            if so:
                out["markupsafe .so"] = z.read(so[0])
    if quick:
        out = {k: v[: 256 * 1024] for k, v in list(out.items())[:2]}
    return out


def _gzip_body(g: bytes) -> bytes:
    flg, p = g[3], 10
    if flg & 4:
        p += 2 + (g[p] | g[p + 1] << 8)
    if flg & 8:
        p = g.index(b"\0", p) + 1
    if flg & 16:
        p = g.index(b"\0", p) + 1
    if flg & 2:
        p += 2
    return g[p:-8]


def _tool(argv: list[str], data: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.write_bytes(data)
        if argv[0] == "7z":
            dst = Path(tmp) / "out.gz"
            subprocess.run([*argv, str(dst), str(src)], capture_output=True, check=True)
            return _gzip_body(dst.read_bytes())
        return _gzip_body(subprocess.run([*argv, str(src)], capture_output=True, check=True).stdout)


def _pyzlib(level: int, strategy: int = 0):
    def run(data: bytes) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
        return c.compress(data) + c.flush()

    return run


def _zlib_ng(python: str, level: int):
    code = (
        "import sys, zlib_ng.zlib_ng as z; d = sys.stdin.buffer.read(); "
        f"c = z.compressobj({level}, z.DEFLATED, -15); "
        "sys.stdout.buffer.write(c.compress(d) + c.flush())"
    )

    def run(data: bytes) -> bytes:
        return subprocess.run(
            [python, "-c", code], input=data, capture_output=True, check=True
        ).stdout

    return run


def writers(zlib_ng_python: str | None, quick: bool) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    levels = (1, 6, 9) if quick else range(1, 10)
    if shutil.which("gzip"):
        out += [(f"gzip -{lv}", ["gzip", f"-{lv}", "-n", "-c"]) for lv in levels]
    if shutil.which("pigz"):
        out += [(f"pigz -{lv}", ["pigz", f"-{lv}", "-n", "-c"]) for lv in (1, 6, 9)]
    if shutil.which("libdeflate-gzip"):
        out += [
            (f"libdeflate -{lv}", ["libdeflate-gzip", f"-{lv}", "-c"])
            for lv in ((1, 6, 12) if quick else (1, 3, 6, 9, 12))
        ]
    if shutil.which("7z"):
        out += [
            (f"7z -mx={lv}", ["7z", "a", "-tgzip", f"-mx={lv}"])
            for lv in ((1, 9) if quick else (1, 3, 5, 7, 9))
        ]
    out += [(f"python zlib {lv}", _pyzlib(lv)) for lv in (1, 6, 9)]
    out += [("python zlib 6 FILTERED", _pyzlib(6, 1)), ("python zlib 6 RLE", _pyzlib(6, 3))]
    if zlib_ng_python:
        out += [(f"zlib-ng {lv}", _zlib_ng(zlib_ng_python, lv)) for lv in (1, 6, 9)]
    return out


def _zstd(data: bytes) -> int:
    import zstandard

    return len(zstandard.ZstdCompressor(level=19).compress(data))


def pair() -> None:
    """The botocore pair with and without reconstruction, side by side."""
    from _corpus import corpus_dir
    from registry_core import DeltaAggregator

    paths = sorted((corpus_dir() / "botocore-wheel").glob("*.whl"))
    if len(paths) < 2:
        print("botocore pair: not in the corpus")
        return
    old, new = paths[-2].read_bytes(), paths[-1].read_bytes()
    print(f"pair {paths[-2].name} -> {paths[-1].name} ({len(new)} bytes)")
    print(
        f"{'reconstruct':12} {'patch':>9} {'% of new':>8} {'recon':>6} {'rec B':>8} {'encode s':>8}"
        f" {'apply s':>8} ok"
    )
    for flag in (False, True):
        agg = DeltaAggregator(reconstruct=flag)
        c0 = time.process_time()
        patch = agg.diff(old, new)
        t_enc = time.process_time() - c0
        st = agg.last_stats
        c0 = time.process_time()
        ok = agg.apply(old, patch) == new
        t_app = time.process_time() - c0
        print(
            f"{flag!s:12} {len(patch):9d} {len(patch) / len(new):8.2%}"
            f" {st.get('reconstructed_streams', 0):6} {st.get('record_bytes', 0):8}"
            f" {t_enc:8.2f} {t_app:8.2f} {ok}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer levels, 256 KiB of two files")
    ap.add_argument("--zlib-ng-python", help="a Python with zlib_ng installed (zlib-ng native)")
    ap.add_argument("--pair", action="store_true", help="also the botocore pair, with and without")
    args = ap.parse_args(argv)
    files = inputs(args.quick)
    if not files:
        print("no corpus found: run `python benchmarks/fetch_corpus.py` first", file=sys.stderr)
        return 2
    print("inputs: " + ", ".join(f"{k} ({len(v)} bytes)" for k, v in files.items()))
    for tool in ("gzip", "pigz", "libdeflate-gzip", "7z"):
        if not shutil.which(tool):
            print(f"not installed, skipped: {tool}")
    if not args.zlib_ng_python:
        print("zlib-ng: not measured (pass --zlib-ng-python with zlib_ng installed)")
    hdr = (
        f"{'writer':24} {'streams':>7} {'exact':>6} {'recon':>6} {'kept':>6} {'rec B/MB':>9}"
        f" {'zst B/MB':>9} {'corr tok':>8} {'trees':>6} {'models':14} {'rec MB/s':>8}"
        f" {'rebuild MB/s':>12}"
    )
    print(hdr)
    totals = {"streams": 0, "exact": 0, "recon": 0, "kept": 0}
    for name, how in writers(args.zlib_ng_python, args.quick):
        n = exact = recon = kept = 0
        comp_bytes = rec_bytes = zrec_bytes = toks = corr = blocks = trees = 0
        content_bytes = 0
        t_rec = t_rebuild = 0.0
        models: set[int] = set()
        for data in files.values():
            stream = how(data) if callable(how) else _tool(list(how), data)  # type: ignore[arg-type]
            assert zlib.decompress(stream, -15) == data, name
            n += 1
            comp_bytes += len(stream)
            content_bytes += len(data)
            if DeflateDetector().find(stream, data) is not None:
                exact += 1
            c0 = time.process_time()
            record, st = rc.correction_record(stream, max_content=len(data))
            t_rec += time.process_time() - c0
            c0 = time.process_time()
            ok = rc.rebuild_stream(data, record, len(stream)) == stream
            t_rebuild += time.process_time() - c0
            recon += ok
            kept += ok and len(record) <= RECON_MAX_RECORD_SHARE * len(stream)
            rec_bytes += len(record)
            zrec_bytes += _zstd(record)
            toks += st.tokens
            corr += st.corrections
            blocks += st.blocks
            trees += st.predicted_trees
            models.add(st.model)
        mb = comp_bytes / 1e6
        cmb = content_bytes / 1e6
        print(
            f"{name:24} {n:7d} {exact / n:6.0%} {recon / n:6.0%} {kept / n:6.0%}"
            f" {rec_bytes / mb:9.0f} {zrec_bytes / mb:9.0f} {corr / max(1, toks):8.2%}"
            f" {trees / max(1, blocks):6.0%} {','.join(map(str, sorted(models))):14}"
            f" {cmb / max(t_rec, 1e-9):8.1f} {cmb / max(t_rebuild, 1e-9):12.1f}"
        )
        totals["streams"] += n
        totals["exact"] += exact
        totals["recon"] += recon
        totals["kept"] += kept
    s = totals["streams"]
    print(
        f"total: {s} streams; exact path {totals['exact'] / s:.1%}, rebuilt from a record"
        f" {totals['recon'] / s:.1%}, kept by the layout (record <= {RECON_MAX_RECORD_SHARE:.0%}"
        f" of the stream) {totals['kept'] / s:.1%}"
    )
    if args.pair:
        pair()
    return 0 if totals["recon"] == s else 1


if __name__ == "__main__":
    raise SystemExit(main())
