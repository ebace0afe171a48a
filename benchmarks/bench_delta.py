"""Delta benchmark: registry-core's DeltaAggregator against zstd, bsdiff, xdelta3 and detools.

Run from the repository root after ``python benchmarks/fetch_corpus.py``::

    python benchmarks/bench_delta.py [--quick] [--only NAME] [--json PATH]

For every consecutive pair of the pinned corpus (pure-Python wheels, native wheels, sdists, and
the boto3 chain of 12 releases), each tool encodes OLD -> NEW and applies the patch back, each
step in its own child process, one at a time:

- ``registry-core``: ``DeltaAggregator().diff`` / ``.apply`` in a small helper process
  (this script with ``--helper``), so its peak RSS is measured the same way as the CLIs'.
- ``zstd -19 --long=31 --patch-from=OLD`` (Debian ``zstd``),
- ``bsdiff`` / ``bspatch`` (Debian ``bsdiff``),
- ``xdelta3 -D -9 -e -s OLD`` (Debian ``xdelta3``; ``-D``/``-R`` keep it from running gzip(1)
  on .tar.gz inputs, which made its output differ from NEW),
- ``detools`` with its HDiffPatch algorithm (``patch_type="hdiffpatch"``, lzma; PyPI
  ``detools``), in the same kind of helper process as ours.

Figures per tool and pair: patch bytes, percent of the new artifact, encode and apply seconds,
apply MB/s of output, peak RSS of the child (``os.wait4`` rusage, ``ru_maxrss``), and whether the
applied output equals NEW byte for byte (a tool that fails is marked FAIL and kept out of the
"best anchor"). Times of the CLIs are the child's wall time; times of the Python helpers are
measured inside the helper around read-inputs + diff/apply + write-output (interpreter start-up
and imports excluded: the library is meant to be embedded). The helper's RSS includes the
interpreter and imports; its baseline after imports is reported too.

With ``--generated`` (or ``--generated-only``, which needs no corpus) the run adds plain pairs,
where ``zstd --patch-from`` is strongest: generated PEP 691 JSON project pages (``json-index``:
a project with 40, 400 and 4,000 files, before and after one release, which adds two files and
yanks an old one) and plain-text pairs (``text``: the changelog and one source module of two
consecutive sdists of the corpus, when it is there). The patch table names the method our
``diff`` kept (BINARY, ARCHIVE, ZSTD_PREFIX, FULL).

Also: the share of deflate streams of each new artifact reproduced byte-exactly by the archive
layer, and how many were copied unchanged; the boto3 chain composed with ``agg.compose``; and the
goals of issue 3 with PASS/MISS. Writes ``benchmarks/results/delta.json``.

A missing anchor is reported with the command that installs it (nothing is installed here).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results" / "delta.json"
TIMEOUT = 900  # seconds per child process
TIME = "/usr/bin/time"  # GNU time (Debian ``time``), for the peak RSS of each child
REPEAT_BELOW = 0.5  # helpers repeat an operation that took less than this (warm figure)
KIND_ORDER = ("wheel-pure", "wheel-native", "sdist", "json-index", "text")
TOOLS = ("registry-core", "zstd", "bsdiff", "xdelta3", "detools")
ANCHORS = TOOLS[1:]
INSTALL_HINT = {
    "zstd": "apt-get install -y zstd   (or: sudo scripts/install_system_deps.sh bench)",
    "bsdiff": "apt-get install -y bsdiff   (or: sudo scripts/install_system_deps.sh bench)",
    "xdelta3": "apt-get install -y xdelta3   (or: sudo scripts/install_system_deps.sh bench)",
    "detools": ".venv/bin/pip install detools   (it is in the project's bench extra)",
}

# Goals of issue 3.
GOAL_BANDWIDTH = 0.027
GOAL_ARCHIVE_FACTOR = 4.0
GOAL_APPLY_MBPS = 100.0


# -- helper process (one diff or apply, measured from outside) -------------------------------


def _helper(argv: list[str]) -> int:
    """``--helper TOOL OP A B OUT``: run one encode/apply and print a JSON line of figures."""
    tool, op, a, b, out = argv
    if tool == "registry-core":
        from registry_core import DeltaAggregator

        agg = DeltaAggregator()
        # zstandard is imported lazily by the library; import it now so the timed region
        # does not include module loading.
        import zstandard  # noqa: F401

        from registry_core.delta import _deflate, _layout  # noqa: F401
    elif tool == "detools":
        import detools
    else:
        raise SystemExit(f"unknown helper tool {tool}")
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    extra: dict = {}

    def once() -> float:
        t0 = time.perf_counter()
        if tool == "registry-core":
            old = Path(a).read_bytes()
            second = Path(b).read_bytes()
            if op == "encode":
                result = agg.diff(old, second)
                extra["stats"] = dict(agg.last_stats)
                info = agg.inspect(result)
                extra["method"] = info.method
                # the sections' stored bytes: the patch without its container (header with
                # two SHA-256 digests, section headers, SHA-256 trailer)
                extra["payload_bytes"] = sum(st for _raw, st in info.sections.values())
            else:
                result = agg.apply(old, second)
            Path(out).write_bytes(result)
        else:
            with open(a, "rb") as fa, open(b, "rb") as fb, open(out, "wb") as fo:
                if op == "encode":
                    detools.create_patch(
                        fa,
                        fb,
                        fo,
                        compression="lzma",
                        patch_type="hdiffpatch",
                        algorithm="hdiffpatch",
                    )
                else:
                    detools.apply_patch(fa, fb, fo)
        return time.perf_counter() - t0

    seconds = once()
    warm = [once() for _ in range(4)] if seconds < REPEAT_BELOW else []
    extra["warm_seconds"] = min(warm) if warm else seconds
    print(json.dumps({"seconds": seconds, "baseline_rss_kb": baseline_kb, **extra}, default=str))
    return 0


# -- running children ----------------------------------------------------------------------


def run_child(cmd: list[str]) -> dict:
    """Run ``cmd`` under ``/usr/bin/time``; wall seconds, exit code, peak RSS (KiB), stdout.

    The RSS comes from GNU time's ``%M`` (the child's ``ru_maxrss``). Reading rusage of a child
    forked from this process directly would count the forked copy of this interpreter.
    """
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        rss_file = Path(tmp) / "rss"
        full = [TIME, "-f", "%M", "-o", str(rss_file), *cmd]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(full, capture_output=True, timeout=TIMEOUT)
            rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            rc, stdout, stderr = -9, exc.stdout or b"", (exc.stderr or b"") + b" [timeout]"
        wall = time.perf_counter() - t0
        try:
            rss_kb = int(rss_file.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            rss_kb = None
    return {
        "wall": wall,
        "rc": rc,
        "rss_kb": rss_kb,
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr": stderr.decode("utf-8", "replace")[-400:],
    }


def tool_available(tool: str) -> bool:
    if tool == "registry-core":
        return True
    if tool == "detools":
        try:
            import detools  # noqa: F401
        except ImportError:
            return False
        return True
    if tool == "bsdiff":
        return shutil.which("bsdiff") is not None and shutil.which("bspatch") is not None
    return shutil.which(tool) is not None


def commands(tool: str, old: Path, new: Path, patch: Path, out: Path) -> tuple[list, list]:
    me = [sys.executable, str(Path(__file__).resolve()), "--helper", tool]
    if tool in ("registry-core", "detools"):
        return (
            [*me, "encode", str(old), str(new), str(patch)],
            [*me, "apply", str(old), str(patch), str(out)],
        )
    if tool == "zstd":
        return (
            [
                "zstd",
                "-q",
                "-f",
                "-19",
                "--long=31",
                f"--patch-from={old}",
                str(new),
                "-o",
                str(patch),
            ],
            [
                "zstd",
                "-q",
                "-f",
                "-d",
                "--long=31",
                f"--patch-from={old}",
                str(patch),
                "-o",
                str(out),
            ],
        )
    if tool == "bsdiff":
        return (
            ["bsdiff", str(old), str(new), str(patch)],
            ["bspatch", str(old), str(out), str(patch)],
        )
    if tool == "xdelta3":
        # -D -R: no external gzip decompression / recompression. xdelta3 otherwise inflates
        # .gz inputs with gzip(1) and recompresses the output, which is not byte-identical.
        return (
            ["xdelta3", "-f", "-D", "-9", "-e", "-s", str(old), str(new), str(patch)],
            ["xdelta3", "-f", "-D", "-R", "-d", "-s", str(old), str(patch), str(out)],
        )
    raise ValueError(tool)


def measure(tool: str, old: Path, new: Path, work: Path) -> dict:
    """Encode and apply with one tool; verify the output against ``new``."""
    patch, out = work / f"{tool}.patch", work / f"{tool}.out"
    enc_cmd, app_cmd = commands(tool, old, new, patch, out)
    row: dict = {"tool": tool, "ok": False}
    enc = run_child(enc_cmd)
    if enc["rc"] != 0 or not patch.exists():
        row["error"] = f"encode exit {enc['rc']}: {enc['stderr'].strip()}"
        return row
    row["patch_bytes"] = patch.stat().st_size
    row["encode_rss_kb"] = enc["rss_kb"]
    row["encode_wall_s"] = enc["wall"]
    row["encode_s"] = enc["wall"]
    if tool in ("registry-core", "detools"):
        info = json.loads(enc["stdout"].strip().splitlines()[-1])
        row["encode_s"] = info["seconds"]
        row["encode_warm_s"] = info["warm_seconds"]
        row["helper_baseline_rss_kb"] = info["baseline_rss_kb"]
        if "stats" in info:
            row["stats"] = info["stats"]
            row["method"] = info["method"]
            row["payload_bytes"] = info.get("payload_bytes")
    app = run_child(app_cmd)
    row["apply_rss_kb"] = app["rss_kb"]
    row["apply_wall_s"] = app["wall"]
    row["apply_s"] = app["wall"]
    if app["rc"] != 0 or not out.exists():
        row["error"] = f"apply exit {app['rc']}: {app['stderr'].strip()}"
        return row
    if tool in ("registry-core", "detools"):
        info = json.loads(app["stdout"].strip().splitlines()[-1])
        row["apply_s"] = info["seconds"]
        row["apply_warm_s"] = info["warm_seconds"]
    same = _sha(out) == _sha(new)
    row["ok"] = same
    if not same:
        row["error"] = "applied output differs from the new artifact"
    with contextlib.suppress(OSError):
        out.unlink()
    return row


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reproduction(new: Path) -> dict:
    """Deflate streams of ``new`` and how many recompress byte-exactly (fresh detector)."""
    from registry_core.delta._deflate import DeflateDetector
    from registry_core.delta._layout import expand

    det = DeflateDetector()
    try:
        expand(new.read_bytes(), detector=det)
    except Exception as exc:  # an artifact the layer refuses is a finding, not a crash here
        return {"error": repr(exc)}
    st = det.stats
    return {
        "streams": st.streams,
        "reproduced": st.reproduced,
        "share": st.share(),
        "byte_share": (
            st.reproduced_compressed_bytes / st.compressed_bytes if st.compressed_bytes else 1.0
        ),
    }


# -- chain ---------------------------------------------------------------------------------


def chain(paths: list[Path]) -> dict:
    """Follow the series release by release with ours; compose the chain into one patch."""
    from registry_core import DeltaAggregator

    agg = DeltaAggregator()
    data = [p.read_bytes() for p in paths]
    patches = [agg.diff(a, b) for a, b in itertools.pairwise(data)]
    t0 = time.perf_counter()
    composed = agg.compose(patches)
    t_compose = time.perf_counter() - t0
    composed_ok = agg.apply(data[0], composed) == data[-1]
    direct = agg.diff(data[0], data[-1])
    return {
        "releases": len(paths),
        "first": paths[0].name,
        "last": paths[-1].name,
        "sum_patches": sum(map(len, patches)),
        "sum_new": sum(map(len, data[1:])),
        "composed_bytes": len(composed),
        "composed_ok": composed_ok,
        "compose_s": t_compose,
        "direct_bytes": len(direct),
        "last_size": len(data[-1]),
    }


# -- report --------------------------------------------------------------------------------


def _fmt_kb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.0f}"


def best_anchor(pair: dict) -> tuple[str, int] | None:
    ok = [(r["patch_bytes"], t) for t, r in pair["tools"].items() if t in ANCHORS and r.get("ok")]
    if not ok:
        return None
    size, tool = min(ok)
    return tool, size


def _pair_label(p: dict) -> str:
    return f"{p['series'].rsplit('-', 1)[0]} {p['old_ver']}->{p['new_ver']}"


def print_pair_table(pairs_out: list[dict], tools: list[str]) -> None:
    """Three tables per pair: patch size, encode/apply time, peak RSS."""
    views = (
        (
            "patch bytes (% of new); x = best anchor / ours",
            19,
            lambda p, r: f"{r['patch_bytes']} ({r['patch_bytes'] / p['new_size']:.2%})",
        ),
        (
            "encode s / apply s (one operation in a fresh process)",
            15,
            lambda p, r: f"{r['encode_s']:.2f}/{r['apply_s']:.3f}",
        ),
        (
            "peak RSS MiB encode / apply",
            11,
            lambda p, r: f"{_fmt_kb(r.get('encode_rss_kb'))}/{_fmt_kb(r.get('apply_rss_kb'))}",
        ),
    )
    for title, width, cell in views:
        _print_view(pairs_out, tools, title, width, cell)
    _print_speed(pairs_out)


def _print_speed(pairs_out: list[dict]) -> None:
    """Our apply MB/s of output and our encode time against ``zstd -19 --long --patch-from``
    (issue 17: apply >= 100 MB/s, encode no slower than zstd on every pair)."""
    print("\nregistry-core apply MB/s of output; encode s ours / zstd (ratio > 1: slower)")
    head = f"{'pair':34} {'new bytes':>9} {'apply MB/s':>10} {'enc ours':>9} {'enc zstd':>9}"
    head += f" {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for p in pairs_out:
        ours, z = p["tools"].get("registry-core"), p["tools"].get("zstd")
        if not ours or not ours.get("ok"):
            continue
        mbps = p["new_size"] / 1e6 / ours["apply_s"] if ours["apply_s"] else float("inf")
        line = f"{_pair_label(p)[:34]:34} {p['new_size']:9d} {mbps:10.1f} {ours['encode_s']:9.3f}"
        if z and z.get("ok"):
            ratio = ours["encode_s"] / z["encode_s"] if z["encode_s"] else float("inf")
            line += f" {z['encode_s']:9.3f} {ratio:6.2f}"
        print(line)


def _print_view(pairs_out: list[dict], tools: list[str], title: str, width: int, cell: Any) -> None:
    """One table: a row per pair, a column per tool."""
    print(f"\n{title}")
    head = f"{'pair':34} {'new bytes':>9} " + " ".join(f"{t:>{width}}" for t in tools)
    if title.startswith("patch"):
        head += f" {'x':>6} {'our method':>11}"
    print(head)
    print("-" * len(head))
    for kind in KIND_ORDER:
        rows = [p for p in pairs_out if p["kind"] == kind]
        if not rows:
            continue
        print(f"[{kind}]")
        for p in rows:
            cells = []
            for t in tools:
                r = p["tools"].get(t)
                txt = "n/a" if r is None else cell(p, r) if r.get("ok") else "FAIL"
                cells.append(f"{txt:>{width}}")
            line = f"{_pair_label(p)[:34]:34} {p['new_size']:9d} " + " ".join(cells)
            if title.startswith("patch"):
                best, ours = best_anchor(p), p["tools"]["registry-core"]
                ok = best and ours.get("ok")
                line += f" {best[1] / ours['patch_bytes']:6.1f}" if ok else f" {'-':>6}"
                line += f" {ours.get('method', '-'):>11}"
            print(line)


def kind_summary(pairs_out: list[dict], tools: list[str]) -> dict:
    summary: dict = {}
    for kind in (*KIND_ORDER, "all"):
        rows = [p for p in pairs_out if kind == "all" or p["kind"] == kind]
        if not rows:
            continue
        new_total = sum(p["new_size"] for p in rows)
        per_tool = {}
        for t in tools:
            rs = [p["tools"].get(t) for p in rows]
            if any(r is None or not r.get("ok") for r in rs):
                fails = sum(1 for r in rs if r is not None and not r.get("ok"))
                per_tool[t] = {"complete": False, "failures": fails}
                continue
            patch_total = sum(r["patch_bytes"] for r in rs)
            enc = sum(r["encode_s"] for r in rs)
            app = sum(r["apply_s"] for r in rs)
            per_tool[t] = {
                "complete": True,
                "patch_bytes": patch_total,
                "percent": patch_total / new_total,
                "encode_s": enc,
                "apply_s": app,
                "apply_mbps": new_total / 1e6 / app if app else None,
                "max_encode_rss_kb": max(r["encode_rss_kb"] or 0 for r in rs),
                "max_apply_rss_kb": max(r["apply_rss_kb"] or 0 for r in rs),
            }
        summary[kind] = {"pairs": len(rows), "new_bytes": new_total, "tools": per_tool}
    return summary


def print_kind_table(summary: dict, tools: list[str]) -> None:
    print(
        "\nper kind: sum of patches / sum of new artifacts (%); total encode s, "
        "apply MB/s (sum new / sum apply s), max RSS MiB encode/apply"
    )
    head = f"{'kind':14} {'pairs':>5} {'new bytes':>11} " + " ".join(f"{t:>24}" for t in tools)
    print(head)
    print("-" * len(head))
    for kind, s in summary.items():
        cells, cells2 = [], []
        for t in tools:
            r = s["tools"].get(t)
            if r is None or not r["complete"]:
                cells.append(f"{'incomplete':>24}")
                cells2.append(f"{'':>24}")
                continue
            cells.append(f"{r['patch_bytes']:>12d} ({r['percent']:6.2%})   ")
            txt = (
                f"{r['encode_s']:.1f}s {r['apply_mbps']:.0f}MB/s "
                f"{_fmt_kb(r['max_encode_rss_kb'])}/{_fmt_kb(r['max_apply_rss_kb'])}"
            )
            cells2.append(f"{txt:>24}")
        print(f"{kind:14} {s['pairs']:5d} {s['new_bytes']:11d} " + " ".join(cells))
        print(f"{'':14} {'':5} {'':11} " + " ".join(cells2))


def goals(pairs_out: list[dict], summary: dict) -> list[dict]:
    out = []
    ours = [(p, p["tools"]["registry-core"]) for p in pairs_out]
    ours_ok = [(p, r) for p, r in ours if r.get("ok")]
    n = len(pairs_out)
    failed = n - len(ours_ok)

    not_larger, factors, worst = 0, [], None
    for p, r in ours_ok:
        best = best_anchor(p)
        if best is None:
            continue
        tool, size = best
        if r["patch_bytes"] <= size:
            not_larger += 1
        f = size / r["patch_bytes"]
        factors.append(f)
        if worst is None or f < worst[0]:
            worst = (f, f"{p['series']} {p['old_ver']}->{p['new_ver']} (best anchor {tool})")
    out.append(
        {
            "goal": "every pair: our patch no larger than the best anchor's",
            "measured": f"{not_larger}/{n} pairs",
            "pass": not_larger == n and failed == 0,
        }
    )
    four = sum(1 for f in factors if f >= GOAL_ARCHIVE_FACTOR)
    out.append(
        {
            "goal": f"archives: >= {GOAL_ARCHIVE_FACTOR:g}x smaller than the best anchor",
            "measured": (
                f"{four}/{n} pairs; smallest factor {worst[0]:.2f}x at {worst[1]}"
                if worst
                else "n/a"
            ),
            "pass": four == n and failed == 0,
        }
    )
    allrow = summary.get("all", {}).get("tools", {}).get("registry-core")
    if allrow and allrow["complete"]:
        out.append(
            {
                "goal": f"bandwidth over the corpus <= {GOAL_BANDWIDTH:.1%}",
                "measured": f"{allrow['percent']:.2%} ({allrow['patch_bytes']} / "
                f"{summary['all']['new_bytes']} bytes)",
                "pass": allrow["percent"] <= GOAL_BANDWIDTH,
            }
        )
    else:
        out.append({"goal": "bandwidth", "measured": "our run failed on some pair", "pass": False})
    faster, slow = 0, []
    for p, r in ours_ok:
        z = p["tools"].get("zstd")
        if z is None or not z.get("ok"):
            continue
        if r["encode_s"] <= z["encode_s"]:
            faster += 1
        else:
            slow.append(r["encode_s"] / z["encode_s"])
    zs = summary.get("all", {}).get("tools", {}).get("zstd")
    total_txt = ""
    if allrow and allrow["complete"] and zs and zs["complete"]:
        total_txt = f"; total {allrow['encode_s']:.1f}s vs zstd {zs['encode_s']:.1f}s"
    out.append(
        {
            "goal": "encode no slower than zstd -19 --long=31 --patch-from (per pair)",
            "measured": f"{faster}/{n} pairs"
            + (f"; slowest {max(slow):.1f}x zstd's time" if slow else "")
            + total_txt,
            "pass": faster == n and failed == 0,
        }
    )
    speeds = [(p["new_size"] / 1e6 / r["apply_s"], p) for p, r in ours_ok if r["apply_s"] > 0]
    over = sum(1 for s, _ in speeds if s >= GOAL_APPLY_MBPS)
    agg_txt = ""
    if allrow and allrow["complete"] and not failed:
        warm = sum(r.get("apply_warm_s", r["apply_s"]) for _, r in ours_ok)
        agg_txt = (
            f"; corpus {allrow['apply_mbps']:.1f} MB/s (warm, best of 5 in one process: "
            f"{summary['all']['new_bytes'] / 1e6 / warm:.1f} MB/s)"
        )
    slowest = min(speeds, key=lambda x: x[0]) if speeds else None
    out.append(
        {
            "goal": f"apply >= {GOAL_APPLY_MBPS:g} MB/s of output (per pair)",
            "measured": f"{over}/{n} pairs"
            + (
                f"; slowest {slowest[0]:.1f} MB/s ({slowest[1]['series']} {slowest[1]['new_ver']})"
                if slowest
                else ""
            )
            + agg_txt,
            "pass": over == n and failed == 0,
        }
    )
    plain = [(p, r) for p, r in ours_ok if p["kind"] in ("json-index", "text")]
    plain_z = [(p, r) for p, r in plain if p["tools"].get("zstd", {}).get("ok")]
    if plain_z:
        behind = [
            (r["patch_bytes"] - p["tools"]["zstd"]["patch_bytes"], _pair_label(p))
            for p, r in plain_z
            if r["patch_bytes"] > p["tools"]["zstd"]["patch_bytes"]
        ]
        worst_plain = max(behind) if behind else None
        out.append(
            {
                "goal": "plain pairs (json-index, text): no larger than zstd -19 --long=31 "
                "--patch-from",
                "measured": f"{len(plain_z) - len(behind)}/{len(plain_z)} pairs"
                + (
                    f"; worst {worst_plain[0]} bytes larger at {worst_plain[1]}"
                    if worst_plain
                    else ""
                ),
                "pass": not behind,
            }
        )
        payload_behind = [
            p
            for p, r in plain_z
            if (r.get("payload_bytes") or 0) > p["tools"]["zstd"]["patch_bytes"]
        ]
        container = [r["patch_bytes"] - (r.get("payload_bytes") or 0) for _, r in plain_z]
        out.append(
            {
                "goal": "(diagnostic) plain pairs: our payload without the container no larger "
                "than zstd's whole output",
                "measured": f"{len(plain_z) - len(payload_behind)}/{len(plain_z)} pairs; "
                f"container {min(container)}-{max(container)} bytes per patch",
                "pass": not payload_behind,
            }
        )
    return out


def _version(name: str) -> str:
    if name == "zstd":
        cmd = ["zstd", "--version"]
    elif name == "xdelta3":
        cmd = ["xdelta3", "-V"]
    elif name == "bsdiff":
        q = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "bsdiff"], capture_output=True, text=True
        )
        return q.stdout.strip() or "?"
    else:
        try:
            import detools

            return detools.__version__
        except ImportError:
            return "missing"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return "missing"
    return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else "?"


def _tree() -> str:
    """The commit measured, and whether the delta sources differed from it."""
    root = HERE.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--",
                "src/registry_core/delta",
                "csrc",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "", ""
    if not head:  # an exported snapshot (git archive) has no .git: say which commit it was
        return os.environ.get("REGISTRY_CORE_TREE", "unknown")
    return head + (" (delta sources modified)" if dirty else "")


def _ver_of(path: Path) -> str:
    name = path.name
    for suffix in (".whl", ".tar.gz", ".json", ".txt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.split("-")[1]


# -- generated plain pairs (JSON index pages, text) -------------------------------------------


def index_page(n_files: int, *, seed: int, release: bool) -> bytes:
    """A PEP 691 JSON project page of ``n_files`` files (deterministic); with ``release`` the
    next state: one more release (an sdist and a wheel) and the oldest file yanked."""
    import random

    rng = random.Random(seed)
    count = n_files + (2 if release else 0)
    files = []
    for i in range(count):
        ver = f"1.{i // 2}.0"
        name = f"demo_pkg-{ver}" + ("-py3-none-any.whl" if i % 2 else ".tar.gz")
        digest = f"{rng.getrandbits(256):064x}"
        entry = {
            "filename": name,
            "url": f"https://files.example.org/packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}"
            f"/{name}",
            "hashes": {"sha256": digest},
            "requires-python": ">=3.8" if i < count // 2 else ">=3.9",
            "size": rng.randrange(20_000, 3_000_000),
            "upload-time": f"20{20 + i * 6 // count}-{1 + i % 12:02d}-{1 + i % 28:02d}"
            f"T{i % 24:02d}:{i % 60:02d}:00.000000Z",
            "yanked": "broken build" if release and i == 0 else False,
            "data-dist-info-metadata": {"sha256": f"{rng.getrandbits(256):064x}"}
            if i % 2
            else False,
        }
        files.append(entry)
    doc = {
        "meta": {"api-version": "1.1", "_last-serial": 1000 + count},
        "name": "demo-pkg",
        "versions": [f"1.{v}.0" for v in range((count + 1) // 2)],
        "files": files,
    }
    return json.dumps(doc, indent=None, separators=(",", ":")).encode()


def _sdist_member(path: Path, suffix: str) -> bytes | None:
    import tarfile

    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            if m.isfile() and m.name.split("/", 1)[-1] == suffix:
                f = tf.extractfile(m)
                return f.read() if f else None
    return None


def generated_pairs(work: Path, corpus_series: list) -> list[tuple[str, str, Path, Path]]:
    """(series, kind, old, new) of the generated plain pairs, written under ``work``."""
    out = []
    for n in (40, 400, 4000):
        old, new = work / f"index{n}-1.json", work / f"index{n}-2.json"
        old.write_bytes(index_page(n, seed=n, release=False))
        new.write_bytes(index_page(n, seed=n, release=True))
        out.append((f"pep691-{n}files-json", "json-index", old, new))
    members = {
        "requests-sdist": ("HISTORY.md", "requests/models.py"),
        "attrs-sdist": ("CHANGELOG.md", "src/attr/_make.py"),
    }
    for s in corpus_series:
        if s.name not in members or len(s.paths) < 2:
            continue
        a, b = s.paths[-2], s.paths[-1]
        for member in members[s.name]:
            old_b, new_b = _sdist_member(a, member), _sdist_member(b, member)
            if old_b is None or new_b is None:
                continue
            tag = member.rsplit("/", 1)[-1].replace(".", "_").replace("-", "_")
            old = work / f"{s.name}_{tag}-{_ver_of(a)}.txt"
            new = work / f"{s.name}_{tag}-{_ver_of(b)}.txt"
            old.write_bytes(old_b)
            new.write_bytes(new_b)
            out.append((f"{s.name.split('-')[0]}_{tag}-text", "text", old, new))
    return out


def _speed(argv: list[str]) -> int:
    """``--speed [NAME]``: in one process, per corpus pair, our apply MB/s of output with the
    default rebuild threads and with one thread (best of 2 each), and our encode time against
    ``zstd -19 --long=31 --patch-from`` (child wall time); totals at the end."""
    from _corpus import pairs
    from registry_core.delta import DeltaAggregator, _layout

    agg = DeltaAggregator()
    tot = dict.fromkeys(("out", "par", "ser", "enc", "zstd"), 0.0)
    slower = 0
    threads = _layout.default_threads()
    with tempfile.TemporaryDirectory() as tmp:
        for name, _kind, old, new in pairs():
            if argv and argv[0] not in name:
                continue
            o, n = old.read_bytes(), new.read_bytes()
            t = time.perf_counter()
            patch = agg.diff(o, n)
            enc = time.perf_counter() - t
            zcmd = ["zstd", "-q", "-f", "-19", "--long=31", f"--patch-from={old}", str(new)]
            t = time.perf_counter()
            subprocess.run([*zcmd, "-o", f"{tmp}/z.zst"], check=True, capture_output=True)
            zt = time.perf_counter() - t
            got = []
            for th in (threads, 1):
                orig = _layout.default_threads
                _layout.default_threads = lambda th=th: th  # type: ignore[misc]
                try:
                    best = float("inf")
                    for _ in range(2):
                        t = time.perf_counter()
                        out = agg.apply(o, patch)
                        best = min(best, time.perf_counter() - t)
                    assert out == n
                finally:
                    _layout.default_threads = orig
                got.append(best)
            par, ser = got
            tot["out"] += len(n)
            tot["par"] += par
            tot["ser"] += ser
            tot["enc"] += enc
            tot["zstd"] += zt
            slower += enc > zt
            print(
                f"{new.name[:48]:48} {len(n) / 1e6:7.2f} MB  apply {len(n) / par / 1e6:6.1f} "
                f"MB/s ({threads} threads) {len(n) / ser / 1e6:6.1f} MB/s (1)  encode "
                f"{enc:6.3f}s zstd {zt:6.3f}s ({enc / zt:4.2f}x)",
                flush=True,
            )
    if tot["out"]:
        print(
            f"TOTAL {tot['out'] / 1e6:.1f} MB: apply {tot['out'] / tot['par'] / 1e6:.1f} MB/s "
            f"({threads} threads), {tot['out'] / tot['ser'] / 1e6:.1f} MB/s (1 thread); encode "
            f"{tot['enc']:.1f}s vs zstd {tot['zstd']:.1f}s; encode slower than zstd on {slower} "
            f"pairs; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--helper"]:
        return _helper(argv[1:])
    if argv[:1] == ["--speed"]:
        return _speed(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one pair per series (the last)")
    ap.add_argument("--only", metavar="NAME", help="only series whose name contains NAME")
    ap.add_argument("--json", type=Path, default=RESULTS, help=f"output (default {RESULTS})")
    ap.add_argument("--no-chain", action="store_true", help="skip the composed boto3 chain")
    ap.add_argument(
        "--generated", action="store_true", help="add the generated JSON index and text pairs"
    )
    ap.add_argument(
        "--generated-only",
        action="store_true",
        help="only the generated pairs (text pairs need the corpus's sdists; JSON pairs do not)",
    )
    ap.add_argument(
        "--without-prefix",
        action="store_true",
        help="also diff every pair with DeltaAggregator(prefix=False) (the plain pairs always)",
    )
    args = ap.parse_args(argv)

    from _corpus import corpus_dir, series
    from registry_core import build_info

    all_series = [s for s in series() if not args.only or args.only in s.name]
    source_series = series()
    if args.generated_only:
        all_series = []
    elif not all_series:
        print(
            f"no corpus series found in {corpus_dir()} (filter {args.only!r}): run "
            "`python benchmarks/fetch_corpus.py` first",
            file=sys.stderr,
        )
        return 2
    tools = []
    for t in TOOLS:
        if tool_available(t):
            tools.append(t)
        else:
            print(f"anchor {t} is missing; install it with: {INSTALL_HINT[t]}", file=sys.stderr)
    print(
        "tools: "
        + ", ".join(f"{t} ({_version(t) if t != 'registry-core' else 'this tree'})" for t in tools)
    )

    gen_dir = tempfile.TemporaryDirectory(prefix="bench-delta-gen-")
    todo = []
    if args.generated or args.generated_only:
        todo.extend(generated_pairs(Path(gen_dir.name), source_series))
    for s in all_series:
        ps = list(zip(s.paths, s.paths[1:], strict=False))
        if args.quick:
            ps = ps[-1:]
        todo.extend((s.name, s.kind, a, b) for a, b in ps)
    pairs_out = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
        for i, (name, kind, old, new) in enumerate(todo, 1):
            work = Path(tmp)
            p = {
                "series": name,
                "kind": kind,
                "old": old.name,
                "new": new.name,
                "old_ver": _ver_of(old),
                "new_ver": _ver_of(new),
                "old_size": old.stat().st_size,
                "new_size": new.stat().st_size,
                "tools": {},
            }
            for t in tools:
                p["tools"][t] = measure(t, old, new, work)
                for f in work.iterdir():
                    f.unlink()
            p["reproduction"] = reproduction(new)
            r0 = p["tools"]["registry-core"]
            z0 = p["tools"].get("zstd", {})
            if args.without_prefix or p["kind"] in ("json-index", "text"):
                from registry_core import DeltaAggregator

                # the encoder without the new method, on the same inputs (in this process)
                without = DeltaAggregator(prefix=False)
                p["without_prefix_bytes"] = len(without.diff(old.read_bytes(), new.read_bytes()))
                p["without_prefix_method"] = without.last_stats.get("method")
                if r0.get("ok") and z0.get("ok"):
                    p["vs_patch_from"] = r0["patch_bytes"] - z0["patch_bytes"]
            pairs_out.append(p)
            r = p["tools"]["registry-core"]
            best = best_anchor(p)
            print(
                f"[{i}/{len(todo)} {time.time() - started:6.0f}s] {name} {p['old_ver']}->"
                f"{p['new_ver']}: ours {r.get('patch_bytes', 'FAIL')}"
                f" best anchor {best[1] if best else '-'} ({best[0] if best else '-'})",
                flush=True,
            )

    gen_dir.cleanup()
    print_pair_table(pairs_out, tools)
    plain_rows = [p for p in pairs_out if "without_prefix_bytes" in p]
    if plain_rows:
        print(
            "\nours without ZSTD_PREFIX (prefix=False), ours, our payload "
            "(patch minus container), zstd --patch-from"
        )
        print(f"{'pair':34} {'without':>13} {'ours':>6} {'payload':>7} {'zstd':>6}  method")
        for p in plain_rows:
            r, z = p["tools"]["registry-core"], p["tools"].get("zstd", {})
            print(
                f"{_pair_label(p)[:34]:34} {p['without_prefix_bytes']:6d} "
                f"{p['without_prefix_method'] or '-':>6} {r.get('patch_bytes', 'FAIL'):>6} "
                f"{r.get('payload_bytes') or '-':>7} {z.get('patch_bytes', '-'):>6}  "
                f"{r.get('method', '-')}"
            )
    summary = kind_summary(pairs_out, tools)
    print_kind_table(summary, tools)

    print(
        "\ndeflate streams of each new artifact: reproduced byte-exactly by the archive layer "
        "(count, compressed-byte share) and copied unchanged from the old one"
    )
    print(
        f"{'artifact':64} {'streams':>7} {'reproduced':>11} {'bytes':>7} {'copied':>7}"
        f"  patch method"
    )
    for p in pairs_out:
        rep = p["reproduction"]
        st = p["tools"]["registry-core"].get("stats", {})
        if "error" in rep:
            print(f"{p['new'][:64]:64} error: {rep['error']}")
            continue
        copied = st.get("copied_streams", 0)
        print(
            f"{p['new'][:64]:64} {rep['streams']:7d} {rep['share']:11.1%} "
            f"{rep['byte_share']:7.1%} {copied:7d}  {p['tools']['registry-core'].get('method')}"
        )
    tot_s = sum(p["reproduction"].get("streams", 0) for p in pairs_out)
    tot_r = sum(p["reproduction"].get("reproduced", 0) for p in pairs_out)
    if tot_s:
        print(f"{'all':64} {tot_s:7d} {tot_r / tot_s:11.1%}")

    chain_out = None
    boto = next((s for s in all_series if s.name == "boto3-wheel"), None)
    if boto is not None and not args.no_chain and len(boto.paths) >= 3:
        chain_out = chain(boto.paths)
        c = chain_out
        anchors_chain = {}
        for t in tools:
            rs = [p["tools"][t] for p in pairs_out if p["series"] == "boto3-wheel"]
            if len(rs) == c["releases"] - 1 and all(r.get("ok") for r in rs):
                anchors_chain[t] = sum(r["patch_bytes"] for r in rs)
        c["per_tool_sum_patches"] = anchors_chain
        print(f"\nboto3 chain: {c['releases']} releases {c['first']} -> {c['last']}")
        for t, v in anchors_chain.items():
            print(
                f"  {t:14} sum of {c['releases'] - 1} patches {v:8d} bytes "
                f"({v / c['sum_new']:.2%} of {c['sum_new']} bytes of new artifacts)"
            )
        print(
            f"  compose(all {c['releases'] - 1} patches) = {c['composed_bytes']} bytes "
            f"(verified: {c['composed_ok']}, {c['compose_s']:.2f}s); direct diff first->last "
            f"{c['direct_bytes']} bytes; sum of parts {c['sum_patches']} bytes"
        )

    goal_rows = goals(pairs_out, summary) if "registry-core" in tools else []
    if chain_out is not None:
        goal_rows.append(
            {
                "goal": "compose(chain) no larger than the sum of its parts, and verified",
                "measured": f"{chain_out['composed_bytes']} <= {chain_out['sum_patches']}",
                "pass": chain_out["composed_ok"]
                and chain_out["composed_bytes"] <= chain_out["sum_patches"],
            }
        )
    print("\ngoals (issue 3)")
    for g in goal_rows:
        print(f"  {'PASS' if g['pass'] else 'MISS'}  {g['goal']}: {g['measured']}")
    failures = [
        (p["new"], t, r.get("error"))
        for p in pairs_out
        for t, r in p["tools"].items()
        if not r.get("ok")
    ]
    for new, t, err in failures:
        print(f"  FAIL  {t} on {new}: {err}")

    doc = {
        "command": "python benchmarks/bench_delta.py " + " ".join(argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
        },
        "build": build_info(),
        "tree": _tree(),
        "library": str(Path(sys.modules["registry_core"].__file__).parent),
        "corpus": str(corpus_dir()),
        "tools": {t: (_version(t) if t != "registry-core" else "this tree") for t in tools},
        "notes": "times: CLIs = child wall time; Python helpers (registry-core, detools) = inside "
        "the helper around read+diff/apply+write. RSS = ru_maxrss of the child (KiB).",
        "pairs": pairs_out,
        "summary": summary,
        "chain": chain_out,
        "goals": goal_rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nwrote {args.json}")
    return 0 if not any(t == "registry-core" for _, t, _ in failures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
