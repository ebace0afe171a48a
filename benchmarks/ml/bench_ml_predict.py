"""Next-download prediction: quality on held-out time against baselines, calibration, serving
cost, and what it buys: patches precomputed on the server and files prefetched into a proxy.

    .venv/bin/python benchmarks/ml/bench_ml_predict.py [--quick] [--seed N]

One generated trace (named in the output) is split by time (first 70% to train and calibrate,
the rest held out); every figure below is on the held-out part. The precompute simulation
replays the held-out releases: after each upload the server precomputes patches from up to
``B`` older versions chosen (a) as today, the ``B`` newest, (b) by predicted demand
(:class:`PredictivePrecompute`: the expected number of holders of each version that upgrade),
or (c) not at all; each upgrade request (a client holding v asks for a newer w) then finds its
patch ready or not. Patches are counted per version pair (a project's flavours share the
decision). The latency figure multiplies the hits by the measured difference between computing
a patch and reading a stored one, on a pair of synthetic 1 MiB wheels measured in this run.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(_ROOT / "src"))

DAY = 86400.0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.0f}"
    return str(v)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _quality_table(rep: dict[str, Any]) -> str:
    cols = ["brier", "log_loss", "ece", "auc", "accuracy", "threshold", "base_rate"]
    rows = []
    for name, q in rep["models"].items():
        tag = f"{name} (shipped)" if name == rep["shipped"] else name
        rows.append([tag, *[q.get(c, float("nan")) for c in cols]])
    for name, q in rep["baselines"].items():
        rows.append([f"baseline: {name}", *[q.get(c, float("nan")) for c in cols]])
    for trig, q in rep.get("by_trigger", {}).items():
        rows.append(
            [
                f"{rep['shipped']}, {trig}-triggered only",
                *[q.get(c, float("nan")) for c in cols[:5]],
                "",
                q["base_rate"],
            ]
        )
    return _table(["model", *cols], rows)


def _wheel(version: str, seed: int, size: int = 1 << 20) -> bytes:
    rng = random.Random(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(32):
            words = [f"w{rng.randrange(5000)}" for _ in range(size // 32 // 6)]
            if version != "1.0" and i % 8 == 0:
                words[: len(words) // 4] = [f"v{version}"] * (len(words) // 4)
            z.writestr(f"demo/m{i}.py", " ".join(words))
        z.writestr("demo-1.0.dist-info/METADATA", f"Name: demo\nVersion: {version}\n")
    return buf.getvalue()


def measure_patch_latency() -> tuple[float, float, int, int]:
    """(seconds to compute a patch, seconds to read it back from disk, patch bytes, new bytes)
    on two synthetic wheels, medians of 3."""
    from registry_core.delta import DeltaAggregator

    old, new = _wheel("1.0", 1), _wheel("1.0", 1)[:0] or _wheel("1.1", 1)
    agg = DeltaAggregator()
    times = []
    patch = b""
    for _ in range(3):
        t = time.perf_counter()
        patch = agg.diff(old, new)
        times.append(time.perf_counter() - t)
    reads = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p.rcd")
        with open(path, "wb") as f:
            f.write(patch)
        for _ in range(3):
            t = time.perf_counter()
            with open(path, "rb") as f:
                f.read()
            reads.append(time.perf_counter() - t)
    return statistics.median(times), statistics.median(reads), len(patch), len(new)


def simulate_precompute(
    trace: Any, data: Any, p: Any, cut: float, budget: int, min_demand: float = 0.5
) -> list[list[Any]]:
    """Rows (strategy, upgrade requests, found precomputed, share, patches made, wasted share)."""
    cat = trace.catalogue
    # demand per (project, release index) and held version index, from the release examples
    demand: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e, prob in zip(data.examples, p, strict=False):
        if e.trigger == "release":
            rel = cat.latest(e.project, e.time)
            if rel is not None:
                demand[(e.project, rel.version)][e.held] += float(prob)
    index = {
        name: {r.version: i for i, r in enumerate(rels)} for name, rels in cat.projects.items()
    }
    releases = [
        (rel.time, name, k)
        for name, rels in cat.projects.items()
        for k, rel in enumerate(rels)
        if k > 0 and rel.time >= cut
    ]
    plans: dict[str, dict[tuple[str, str], set[str]]] = {
        "none": {},
        "newest": {},
        "predicted": {},
        "thrifty": {},
    }
    for _t, name, k in releases:
        rels = cat.projects[name]
        target = rels[k].version
        newest = [r.version for r in reversed(rels[max(0, k - budget) : k])]
        plans["newest"][(name, target)] = set(newest)
        d = demand.get((name, target), {})
        ranked = [v for v, x in sorted(d.items(), key=lambda t: -t[1]) if x >= 0.05][:budget]
        plans["predicted"][(name, target)] = set(ranked or newest)
        plans["thrifty"][(name, target)] = {
            v for v, x in sorted(d.items(), key=lambda t: -t[1])[:budget] if x >= min_demand
        }
    # the upgrade requests of the held-out time, to versions released in it
    holds: dict[tuple[str, str], int] = {}
    upgrades: list[tuple[str, str, str]] = []
    for r in trace.requests:
        if r.kind != "file" or not r.version or not (200 <= r.status < 400):
            continue
        vi = index.get(r.project, {}).get(r.version, -1)
        if vi < 0:
            continue
        key = (r.client, r.project)
        old = holds.get(key, -1)
        if r.time >= cut and 0 <= old < vi and cat.projects[r.project][vi].time >= cut:
            upgrades.append((r.project, r.version, cat.projects[r.project][old].version))
        holds[key] = max(old, vi)
    used: set[tuple[str, str, str]] = set(upgrades)
    rows = []
    for strategy, plan in plans.items():
        hits = sum(1 for proj, w, v in upgrades if v in plan.get((proj, w), ()))
        made = sum(len(v) for v in plan.values())
        wasted = sum(1 for (proj, w), vs in plan.items() for v in vs if (proj, w, v) not in used)
        rows.append(
            [
                strategy if strategy != "newest" else f"previous {budget} releases (today)",
                len(upgrades),
                hits,
                hits / len(upgrades) if upgrades else float("nan"),
                made,
                wasted / made if made else float("nan"),
            ]
        )
    rows[2][0] = f"predicted demand, top {budget}"
    rows[3][0] = f"predicted demand >= {min_demand:g} upgrades, up to {budget}"
    return rows


def simulate_prefetch(data: Any, p: Any, trace: Any, threshold: float) -> list[list[Any]]:
    """Proxy prefetch at each held-out release, for the trace's proxy and mirror clients."""
    kinds = getattr(trace, "clients", {}) or {}
    rows = []
    sel = [
        i
        for i, e in enumerate(data.examples)
        if e.trigger == "release" and kinds.get(e.client, "other") in ("proxy", "mirror", "ci")
    ]
    sizes = []
    for i in sel:
        e = data.examples[i]
        rel = trace.catalogue.latest(e.project, e.time)
        sizes.append(max((s for _, s in rel.files), default=0) if rel is not None else 0)
    wanted = sum(1 for i in sel if data.y[i] == 1 and data.to_latest[i] == 1)
    for label, rule in (
        ("none", lambda _i: False),
        ("every new release of a held project", lambda _i: True),
        (f"predicted >= {threshold:.2f} (operating threshold)", lambda i: p[i] >= threshold),
        ("predicted >= 0.95", lambda i: p[i] >= 0.95),
    ):
        pick = [k for k, i in enumerate(sel) if rule(i)]
        hits = sum(1 for k in pick if data.y[sel[k]] == 1 and data.to_latest[sel[k]] == 1)
        fetched = sum(sizes[k] for k in pick)
        waste = sum(
            sizes[k] for k in pick if not (data.y[sel[k]] == 1 and data.to_latest[sel[k]] == 1)
        )
        rows.append(
            [
                label,
                wanted,
                len(pick),
                hits,
                hits / wanted if wanted else float("nan"),
                fetched / 1e9,
                waste / fetched if fetched else float("nan"),
            ]
        )
    return rows


def serving_cost(predictor: Any, data: Any, n: int = 2000) -> tuple[float, float, float, float]:
    """(wall p50, wall p99, CPU p50, CPU p99) microseconds of one Predictor.predict call, in
    process (CPU time beside wall time: the machine may be shared)."""
    picks = data.examples[:: max(1, len(data.examples) // n)][:n]
    wall, cpu = [], []
    for e in picks:
        t, c = time.perf_counter(), time.thread_time()
        predictor.predict(e.client, e.project, e.held, e.time)
        cpu.append((time.thread_time() - c) * 1e6)
        wall.append((time.perf_counter() - t) * 1e6)
    wall.sort()
    cpu.sort()

    def q(xs: list[float], f: float) -> float:
        return xs[min(len(xs) - 1, int(len(xs) * f))]

    return q(wall, 0.5), q(wall, 0.99), q(cpu, 0.5), q(cpu, 0.99)


def run(quick: bool = False, seed: int = 0) -> str:
    """The prediction tables (markdown)."""
    import numpy as np

    from registry_core.ml._features import FeatureExtractor
    from registry_core.ml._predict import load_predictor, make_examples
    from registry_core.ml._train import split_examples, train_next_download
    from registry_core.ml.traces import generate

    days, clients = (28.0, 100) if quick else (42.0, 400)
    started = time.perf_counter()
    trace = generate(seed=seed, days=days, clients=clients)
    out = [
        "## Next-download prediction",
        "",
        f"Trace `{trace.source}`: {len(trace.requests):,} requests over {days:g} days; trained "
        f"on the first 70% of its time, measured on the rest. Seed {seed}.",
        "",
    ]
    reports = {}
    for label, horizon in (("7 days", 7 * DAY), ("24 hours", DAY)):
        ex = FeatureExtractor(trace.catalogue)
        data = make_examples(trace, horizon_s=horizon, extractor=ex)
        art, rep = train_next_download(trace, seed=seed, horizon_s=horizon, examples=data)
        reports[label] = (art, rep, data, ex)
        n = rep["examples"]
        out += [
            f"### Horizon {label}",
            "",
            f"Examples: {n['fit']:,} fit, {n['calibration']:,} calibration, {n['test']:,} held "
            f"out. Accuracy is at the threshold chosen on the calibration slice; read it beside "
            "the base rate (share of positives) and the majority-class accuracy "
            f"({rep['models'][rep['shipped']]['majority_accuracy']:.4f}).",
            "",
            _quality_table(rep),
            "",
        ]
    out += ["### Calibration and serving", ""]
    rows = []
    for label, (art, rep, data, ex) in reports.items():
        pred = load_predictor(art.to_bytes()).bind(ex)
        p50, p99, c50, c99 = serving_cost(pred, data)
        for name, q in rep["models"].items():
            rows.append(
                [
                    f"{label}, {name}",
                    q["ece"],
                    q["interval_coverage"],
                    q["interval_width"],
                    int(q["model_bytes"]),
                    f"{p50:.0f} / {p99:.0f}" if name == rep["shipped"] else "",
                    f"{c50:.0f} / {c99:.0f}" if name == rep["shipped"] else "",
                ]
            )
    out += [
        _table(
            [
                "model",
                "ECE",
                "Venn-Abers coverage (10 groups)",
                "mean interval width",
                "model bytes",
                "predict() wall p50 / p99 us",
                "CPU p50 / p99 us",
            ],
            rows,
        ),
        "",
        "Coverage: share of 10 equal-count groups of held-out predictions whose observed rate "
        "lies inside the group's mean [low, high]; predict() is the whole call (features from "
        "the in-memory store, model, calibration, per-file split) after the trace's replay.",
        "",
    ]
    # what it buys, on the 7-day model
    art, rep, data, ex = reports["7 days"]
    pred = load_predictor(art.to_bytes())
    _, _, test, cut = split_examples(data, trace.start)
    p, _, _ = pred.calibrator.transform(pred.scores(test.X))
    compute_s, read_s, patch_bytes, new_bytes = measure_patch_latency()
    out += [
        "### Precomputed patches (server, after each held-out upload)",
        "",
        "An upgrade request counts when a client holding v asks for w, w released in the held-out "
        "time; 'found' means the patch v -> w was precomputed at w's upload.",
        "",
    ]
    for budget in (1, 3):
        rows = simulate_precompute(trace, test, p, cut, budget)
        for row in rows:
            row.append(row[2] * max(0.0, compute_s - read_s))
        out += [
            _table(
                [
                    "bases chosen",
                    "upgrade requests",
                    "found precomputed",
                    "share",
                    "patches computed",
                    "never used",
                    "patch latency saved (s)",
                ],
                rows,
            ),
            "",
        ]
    out += [
        f"Latency per hit: computing a patch took {compute_s * 1000:.1f} ms and reading a "
        f"stored one {read_s * 1000:.2f} ms (median of 3, synthetic wheels of "
        f"{new_bytes:,} bytes, patch {patch_bytes:,} bytes, this machine, this run). Bandwidth "
        "is the same either way (the patch is sent once computed); precompute moves the "
        "computation off the request.",
        "",
        "### Prefetch into a proxy (CI, proxy and mirror clients, at each held-out release)",
        "",
    ]
    rows = simulate_prefetch(test, p, trace, pred.threshold)
    out += [
        _table(
            [
                "prefetch",
                "newest-release requests within 7 days",
                "prefetches",
                "found prefetched",
                "share",
                "GB prefetched",
                "bytes wasted",
            ],
            rows,
        ),
        "",
        f"Threshold {pred.threshold:.2f} (chosen on the calibration slice). Prefetching moves "
        "upstream bytes ahead of the request; wasted bytes are files fetched that the client "
        "did not ask for within the horizon.",
        "",
        f"({time.perf_counter() - started:.0f} s)",
    ]
    del np
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(run(quick=a.quick, seed=a.seed))
