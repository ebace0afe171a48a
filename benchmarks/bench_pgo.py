"""PGO wheel against the plain -O3 wheel of the same commit, and what each size option costs.

Needs ``make wheel-pgo`` first (build/wheel-pgo: the two wheels, each installed in its own venv,
the snapshot trees and the training profile). Then, in one invocation:

1. variants of the C core's shared library built from the same snapshot with the knobs of
   ``_native/_build.py`` (-O3, -Os, -O2, --gc-sections, strip, LTO, PGO and combinations), each
   dropped into a copy of the package (``--no-variants`` skips them);
2. time per operation: one long-lived worker process per target, started from an empty
   directory (the two wheel venvs, registry_core from site-packages, checked; every variant
   with PYTHONPATH = its copy); each repetition runs each operation once in every target, the
   order rotated by one target per repetition, so load changes on this shared machine fall on
   all targets alike (``--rounds`` x ``--reps`` repetitions, medians reported);
3. callgrind instruction counts (repeatable on this noisy machine) per operation and target,
   collected inside the C core's cffi wrappers only: a process running the operation twice
   minus one running it once (the set-up's own calls into the core cancel out);
4. sizes: the shared library's file size (as shipped), its loaded ``text`` + ``data``, and the
   repaired wheels' sizes.

Inputs are seeded and unlike the training run's (another seed, other generators), so PGO is
not measured on what it was trained on. Nothing here is asserted; results go to stdout and
benchmarks/results/pgo.json.

    python benchmarks/bench_pgo.py [--dir build/wheel-pgo] [--rounds 5] [--no-callgrind]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPS = (
    "chunking",
    "match finding",
    "patch apply",
    "delta encode (wheel)",
    "delta apply (wheel)",
    "deflate record",
    "deflate rebuild",
)
#: name -> (tree: "pgo" | "plain", environment for the build). PGO variants build in the PGO
#: snapshot tree: the profile's file names carry that tree's build path.
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "O3": ("plain", {}),
    "O3 strip": ("plain", {"REGISTRY_CORE_STRIP": "1"}),
    "O3 gc-sections": ("plain", {"REGISTRY_CORE_GC_SECTIONS": "1"}),
    "O3 gc-sections strip": (
        "plain",
        {"REGISTRY_CORE_GC_SECTIONS": "1", "REGISTRY_CORE_STRIP": "1"},
    ),
    "O2 strip": ("plain", {"REGISTRY_CORE_OPT": "2", "REGISTRY_CORE_STRIP": "1"}),
    "Os": ("plain", {"REGISTRY_CORE_OPT": "s"}),
    "Os gc-sections strip": (
        "plain",
        {"REGISTRY_CORE_OPT": "s", "REGISTRY_CORE_GC_SECTIONS": "1", "REGISTRY_CORE_STRIP": "1"},
    ),
    "O3 LTO": ("plain", {"REGISTRY_CORE_LTO": "1"}),
    "O3 LTO strip": ("plain", {"REGISTRY_CORE_LTO": "1", "REGISTRY_CORE_STRIP": "1"}),
    "PGO": ("pgo", {"REGISTRY_CORE_PGO": "use"}),
    "PGO strip": ("pgo", {"REGISTRY_CORE_PGO": "use", "REGISTRY_CORE_STRIP": "1"}),
    "PGO LTO strip": (
        "pgo",
        {"REGISTRY_CORE_PGO": "use", "REGISTRY_CORE_LTO": "1", "REGISTRY_CORE_STRIP": "1"},
    ),
    "PGO gc-sections strip": (
        "pgo",
        {"REGISTRY_CORE_PGO": "use", "REGISTRY_CORE_GC_SECTIONS": "1", "REGISTRY_CORE_STRIP": "1"},
    ),
}
KNOBS = (
    "REGISTRY_CORE_OPT",
    "REGISTRY_CORE_LTO",
    "REGISTRY_CORE_GC_SECTIONS",
    "REGISTRY_CORE_STRIP",
)

# -- the worker: runs inside a target's interpreter --------------------------------------------


def _source_like(rnd: random.Random, n_lines: int) -> bytes:
    names = [f"{rnd.choice(('get', 'set', 'load', 'emit'))}_{i}" for i in range(500)]
    out = []
    for i in range(n_lines):
        a, b = rnd.choice(names), rnd.choice(names)
        out.append(
            rnd.choice(
                (
                    f"class {a.title()}{i}({b.title()}):",
                    f"        self.{a} = {b}(x, {rnd.randrange(1 << 16)})",
                    f"        if {a} is None: raise ValueError('{b} {i}')",
                    f"    async def {a}(self, {b}: int = {i}) -> None: ...",
                )
            )
        )
    return ("\n".join(out) + "\n").encode()


def _edit(rnd: random.Random, data: bytes, n: int) -> bytes:
    new = bytearray(data)
    for _ in range(n):
        i = rnd.randrange(len(new))
        new[i : i + rnd.randrange(0, 64)] = rnd.randbytes(rnd.randrange(0, 64))
    return bytes(new)


def _wheel(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (2026, 2, 2, 0, 0, 0)), data)
    return buf.getvalue()


class _Inputs:
    """Fixed inputs (seed 11 per group, built on first use): text- and binary-like pairs, a
    wheel pair, a deflate stream from a non-default zlib setting. ``div`` shrinks them."""

    def __init__(self, div: int) -> None:
        self.div = div
        self._cache: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key not in self._cache:
            self._cache[key] = getattr(self, "_" + key)(random.Random(f"11-{key}"))
        return self._cache[key]

    def _src(self, rnd: random.Random) -> bytes:
        return _source_like(rnd, 40_000 // self.div)

    def _binary(self, rnd: random.Random) -> bytes:
        return rnd.randbytes((2 << 20) // self.div)

    def _pair(self, rnd: random.Random) -> tuple[bytes, bytes]:
        src = self.get("src")
        return src, _edit(rnd, src, 400 // self.div)

    def _bpair(self, rnd: random.Random) -> tuple[bytes, bytes]:
        data = self.get("binary")
        return data, _edit(rnd, data, 200 // self.div)

    def _wheels(self, rnd: random.Random) -> tuple[bytes, bytes]:
        members = {f"app/m{i}.py": _source_like(rnd, 1500 // self.div) for i in range(16)}
        members["app/blob.dat"] = rnd.randbytes((256 << 10) // self.div)
        members2 = dict(members)
        for name in rnd.sample(sorted(members), 6):
            members2[name] = _edit(rnd, members[name], 12)
        return _wheel(members), _wheel(members2)

    def _deflate(self, rnd: random.Random) -> tuple[bytes, bytes]:
        content = _source_like(rnd, 8000 // self.div)
        co = zlib.compressobj(9, zlib.DEFLATED, -15, 9)  # not zlib's default memLevel
        return content, co.compress(content) + co.flush()


def _ops(inputs: _Inputs) -> dict[str, Any]:
    """name -> factory: sets the operation up (inputs, patches) and returns it as a callable.
    The deflate operations only when the core has them."""
    from registry_core import DeltaAggregator
    from registry_core._native import lib
    from registry_core.chunking import chunks
    from registry_core.delta import _binary

    def chunking() -> Any:
        data = inputs.get("src") + inputs.get("binary")
        return lambda: chunks(data)

    def match() -> Any:
        (old, new), (bold, bnew) = inputs.get("pair"), inputs.get("bpair")
        return lambda: (_binary.encode(old, new), _binary.encode(bold, bnew))

    def apply() -> Any:
        (old, new), (bold, bnew) = inputs.get("pair"), inputs.get("bpair")
        s1, s2 = _binary.encode(old, new), _binary.encode(bold, bnew)
        return lambda: (_binary.apply(old, s1, len(new)), _binary.apply(bold, s2, len(bnew)))

    def wheel_encode() -> Any:
        old, new = inputs.get("wheels")
        agg = DeltaAggregator()
        return lambda: agg.diff(old, new)

    def wheel_apply() -> Any:
        old, new = inputs.get("wheels")
        agg = DeltaAggregator()
        patch = agg.diff(old, new)
        return lambda: agg.apply(old, patch)

    ops: dict[str, Any] = {
        "chunking": chunking,
        "match finding": match,
        "patch apply": apply,
        "delta encode (wheel)": wheel_encode,
        "delta apply (wheel)": wheel_apply,
    }
    if hasattr(lib, "rc_deflate_record") and hasattr(lib, "rc_deflate_rebuild"):
        from registry_core.delta import _reconstruct

        def record() -> Any:
            content, stream = inputs.get("deflate")
            return lambda: _reconstruct.correction_record(stream, max_content=len(content) + 1)

        def rebuild() -> Any:
            content, stream = inputs.get("deflate")
            rec, _ = _reconstruct.correction_record(stream, max_content=len(content) + 1)
            assert _reconstruct.rebuild_stream(content, rec, len(stream)) == stream
            return lambda: _reconstruct.rebuild_stream(content, rec, len(stream))

        ops["deflate record"] = record
        ops["deflate rebuild"] = rebuild
    return ops


def worker(args: argparse.Namespace) -> None:
    import registry_core
    from registry_core._native import _core

    ops = _ops(_Inputs(16 if args.small else 1))
    info = registry_core.build_info()
    result: dict[str, Any] = {
        "module": registry_core.__file__,
        "core": _core.__file__,
        "pgo": info["pgo"],
        "cflags": info["cflags"],
        "ops": sorted(ops),
        "times": {},
    }
    if args.serve:  # interleaved timing: one operation per request line, seconds back
        print(json.dumps(result), flush=True)
        ready: dict[str, Any] = {}
        for line in sys.stdin:
            name = line.strip()
            if name not in ready:
                ready[name] = ops[name]()
                ready[name]()  # warm: caches, allocator, lazy imports
            t0 = time.perf_counter()
            ready[name]()
            print(time.perf_counter() - t0, flush=True)
        return
    if args.op:  # callgrind: set up one operation, run it --reps times
        fn = ops[args.op]()
        for _ in range(args.reps):
            fn()
    else:
        for name, factory in ops.items():
            fn = factory()
            fn()  # warm: caches, allocator, lazy imports
            samples = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
            result["times"][name] = samples
    print(json.dumps(result))


# -- the driver ---------------------------------------------------------------------------------


class Target:
    """One build to measure: an interpreter plus the environment that makes it load the core."""

    def __init__(self, name: str, python: Path, pythonpath: Path | None, so: Path) -> None:
        self.name, self.python, self.pythonpath, self.so = name, python, pythonpath, so

    def _env(self) -> tuple[dict[str, str], list[str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "REGISTRY"))}
        env["PYTHONHASHSEED"] = "0"
        if self.pythonpath is not None:
            env["PYTHONPATH"] = str(self.pythonpath)
            return env, ["-s"]
        return env, ["-I"]  # site-packages only: the wheel, not a source tree

    def serve(self, cwd: str) -> subprocess.Popen[str]:
        """A worker that times one operation per line it is sent (see ``interleaved``)."""
        env, flags = self._env()
        cmd = [str(self.python), *flags, str(Path(__file__).resolve()), "--worker", "--serve"]
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self, extra: list[str], prefix: list[str] | None = None) -> dict[str, Any]:
        env, flags = self._env()
        with tempfile.TemporaryDirectory(prefix="bench-pgo-") as cwd:
            cmd = [*(prefix or []), str(self.python), *flags, str(Path(__file__).resolve())]
            out = subprocess.run(
                [*cmd, "--worker", *extra], cwd=cwd, env=env, capture_output=True, text=True
            )
        if out.returncode != 0:
            raise SystemExit(f"{self.name}: worker failed\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}


def _core_so(root: Path) -> Path:
    found = sorted(root.glob("registry_core/_native/_core*.so"))
    if not found:
        raise SystemExit(f"no compiled core under {root}")
    return found[0]


def interleaved(
    targets: list[Target], reps: int
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list[float]]]]:
    """Every target's worker stays up; each repetition runs each operation once in every
    target, the order rotated by one target per repetition, so a change in the machine's load
    falls on all targets alike instead of on whichever ran during it."""
    meta: dict[str, dict[str, Any]] = {}
    times: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}
    with tempfile.TemporaryDirectory(prefix="bench-pgo-") as cwd:
        procs = {t.name: t.serve(cwd) for t in targets}
        try:
            for t in targets:
                line = procs[t.name].stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise SystemExit(f"{t.name}: worker failed to start")
                meta[t.name] = json.loads(line)
            ops = [op for op in OPS if all(op in meta[t.name]["ops"] for t in targets)]
            for r in range(reps):
                order = targets[r % len(targets) :] + targets[: r % len(targets)]
                for op in ops:
                    for t in order:
                        proc = procs[t.name]
                        proc.stdin.write(op + "\n")  # type: ignore[union-attr]
                        proc.stdin.flush()  # type: ignore[union-attr]
                        answer = proc.stdout.readline()  # type: ignore[union-attr]
                        if not answer:
                            raise SystemExit(f"{t.name}: worker died during {op}")
                        times[t.name].setdefault(op, []).append(float(answer))
        finally:
            for proc in procs.values():
                proc.stdin.close()  # type: ignore[union-attr]
                proc.wait()
    for t in targets:
        meta[t.name] = {k: meta[t.name][k] for k in ("module", "core", "pgo", "cflags")}
    return meta, times


def build_variants(wdir: Path, names: list[str], reuse: bool = False) -> list[Target]:
    """Each variant compiled in its snapshot tree, its module copied into a private package
    (``reuse``: the packages an earlier run built, when present)."""
    build_py = wdir / "venv-build" / "bin" / "python"
    targets = []
    for name in names:
        pkg = wdir / "variants" / name.replace(" ", "_")
        if reuse and list(pkg.glob("registry_core/_native/_core*.so")):
            targets.append(Target(name, build_py, pkg, _core_so(pkg)))
            continue
        tree_name, knobs = VARIANTS[name]
        tree = wdir / f"tree-{tree_name}"
        env = {k: v for k, v in os.environ.items() if k not in KNOBS}
        env.pop("REGISTRY_CORE_PGO", None)
        env.update(knobs)
        env["REGISTRY_CORE_PGO_DIR"] = str(wdir / "pgo-profile")
        flavour = "pgouse" if knobs.get("REGISTRY_CORE_PGO") == "use" else "plain"
        shutil.rmtree(tree / "build" / f"flavour-{flavour}", ignore_errors=True)
        for old in (tree / "src").glob("registry_core/_native/_core*.so"):
            old.unlink()
        t0 = time.perf_counter()
        out = subprocess.run(
            [str(build_py), "setup.py", "--quiet", "build_ext", "--inplace", "--force"],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"variant {name}: build failed\n{out.stderr[-3000:]}")
        shutil.rmtree(pkg, ignore_errors=True)
        shutil.copytree(tree / "src", pkg, ignore=shutil.ignore_patterns("*.egg-info"))
        so = _core_so(pkg)
        print(
            f"  built {name:<24} {so.stat().st_size:>9,} bytes  {time.perf_counter() - t0:5.1f} s"
        )
        targets.append(Target(name, build_py, pkg, so))
    return targets


def wheel_targets(wdir: Path) -> list[Target]:
    targets = []
    for kind, label in (("plain", "wheel -O3"), ("pgo", "wheel PGO")):
        venv = wdir / f"venv-{kind}"
        python = venv / "bin" / "python"
        if not python.exists():
            raise SystemExit(f"{python} missing: run `make wheel-pgo` first")
        site = next(venv.glob("lib/python*/site-packages"))
        targets.append(Target(label, python, None, _core_so(site)))
    return targets


def section_sizes(so: Path) -> tuple[int, int]:
    """(text, data + bss) as `size` reports them (Berkeley format)."""
    out = subprocess.run(["size", str(so)], capture_output=True, text=True, check=True)
    text, data, bss = (int(x) for x in out.stdout.splitlines()[1].split()[:3])
    return text, data + bss


def callgrind_ir(target: Target, op: str, reps: int) -> int:
    """Instructions executed (callgrind's Ir total) by one worker process that sets ``op`` up
    (small inputs) and runs it ``reps`` times."""
    with tempfile.TemporaryDirectory(prefix="bench-pgo-cg-") as tmp:
        outfile = Path(tmp) / "cg.out"
        # Only inside the cffi wrappers of the core's functions: the interpreter's own count
        # moves by millions between identical runs (GIL hand-offs, allocator), the C core's
        # does not. Needs the symbol table: unstripped builds only.
        prefix = [
            "valgrind",
            "--tool=callgrind",
            "--toggle-collect=_cffi_f_rc_*",
            f"--callgrind-out-file={outfile}",
            "-q",
        ]
        target.run(["--small", "--op", op, "--reps", str(reps)], prefix)
        for line in outfile.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit(f"{target.name}: no callgrind summary")


def callgrind_table(targets: list[Target], ops: list[str]) -> dict[str, dict[str, int]]:
    """Per target and op: Ir(op twice) - Ir(op once), i.e. one warm run of the operation. Two
    valgrind processes at a time (instruction counts do not depend on the load)."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(t, op, reps) for t in targets for op in ops for reps in (1, 2)]
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda j: callgrind_ir(*j), jobs))
    got = {(t.name, op, reps): n for (t, op, reps), n in zip(jobs, counts, strict=True)}
    return {t.name: {op: got[t.name, op, 2] - got[t.name, op, 1] for op in ops} for t in targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--op", help=argparse.SUPPRESS)
    parser.add_argument("--small", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=5, help="see --rounds")
    parser.add_argument("--dir", type=Path, default=ROOT / "build" / "wheel-pgo")
    parser.add_argument("--rounds", type=int, default=5, help="repetitions = rounds x reps")
    parser.add_argument("--no-variants", action="store_true", help="only the two wheels")
    parser.add_argument("--variants", help="comma-separated subset of the variants")
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--reuse-variants", action="store_true", help="keep built variants")
    parser.add_argument(
        "--callgrind-targets",
        default="O3,PGO,Os,O3 LTO",
        help="comma-separated unstripped targets to count (O3 and PGO have the wheels' code)",
    )
    parser.add_argument(
        "--callgrind-ops",
        default="chunking,match finding,patch apply,delta encode (wheel),deflate rebuild",
    )
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    wdir = args.dir.resolve()
    commit = (wdir / "commit.txt").read_text().strip() if (wdir / "commit.txt").exists() else "?"
    print(f"bench_pgo: snapshot {commit[:12]}, {sys.platform} {os.uname().machine}")
    targets = wheel_targets(wdir)
    if not args.no_variants:
        names = args.variants.split(",") if args.variants else list(VARIANTS)
        print("building variants:")
        targets += build_variants(wdir, names, args.reuse_variants)

    meta, times = interleaved(targets, args.rounds * args.reps)
    ops = [op for op in OPS if any(op in times[t.name] for t in targets)]
    for t in targets[:2]:  # the wheels must load from their own site-packages
        if "site-packages" not in meta[t.name]["module"]:
            raise SystemExit(f"{t.name} loaded {meta[t.name]['module']}, not the wheel")

    median = {
        t.name: {op: statistics.median(times[t.name][op]) for op in times[t.name]} for t in targets
    }
    base = targets[0].name
    print(
        f"\nTime per operation, ms (median of {args.rounds * args.reps} interleaved runs, order"
        f" rotated each run; ratio to {base}):"
    )
    print("| target | pgo | " + " | ".join(ops) + " |")
    print("|---|---|" + "---|" * len(ops))
    for t in targets:
        cells = []
        for op in ops:
            m = median[t.name].get(op)
            b = median[base].get(op)
            cells.append("-" if m is None else f"{m * 1e3:.2f} ({m / b:.2f})" if b else f"{m:.4f}")
        print(f"| {t.name} | {meta[t.name]['pgo']} | " + " | ".join(cells) + " |")

    ir: dict[str, dict[str, int]] = {}
    if not args.no_callgrind and shutil.which("valgrind"):
        wanted = args.callgrind_targets.split(",")
        cg_targets = [t for t in targets if t.name in wanted]
        cg_ops = [op for op in args.callgrind_ops.split(",") if op in ops]
        ir = callgrind_table(cg_targets, cg_ops)
        ref = cg_targets[0].name
        print(f"\nCallgrind instructions per operation (small inputs; ratio to {ref}):")
        print("| target | " + " | ".join(cg_ops) + " |")
        print("|---|" + "---|" * len(cg_ops))
        for t in cg_targets:
            cells = [
                f"{ir[t.name][op] / 1e6:.2f}M ({ir[t.name][op] / ir[ref][op]:.3f})" for op in cg_ops
            ]
            print(f"| {t.name} | " + " | ".join(cells) + " |")

    print("\nShared library size (bytes; ratio to the first row):")
    print("| target | file | text | data+bss | cflags |")
    print("|---|---|---|---|---|")
    sizes: dict[str, dict[str, int]] = {}
    for t in targets:
        text, data = section_sizes(t.so)
        sizes[t.name] = {"file": t.so.stat().st_size, "text": text, "data": data}
    for t in targets:
        sz, b0 = sizes[t.name], sizes[base]
        print(
            f"| {t.name} | {sz['file']:,} ({sz['file'] / b0['file']:.3f}) | {sz['text']:,}"
            f" ({sz['text'] / b0['text']:.3f}) | {sz['data']:,} | `{meta[t.name]['cflags']}` |"
        )
    for kind in ("plain", "pgo"):
        for whl in sorted((wdir / f"dist-{kind}").glob("*.whl")):
            print(f"wheel ({kind}): {whl.name} {whl.stat().st_size:,} bytes")

    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "pgo.json").write_text(
        json.dumps(
            {"commit": commit, "meta": meta, "times": times, "callgrind": ir, "sizes": sizes},
            indent=1,
        )
    )
    print(f"\nraw data: {results / 'pgo.json'}")


if __name__ == "__main__":
    main()
