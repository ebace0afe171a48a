"""The traces the ML tables are measured on: what each generated trace holds, how fast it is
made, and the figures measured on it beside the parameters they come from.

    .venv/bin/python benchmarks/ml/bench_ml_traces.py [--quick] [--seed N]

Traces: ``generate(seed=N)`` (14 days, release-driven, with attacks) and
``generate(TrafficModel.static_zipf(), seed=N)`` (the same clients' volume of independent Zipf
requests, no releases); ``--quick`` makes 3-day traces with fewer clients.
"""

from __future__ import annotations

import argparse
import time

from registry_core.ml.traces import CLIENT_TYPES, Trace, TrafficModel, generate
from registry_core.ml.traces._stats import measure


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}%" if total else "-"


def _traces(quick: bool, seed: int) -> list[tuple[Trace, TrafficModel, float]]:
    days, clients = (3.0, 800) if quick else (14.0, None)
    out = []
    for model in (TrafficModel(), TrafficModel.static_zipf()):
        t0 = time.perf_counter()
        trace = generate(model, seed=seed, days=days, clients=clients)
        out.append((trace, model, time.perf_counter() - t0))
    return out


def run(quick: bool = False, seed: int = 0) -> str:
    """The markdown tables of the traces (see the module docstring)."""
    traces = _traces(quick, seed)
    lines = ["### Traces", ""]
    lines += [
        "| trace | requests | clients | projects | GB sent | days | episodes | generated in"
        " | requests/s | sha256 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    summaries = []
    for trace, _model, secs in traces:
        s = trace.summary()
        summaries.append(s)
        lines.append(
            f"| `{trace.source}` | {s['requests']:,} | {s['clients']:,} | {s['projects']:,} "
            f"| {s['bytes'] / 1e9:.1f} | {s['days']:.1f} | {s['episodes']} | {secs:.1f} s "
            f"| {s['requests'] / secs:,.0f} | `{trace.sha256()[:12]}` |"
        )
    lines += ["", "### Requests by kind, label and client type", ""]
    kinds = sorted({k for s in summaries for k in s["by_kind"]})
    labels = sorted({k for s in summaries for k in s["by_label"]})
    lines += [
        "| trace | " + " | ".join(kinds) + " | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * (len(kinds) + len(labels)),
    ]
    for (trace, _, _), s in zip(traces, summaries, strict=True):
        n = s["requests"]
        lines.append(
            f"| `{trace.source}` | "
            + " | ".join(_pct(s["by_kind"].get(k, 0), n) for k in kinds)
            + " | "
            + " | ".join(_pct(s["by_label"].get(k, 0), n) for k in labels)
            + " |"
        )
    lines += ["", "| trace | client type | clients | share of requests | share of bytes |"]
    lines += ["|---|---|---:|---:|---:|"]
    for trace, _, _ in traces:
        reqs: dict[str, int] = {}
        sent: dict[str, int] = {}
        for r in trace.requests:
            t = trace.clients.get(r.client, "other")
            reqs[t] = reqs.get(t, 0) + 1
            sent[t] = sent.get(t, 0) + r.size
        count: dict[str, int] = {}
        for t in trace.clients.values():
            count[t] = count.get(t, 0) + 1
        total_r, total_b = sum(reqs.values()), sum(sent.values())
        for t in CLIENT_TYPES:
            if t in reqs:
                lines.append(
                    f"| `{trace.source}` | {t} | {count.get(t, 0):,} | "
                    f"{_pct(reqs[t], total_r)} | {_pct(sent[t], total_b)} |"
                )
    trace, model, _ = traces[0]
    m = measure(trace, model)
    lines += [
        "",
        f"### Measured on `{trace.source}` beside the parameters",
        "",
        "| figure | measured | parameter (or what it implies) |",
        "|---|---:|---:|",
        f"| popularity exponent s: downloads ~ (rank+{model.popularity_q:g})^-s, top 100"
        f" projects, dev+CI | {m['popularity_s']:.2f} | {m['popularity_s_param']:.2f} |",
        f"| diurnal peak/trough, developer requests, weekdays | {m['peak_trough']:.2f} "
        f"| {m['peak_trough_param']:.2f} |",
        f"| diurnal peak hour (UTC) | {m['peak_hour_utc']} | {m['peak_hour_utc_param']} |",
        f"| upgrade lag median, days ({m['upgrades']:,} upgrades) | "
        f"{m['upgrade_lag_median_days']:.2f} | {m['upgrade_lag_expected_days']:.2f} seen before "
        f"the trace ends ({m['upgrade_lag_param_days']:.1f} uncensored) |",
        f"| mirror lag after upload, median s | {m['mirror_lag_median_s']:.0f} "
        f"| {m['mirror_lag_param_s']:.0f} (half a poll) |",
        f"| CI share of file downloads | {100 * m['ci_share_of_downloads']:.1f}% | - |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(run(quick=args.quick, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
