"""The build cache measured against GNU make and ccache, in one run (issue 18).

Parts, each timed with ``--repeats`` runs and reported as medians (wall time):

1. Up-to-date checks on a generated tree of ``--files`` files (default 10,000) and on a real
   source tree (the requests sdist of the corpus, unpacked; ``benchmarks/fetch_corpus.py
   --only requests-sdist`` fetches it, and this script runs that when it is missing): the
   stat cache's cold hash of every file, its warm no-op check, one changed file, and one touched
   file; ``BuildCache.run`` cold, warm no-op and one changed file; GNU make's ``make -q`` on a
   generated Makefile with every file as a prerequisite of one target (its up-to-date check,
   mtime only, ``make -r``: built-in implicit rules off; make sees a touched file as changed,
   the cache does not).
2. A small C build (``--c-files`` translation units): plain gcc, ccache cold and warm, and
   ``BuildCache.run`` around each gcc call, cold and warm (objects removed, restored).
3. Hashing throughput on cold files already in the page cache (the stat cache's hasher, threads
   on; fresh StatCache each time), beside one-thread hashlib on memory (the ceiling).
4. A 10 MB output: a hit from the local tier against one from nginx (tests/cache/_nginx.py, the
   Bazel docs' WebDAV configuration) through BazelHTTPTier, at the tier (blob to memory and
   to a file) and, when BuildCache.run is there, end to end (a second "machine": fresh local
   cache and stat cache directories, the remote holds the result).

    .venv/bin/python benchmarks/bench_cache.py [--files 10000] [--repeats 7] [--c-files 24]
        [--out /tmp/rc/bench_cache.txt]

Goals (issue 18): warm no-op check under 100 ms for 10,000 files and within 3x of make's mtime
check; hashing at least 2 GB/s; a remote hit within 1.5x of a local hit for a 10 MB output.
The last table says met / missed. This machine is shared (2 cores, other jobs running): the
load average is printed with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "cache"))

from registry_core.cache import LocalStore  # noqa: E402
from registry_core.cache._bazel import BazelHTTPTier  # noqa: E402
from registry_core.cache._reapi import Digest  # noqa: E402
from registry_core.cache._statcache import StatCache  # noqa: E402
from registry_core.cache._tiers import LocalActionTier  # noqa: E402
from registry_core.flags import FeatureFlags  # noqa: E402

FLAGS = FeatureFlags(overrides={"INCREMENTAL_CACHE": True})
MB = 1 << 20
FSYNC = True  # LocalStore's default, as the CLI opens it; --no-fsync turns it off


def median_ms(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None) -> float:
    """Median wall time of ``fn`` in ms over ``repeats`` runs (``setup`` untimed before each)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


# -- trees ------------------------------------------------------------------------------------


def generated_tree(root: Path, files: int) -> list[Path]:
    """``files`` files of 512 B to 8 KiB (seeded), 100 per directory."""
    rng = random.Random(18)
    paths = []
    for i in range(files):
        d = root / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"f{i:05d}.c"
        p.write_bytes(rng.randbytes(rng.randint(512, 8192)))
        paths.append(p)
    return paths


def sdist_tree(root: Path) -> tuple[str, list[Path]] | None:
    """The newest requests sdist of the corpus, unpacked under ``root`` (fetched if missing)."""
    from _corpus import series

    def find() -> Path | None:
        for s in series(kinds=["sdist"]):
            if s.name == "requests-sdist" and s.paths:
                return s.paths[-1]
        return None

    archive = find()
    if archive is None:
        subprocess.run(
            [sys.executable, str(HERE / "fetch_corpus.py"), "--only", "requests-sdist"],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        archive = find()
    if archive is None:
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return archive.name, files


def write_makefile(path: Path, files: list[Path], stamp: Path) -> None:
    """One target, every file a prerequisite (one line; built-in rules off at the call)."""
    path.write_text(f"{stamp}: " + " ".join(str(f) for f in files) + f"\n\ttouch {stamp}\n")


def change_one(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(data)


def touch(path: Path) -> None:
    """A new mtime (now), the content unchanged."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def age(paths: list[Path]) -> None:
    """Set every mtime 10 s back, so no entry is racy (a fresh checkout is not racy either)."""
    old = time.time_ns() - 10_000_000_000
    for p in paths:
        os.utime(p, ns=(old, old))


def has_run() -> bool:
    from registry_core.cache import BuildCache

    return hasattr(BuildCache, "run")


@contextlib.contextmanager
def build_cache(base: Path, remote: Any = None) -> Iterator[Any]:
    from registry_core.cache import BuildCache

    local = LocalStore(base / "cache", max_bytes=4 << 30, fsync=FSYNC)
    cache = BuildCache(local=local, flags=FLAGS)
    try:
        yield cache
    finally:
        local.close()


def check_tree(name: str, tree: Path, files: list[Path], work: Path, repeats: int) -> dict:
    """Stat cache, BuildCache.run and make on one tree."""
    out: dict[str, Any] = {"tree": name, "files": len(files)}
    out["bytes"] = sum(p.stat().st_size for p in files)
    age(files)
    strs = [str(p) for p in files]
    slug = "".join(ch if ch.isalnum() else "-" for ch in name)
    db = work / f"{slug}-stat.sqlite"

    def cold() -> None:
        db.unlink(missing_ok=True)
        StatCache(db).digests(strs)

    out["stat_cold_ms"] = median_ms(cold, repeats)
    sc = StatCache(db)
    sc.digests(strs)
    out["stat_warm_ms"] = median_ms(lambda: StatCache(db).digests(strs), repeats)
    out["stat_warm_same_obj_ms"] = median_ms(lambda: sc.digests(strs), repeats)
    victim = files[len(files) // 2]
    out["stat_changed_ms"] = median_ms(
        lambda: StatCache(db).digests(strs), repeats, setup=lambda: change_one(victim)
    )
    probe = StatCache(db)
    probe.digests(strs)
    touch(victim)
    probe.digests(strs)
    out["stat_touched_rehashed"] = probe.hashed  # the touched file is rehashed, same digest

    # make: one target depending on every file
    stamp = work / f"{slug}.stamp"
    mk = work / f"{slug}.mk"
    write_makefile(mk, files, stamp)
    # -r: no built-in implicit rules, else make searches rules to remake each prerequisite
    # (several times slower); the mtime comparison is what is measured
    make = ["make", "-r", "-s", "-q", "-f", str(mk), str(stamp)]
    build = ["make", "-r", "-s", "-f", str(mk), str(stamp)]

    def make_cold() -> None:
        stamp.unlink(missing_ok=True)
        subprocess.run(build, check=True)

    out["make_cold_ms"] = median_ms(make_cold, repeats)
    out["make_warm_ms"] = median_ms(lambda: subprocess.run(make, check=True), repeats)
    touch(victim)
    out["make_touched_rebuilds"] = subprocess.run(make).returncode != 0
    subprocess.run(build, check=True)

    if has_run():
        # the tree's directory as the one input (walked), cwd its parent: as `--input src`
        cwd = str(tree.parent)
        argv = ["/bin/sh", "-c", f"echo {len(files)} > {slug}.out"]
        kw: dict[str, Any] = {"inputs": [tree.name], "outputs": [f"{slug}.out"], "cwd": cwd}
        base = work / f"{slug}-run"

        def run_cold() -> None:
            shutil.rmtree(base, ignore_errors=True)
            with build_cache(base) as cache:
                assert not cache.run(argv, **kw).hit

        out["run_cold_ms"] = median_ms(run_cold, repeats)
        with build_cache(base) as cache:
            cache.run(argv, **kw)
            out["run_warm_ms"] = median_ms(lambda: cache.run(argv, **kw), repeats)
            out["run_warm_hit"] = cache.run(argv, **kw).hit
            out["run_changed_ms"] = median_ms(
                lambda: cache.run(argv, **kw), repeats, setup=lambda: change_one(victim)
            )
            touch(victim)
            out["run_touched_hit"] = cache.run(argv, **kw).hit
        # the same warm check as a process, as a shell runs it (Python's start-up included)
        cli = [sys.executable, "-m", "registry_core.cli", "cache", "run", "-q"]
        cli += ["--cache-dir", str(work / f"{slug}-cli"), "--input", tree.name]
        cli += ["--output", f"{slug}.out", "--", *argv]
        env = {**os.environ, "REGISTRY_CORE_FLAGS": "INCREMENTAL_CACHE=on"}
        subprocess.run(cli, cwd=cwd, env=env, check=True)
        out["cli_warm_ms"] = median_ms(
            lambda: subprocess.run(cli, cwd=cwd, env=env, check=True), repeats
        )
    return out


# -- C build ------------------------------------------------------------------------------------


def c_sources(root: Path, n: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "common.h").write_text("#include <stdint.h>\nuint64_t mix(uint64_t);\n")
    paths = []
    for i in range(n):
        body = ['#include "common.h"']
        for j in range(40):
            body.append(
                f"uint64_t f{i}_{j}(uint64_t x) {{ for (int k = 0; k < {j + 1}; k++) "
                f"x = (x << 7) ^ (x >> 3) ^ (x * {2 * (i + j) + 1}u); return mix(x); }}"
            )
        p = root / f"u{i:03d}.c"
        p.write_text("\n".join(body) + "\n")
        paths.append(p)
    return paths


def c_build(sources: list[Path], repeats: int, work: Path) -> dict:
    out: dict[str, Any] = {"units": len(sources)}
    objs = [s.with_suffix(".o") for s in sources]

    def clean() -> None:
        for o in objs:
            o.unlink(missing_ok=True)

    def compile_all(prefix: list[str]) -> None:
        for s, o in zip(sources, objs, strict=True):
            subprocess.run([*prefix, "gcc", "-O2", "-c", str(s), "-o", str(o)], check=True)

    out["gcc_ms"] = median_ms(lambda: compile_all([]), repeats, setup=clean)
    ccache = shutil.which("ccache")
    if ccache:
        env_dir = work / "ccache"
        os.environ["CCACHE_DIR"] = str(env_dir)
        os.environ["CCACHE_NOHASHDIR"] = "1"

        def cold_setup() -> None:
            clean()
            shutil.rmtree(env_dir, ignore_errors=True)

        out["ccache_cold_ms"] = median_ms(lambda: compile_all([ccache]), repeats, setup=cold_setup)
        compile_all([ccache])
        out["ccache_warm_ms"] = median_ms(lambda: compile_all([ccache]), repeats, setup=clean)
    if has_run():
        base = work / "c-run"

        def ours(cache: Any) -> None:
            for src, obj in zip(sources, objs, strict=True):
                cache.run(
                    ["gcc", "-O2", "-c", src.name, "-o", obj.name],
                    inputs=[src.name, "common.h"],
                    outputs=[obj.name],
                    cwd=str(src.parent),
                )

        def ours_cold() -> None:
            with build_cache(base) as cache:
                ours(cache)

        def cold_setup2() -> None:
            clean()
            shutil.rmtree(base, ignore_errors=True)

        out["run_cold_ms"] = median_ms(ours_cold, repeats, setup=cold_setup2)
        with build_cache(base) as cache:
            ours(cache)
            out["run_warm_ms"] = median_ms(lambda: ours(cache), repeats, setup=clean)
    return out


# -- hashing ----------------------------------------------------------------------------------


def hashing(files: list[Path], big_dir: Path, repeats: int) -> dict:
    big_dir.mkdir(parents=True, exist_ok=True)
    big = []
    for i in range(8):
        p = big_dir / f"big{i}.bin"
        p.write_bytes(random.Random(i).randbytes(32 * MB))
        big.append(str(p))
    for p in big:  # in the page cache
        Path(p).read_bytes()
    out: dict[str, Any] = {}
    for label, paths in (("big", big), ("tree", [str(p) for p in files])):
        total = sum(os.path.getsize(p) for p in paths)
        ms = median_ms(lambda paths=paths: StatCache(None).digests(paths), repeats)
        out[f"{label}_bytes"] = total
        out[f"{label}_gbps"] = total / (ms / 1000) / 1e9
    data = random.Random(0).randbytes(64 * MB)
    ms = median_ms(lambda: hashlib.sha256(data).digest(), repeats)
    out["sha256_1thread_gbps"] = len(data) / (ms / 1000) / 1e9
    return out


# -- remote vs local hit ------------------------------------------------------------------------


def remote_vs_local(work: Path, repeats: int) -> dict:
    from _nginx import NginxServer

    out: dict[str, Any] = {}
    data = random.Random(10).randbytes(10 * 1000 * 1000)
    digest = Digest.of(data)
    server = NginxServer(work / "nginx")
    try:
        local = LocalStore(work / "local-tier", max_bytes=1 << 30, fsync=FSYNC)
        ltier = LocalActionTier(local)
        ltier.put_blob(digest, data)
        rtier = BazelHTTPTier(server.url)
        rtier.put_blob(digest, data)
        dest = work / "restored.bin"
        out["tier_local_ms"] = median_ms(lambda: ltier.get_blob(digest), repeats)
        out["tier_remote_ms"] = median_ms(lambda: rtier.get_blob(digest), repeats)
        out["tier_remote_file_ms"] = median_ms(lambda: rtier.fetch_blob(digest, dest), repeats)

        def local_to_file() -> None:
            blob = ltier.get_blob(digest)
            assert blob is not None
            dest.write_bytes(blob)

        out["tier_local_file_ms"] = median_ms(local_to_file, repeats)
        # what a remote hit in BuildCache.run adds to the transfer: its own digest check of
        # the blob and the back-fill of the local store
        out["sha256_10mb_ms"] = median_ms(lambda: hashlib.sha256(data).digest(), repeats)
        fill = LocalStore(work / "backfill", max_bytes=1 << 30, fsync=FSYNC)
        out["local_put_10mb_ms"] = median_ms(
            lambda: fill.put("k", data),
            repeats,
            setup=lambda: fill.delete("k"),  # its object goes too: every put writes 10 MB
        )
        fill.close()
        if has_run():
            out.update(_run_remote_vs_local(work, server.url, repeats))
        rtier.close()
        local.close()
    finally:
        server.stop()
    return out


def _run_remote_vs_local(work: Path, url: str, repeats: int) -> dict:
    out: dict[str, Any] = {}
    src = work / "r-src.bin"
    src.write_bytes(random.Random(11).randbytes(1000))
    age([src])
    target = work / "r-out.bin"
    argv = [
        sys.executable,
        "-c",
        "import random,sys; open(sys.argv[1],'wb').write(random.Random(12).randbytes(10**7))",
        str(target),
    ]
    kw: dict[str, Any] = {"inputs": [src.name], "outputs": [target.name], "cwd": str(work)}
    remote = BazelHTTPTier(url)
    with build_cache(work / "machine-a") as a:
        first = a.run(argv, remote=remote, **kw)
        assert not first.hit and first.stored

        def local_hit() -> None:
            r = a.run(argv, remote=remote, **kw)
            assert r.hit and r.tier == "local"

        out["run_local_hit_ms"] = median_ms(local_hit, repeats, setup=lambda: target.unlink())
    # machine B: its own local cache, emptied before each timed run (so the hit comes from the
    # remote), its stat cache warm like A's: only where the result comes from differs
    with build_cache(work / "machine-b") as b:
        assert b.run(argv, remote=remote, **kw).tier == remote.name

        def forget_locally() -> None:
            target.unlink()
            for key in b.local.keys_lru():
                b.local.delete(key)

        def remote_hit() -> None:
            r = b.run(argv, remote=remote, **kw)
            assert r.hit and r.tier == remote.name

        out["run_remote_hit_ms"] = median_ms(remote_hit, repeats, setup=forget_locally)
    remote.close()
    return out


# -- report ---------------------------------------------------------------------------------------


def fmt(v: Any, unit: str = "ms") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.1f} {unit}".strip()
    return f"{v:,}"


def report(res: dict, out: io.StringIO) -> None:
    def p(line: str = "") -> None:
        print(line)
        out.write(line + "\n")

    p(
        f"bench_cache  load average {os.getloadavg()[0]:.2f}  repeats {res['repeats']} (medians)"
        f"  LocalStore fsync={res['fsync']}  {os.cpu_count()} CPUs"
    )
    p()
    p("1. up-to-date checks")
    cols = [
        ("files", "files", ""),
        ("MB", "bytes", ""),
        ("stat cold", "stat_cold_ms", "ms"),
        ("stat warm", "stat_warm_ms", "ms"),
        ("warm (same obj)", "stat_warm_same_obj_ms", "ms"),
        ("1 changed", "stat_changed_ms", "ms"),
        ("run cold", "run_cold_ms", "ms"),
        ("run warm", "run_warm_ms", "ms"),
        ("run 1 changed", "run_changed_ms", "ms"),
        ("CLI warm", "cli_warm_ms", "ms"),
        ("make cold", "make_cold_ms", "ms"),
        ("make -rq warm", "make_warm_ms", "ms"),
    ]
    p(f"{'tree':<28}" + "".join(f"{c[0]:>16}" for c in cols))
    for t in res["trees"]:
        cells = []
        for _, k, unit in cols:
            v = t.get(k)
            if k == "bytes":
                v = v / 1e6
            cells.append(fmt(v, unit))
        p(f"{t['tree']:<28}" + "".join(f"{c:>16}" for c in cells))
    for t in res["trees"]:
        p(
            f"  {t['tree']}: a touched (unchanged) file: make rebuilds = "
            f"{fmt(t['make_touched_rebuilds'])}; the stat cache rehashed "
            f"{t['stat_touched_rehashed']} file(s) and kept the digest; BuildCache.run hit = "
            f"{fmt(t.get('run_touched_hit'))}"
        )
    p()
    c = res["c"]
    p(f"2. C build, {c['units']} units (gcc -O2 -c each)")
    for label, k in (
        ("gcc, no cache", "gcc_ms"),
        ("ccache cold", "ccache_cold_ms"),
        ("ccache warm", "ccache_warm_ms"),
        ("BuildCache.run cold", "run_cold_ms"),
        ("BuildCache.run warm", "run_warm_ms"),
    ):
        p(f"  {label:<24}{fmt(c.get(k)):>14}")
    p()
    h = res["hash"]
    p("3. hashing cold files in the page cache (StatCache, threads on)")
    p(f"  8 x 32 MiB files        {h['big_gbps']:.2f} GB/s")
    p(f"  the {res['trees'][0]['files']:,}-file tree   {h['tree_gbps']:.2f} GB/s")
    p(f"  hashlib sha256, 1 thread, memory: {h['sha256_1thread_gbps']:.2f} GB/s")
    p()
    r = res["remote"]
    p("4. a 10 MB output: local tier vs nginx (BazelHTTPTier)")
    p(f"  tier, to memory      local {fmt(r['tier_local_ms'])}   remote {fmt(r['tier_remote_ms'])}")
    p(
        f"  tier, to a file      local {fmt(r['tier_local_file_ms'])}   remote "
        f"{fmt(r['tier_remote_file_ms'])}"
    )
    p(
        f"  within a run's remote hit: sha256 of 10 MB {fmt(r['sha256_10mb_ms'])}, the local "
        f"back-fill (LocalStore.put) {fmt(r['local_put_10mb_ms'])}"
    )
    if "run_local_hit_ms" in r:
        p(
            f"  BuildCache.run hit   local {fmt(r['run_local_hit_ms'])}   remote (local entries "
            f"removed first) {fmt(r['run_remote_hit_ms'])}"
        )
    p()
    p("goals")
    gen = res["trees"][0]
    warm = gen.get("run_warm_ms", gen["stat_warm_ms"])
    what = "BuildCache.run" if "run_warm_ms" in gen else "stat cache (run not available)"
    remote_ratio = (
        r["run_remote_hit_ms"] / r["run_local_hit_ms"]
        if "run_local_hit_ms" in r
        else r["tier_remote_file_ms"] / r["tier_local_file_ms"]
    )
    goals = [
        (
            f"warm no-op < 100 ms, {gen['files']:,} files ({what})",
            f"{warm:.1f} ms",
            warm < 100,
        ),
        (
            "warm no-op within 3x of make -r -q",
            f"{warm / gen['make_warm_ms']:.2f}x ({gen['make_warm_ms']:.1f} ms)",
            warm <= 3 * gen["make_warm_ms"],
        ),
        ("hashing >= 2 GB/s (8 x 32 MiB)", f"{h['big_gbps']:.2f} GB/s", h["big_gbps"] >= 2),
        (
            "remote hit within 1.5x of local (10 MB)"
            + ("" if "run_local_hit_ms" in r else ", tier to file"),
            f"{remote_ratio:.2f}x",
            remote_ratio <= 1.5,
        ),
    ]
    for label, value, ok in goals:
        p(f"  {label:<58}{value:>22}   {'met' if ok else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--c-files", type=int, default=24)
    ap.add_argument("--out", type=Path, help="also write the tables here")
    ap.add_argument("--no-fsync", action="store_true", help="LocalStore(fsync=False)")
    args = ap.parse_args()
    global FSYNC
    FSYNC = not args.no_fsync
    res: dict[str, Any] = {"repeats": args.repeats, "trees": [], "fsync": FSYNC}
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        work = Path(tmp)
        gen = work / "gen"
        files = generated_tree(gen, args.files)
        res["trees"].append(
            check_tree(f"generated ({args.files:,})", gen, files, work, args.repeats)
        )
        sd = sdist_tree(work / "sdist")
        if sd is not None:
            name, sfiles = sd
            res["trees"].append(check_tree(name, work / "sdist", sfiles, work, args.repeats))
        res["c"] = c_build(c_sources(work / "csrc", args.c_files), max(3, args.repeats // 2), work)
        res["hash"] = hashing(files, work / "big", args.repeats)
        res["remote"] = remote_vs_local(work, args.repeats)
    buf = io.StringIO()
    report(res, buf)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(buf.getvalue())


if __name__ == "__main__":
    main()
