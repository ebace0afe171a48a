"""Figures measured on a trace, to set beside the generator's parameters (tests and tables).

Each function measures one claim of docs/ml.md on any trace (generated or replayed): the
popularity exponent, the diurnal profile, the upgrade lag after a release, the mirror lag, the
share of CI traffic. For a generated trace the expected value comes from the same parameters
(:func:`expected_upgrade_lag_median` accounts for the trace's end cutting long lags off).
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from typing import Any

from ._generate import DAY, TrafficModel, diurnal_profile
from ._record import Trace

__all__ = [
    "expected_upgrade_lag_median",
    "hourly_profile",
    "measure",
    "mirror_lags",
    "popularity_slope",
    "upgrade_lags",
]


def _slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def popularity_slope(
    trace: Trace, *, q: float = 0.0, top: int = 100, types: tuple[str, ...] = ("dev", "ci")
) -> float:
    """The exponent ``s`` of downloads ~ ``(rank + q) ** -s`` fitted (least squares in log-log)
    over the ``top`` most downloaded projects, counting the file downloads of clients of
    ``types`` (demand; all clients when the trace has no types)."""
    counts: Counter[str] = Counter()
    typed = bool(trace.clients)
    for r in trace.requests:
        if r.kind != "file" or r.label or not r.project:
            continue
        if typed and trace.clients.get(r.client) not in types:
            continue
        counts[r.project] += 1
    ranked = sorted(counts.values(), reverse=True)[:top]
    if len(ranked) < 3:
        return 0.0
    xs = [math.log(i + 1 + q) for i in range(len(ranked))]
    return -_slope(xs, [math.log(c) for c in ranked])


def hourly_profile(
    trace: Trace, *, types: tuple[str, ...] = ("dev",), weekdays: bool = True
) -> list[float]:
    """The share of the requests of clients of ``types`` in each UTC hour (weekdays only by
    default; generated time starts on a Monday, a real log's at its epoch)."""
    hours = [0] * 24
    typed = bool(trace.clients)
    for r in trace.requests:
        if r.label or (typed and trace.clients.get(r.client) not in types):
            continue
        if weekdays and int(r.time // DAY + (0 if typed else 3)) % 7 >= 5:
            continue  # the unix epoch was a Thursday
        hours[int(r.time % DAY // 3600)] += 1
    total = sum(hours) or 1
    return [h / total for h in hours]


def upgrade_lags(trace: Trace, *, types: tuple[str, ...] = ("dev",)) -> list[float]:
    """Days from the first release after the held version to the download of a newer version,
    for each upgrade (file download with ``held`` set and a different version) of ``types``."""
    out: list[float] = []
    typed = bool(trace.clients)
    cat = trace.catalogue
    for r in trace.requests:
        if r.kind != "file" or not r.held or r.held == r.version or r.label:
            continue
        if typed and trace.clients.get(r.client) not in types:
            continue
        newer = cat.newer(r.project, r.held, r.time)
        if newer:
            out.append((r.time - newer[0].time) / DAY)
    return out


def mirror_lags(trace: Trace) -> list[float]:
    """Seconds from each release's upload to a mirror's first download of one of its files."""
    first: dict[tuple[str, str, str], float] = {}
    for r in trace.requests:
        if r.kind == "file" and trace.clients.get(r.client) == "mirror":
            first.setdefault((r.client, r.project, r.version), r.time)
    out = []
    for (_, project, version), t in first.items():
        rel = trace.catalogue.release(project, version)
        if rel is not None and rel.time >= 0:
            out.append(t - rel.time)
    return out


def expected_upgrade_lag_median(trace: Trace, model: TrafficModel, samples: int = 20) -> float:
    """The median upgrade lag (days) the model implies for this trace: log-normal lags drawn
    for each project's first release inside the trace, kept when the upgrade falls before the
    trace's end (what :func:`upgrade_lags` can observe). Seeded: deterministic."""
    rng = random.Random(0)
    end = trace.end
    kept: list[float] = []
    for rels in trace.catalogue.projects.values():
        first = next((r for r in rels if r.time >= 0), None)
        if first is None:
            continue
        for _ in range(samples):
            lag = (
                model.upgrade_lag_median_days
                * DAY
                * math.exp(model.upgrade_lag_sigma * rng.gauss(0, 1))
            )
            if first.time + lag < end:
                kept.append(lag / DAY)
    return statistics.median(kept) if kept else 0.0


def measure(trace: Trace, model: TrafficModel | None = None) -> dict[str, Any]:
    """The figures of the trace table: measured values, and the model's beside them."""
    model = model or TrafficModel()
    prof = hourly_profile(trace)
    exp = diurnal_profile(model)
    lags = upgrade_lags(trace)
    mlags = mirror_lags(trace)
    files = [r for r in trace.requests if r.kind == "file" and not r.label]
    ci = sum(1 for r in files if trace.clients.get(r.client) == "ci")
    return {
        "popularity_s": popularity_slope(trace, q=model.popularity_q),
        "popularity_s_param": model.popularity_s,
        "peak_trough": max(prof) / max(min(prof), 1e-9),
        "peak_trough_param": max(exp) / min(exp),
        "peak_hour_utc": prof.index(max(prof)),
        "peak_hour_utc_param": exp.index(max(exp)),
        "upgrade_lag_median_days": statistics.median(lags) if lags else 0.0,
        "upgrade_lag_expected_days": expected_upgrade_lag_median(trace, model),
        "upgrade_lag_param_days": model.upgrade_lag_median_days,
        "upgrades": len(lags),
        "mirror_lag_median_s": statistics.median(mlags) if mlags else 0.0,
        "mirror_lag_param_s": model.mirror_poll_s / 2,
        "ci_share_of_downloads": ci / len(files) if files else 0.0,
    }
