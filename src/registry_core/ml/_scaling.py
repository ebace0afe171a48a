"""Scaling hints from the request-rate forecast: the library recommends, the deployment acts.

:class:`ScalingAdvisor` takes the forecaster's upper quantile of the total request count of
the next bucket (over every tracked series; the quantile is fitted on training totals), and
turns it into a number of workers (``per_worker_rps`` each, plus ``headroom``) clamped to
``[min_workers, max_workers]``, and instances of ``workers_per_instance``. It exports the hint
as Prometheus gauges on a ``CollectorRegistry`` passed in, and :func:`scaling_endpoint` serves
it as JSON from an ASGI handler (the lead mounts it under the server's admin routes). Sans-IO:
``recommend(now)`` takes the time.

:func:`replay_hints` measures the advice on held-out time: for every bucket, the workers the
hint gave against the workers the actual load needed, and against a static provisioning at the
training period's peak (worker-hours and under-provisioned buckets).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from ._forecast import Forecaster
    from .traces import Trace

__all__ = ["ScalingAdvisor", "ScalingHint", "replay_hints", "scaling_endpoint"]


@dataclass(frozen=True)
class ScalingHint:
    """What to run for the bucket starting at ``start``: ``workers`` and ``instances``;
    ``expected_rps`` / ``upper_rps`` the forecast behind it; ``reason`` in words."""

    start: float
    workers: int
    instances: int
    expected_rps: float
    upper_rps: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ScalingAdvisor:
    """Workers and instances for the next bucket from ``forecaster``'s upper quantile."""

    def __init__(
        self,
        forecaster: Forecaster,
        *,
        per_worker_rps: float,
        headroom: float = 0.2,
        min_workers: int = 1,
        max_workers: int = 64,
        workers_per_instance: int = 4,
        tenant: str | None = None,
        registry: Any = None,
    ) -> None:
        if not per_worker_rps > 0:
            raise InvalidArgumentError(f"per_worker_rps must be positive, not {per_worker_rps!r}")
        if not 0 <= headroom <= 10:
            raise InvalidArgumentError(f"headroom must be in [0, 10], not {headroom!r}")
        if not 1 <= min_workers <= max_workers:
            raise InvalidArgumentError(
                f"need 1 <= min_workers <= max_workers, not {min_workers}, {max_workers}"
            )
        if workers_per_instance < 1:
            raise InvalidArgumentError("workers_per_instance must be at least 1")
        self.forecaster = forecaster
        self.per_worker_rps = float(per_worker_rps)
        self.headroom = float(headroom)
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.workers_per_instance = workers_per_instance
        self.tenant = tenant
        self._gauges: dict[str, Any] = {}
        if registry is not None:
            from prometheus_client import Gauge

            for name, doc in (
                ("registry_scaling_workers", "Workers recommended for the next bucket"),
                ("registry_scaling_instances", "Instances recommended for the next bucket"),
                ("registry_scaling_expected_rps", "Forecast request rate, next bucket"),
                ("registry_scaling_upper_rps", "Upper-quantile forecast request rate"),
            ):
                self._gauges[name] = Gauge(name, doc, registry=registry)

    def workers_for(self, rps: float) -> int:
        """Workers for a request rate: ``ceil(rps * (1 + headroom) / per_worker_rps)``,
        clamped."""
        need = math.ceil(rps * (1.0 + self.headroom) / self.per_worker_rps - 1e-9)
        return max(self.min_workers, min(self.max_workers, need))

    def recommend(self, now: float) -> ScalingHint:
        """The hint for the next bucket after ``now``'s; gauges updated."""
        total = self.forecaster.forecast_total(now, tenant=self.tenant)
        n_series = len(self.forecaster.forecast(now, tenant=self.tenant))
        expected, upper, start = total.expected_rps, total.upper_rps, total.start
        workers = self.workers_for(upper)
        instances = math.ceil(workers / self.workers_per_instance)
        raw = upper * (1.0 + self.headroom) / self.per_worker_rps
        if workers == self.max_workers and raw > self.max_workers:
            why = f"capped at max_workers={self.max_workers} (the forecast asks {raw:.1f})"
        elif workers == self.min_workers and raw <= self.min_workers:
            why = f"floor of min_workers={self.min_workers}"
        else:
            why = (
                f"upper q{self.forecaster.quantile:g} forecast {upper:.2f} rps over "
                f"{n_series} series, +{self.headroom:.0%} headroom, {self.per_worker_rps:g} "
                "rps per worker"
            )
        hint = ScalingHint(start, workers, instances, expected, upper, why)
        if self._gauges:
            self._gauges["registry_scaling_workers"].set(workers)
            self._gauges["registry_scaling_instances"].set(instances)
            self._gauges["registry_scaling_expected_rps"].set(expected)
            self._gauges["registry_scaling_upper_rps"].set(upper)
        return hint


_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def scaling_endpoint(
    advisor: ScalingAdvisor, *, clock: Callable[[], float] = time.time
) -> Callable[[_Scope, _Receive, _Send], Awaitable[None]]:
    """An ASGI handler answering ``GET`` with the current hint as JSON (405 otherwise)."""

    async def app(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope.get("type") != "http":
            return
        if scope.get("method") not in ("GET", "HEAD"):
            body = b'{"error":"method not allowed"}'
            status, extra = 405, [(b"allow", b"GET, HEAD")]
        else:
            body = json.dumps(advisor.recommend(clock()).to_json(), sort_keys=True).encode()
            status, extra = 200, []
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body}
        )

    return app


def replay_hints(
    forecaster: Forecaster,
    trace: Trace,
    *,
    start: float,
    per_worker_rps: float,
    headroom: float = 0.2,
    static_workers: int | None = None,
    **advisor_args: Any,
) -> dict[str, float]:
    """Replay ``trace`` through ``forecaster`` and an advisor; from ``start`` on, compare each
    bucket's hint with the workers its actual load needed (no headroom: the hint's headroom is
    its own margin). ``static_workers`` (default: the peak need before ``start`` plus headroom)
    is the static alternative. Returns counts of under-provisioned buckets and worker-hours."""
    advisor = ScalingAdvisor(
        forecaster, per_worker_rps=per_worker_rps, headroom=headroom, **advisor_args
    )
    bucket = forecaster.bucket_s
    origin = forecaster.origin
    reqs = trace.requests
    counts: dict[int, int] = {}
    for r in reqs:
        b = int((r.time - origin) // bucket)
        counts[b] = counts.get(b, 0) + 1
    first = int((start - origin) // bucket)
    last = max(counts) if counts else first
    need = {b: math.ceil(c / bucket / per_worker_rps - 1e-9) for b, c in counts.items()}
    if static_workers is None:
        peak = max((c for b, c in counts.items() if b < first), default=0) / bucket
        static_workers = advisor.workers_for(peak)
    i = 0
    hinted: dict[int, int] = {}
    for b in range(first - forecaster.horizon + 1, last - forecaster.horizon + 2):
        boundary = origin + b * bucket
        while i < len(reqs) and reqs[i].time < boundary:
            forecaster.observe(reqs[i])
            i += 1
        # at the start of bucket b the hint covers bucket b - 1 + horizon
        hint = advisor.recommend(boundary)
        hinted[b - 1 + forecaster.horizon] = hint.workers
    under = under_static = 0
    short = 0
    n = 0
    hours = bucket / 3600.0
    wh_hint = wh_static = wh_need = 0.0
    for b in range(first, last + 1):
        w = hinted.get(b, advisor.min_workers)
        k = need.get(b, 0)
        n += 1
        under += w < k
        under_static += static_workers < k
        short += max(0, k - w)
        wh_hint += w * hours
        wh_static += static_workers * hours
        wh_need += max(k, advisor.min_workers) * hours
    return {
        "buckets": float(n),
        "under_hint": float(under),
        "under_static": float(under_static),
        "under_hint_share": under / n if n else math.nan,
        "under_static_share": under_static / n if n else math.nan,
        "worker_shortfall_hint": float(short),
        "worker_hours_hint": wh_hint,
        "worker_hours_static": wh_static,
        "worker_hours_needed": wh_need,
        "saved_vs_static": 1.0 - wh_hint / wh_static if wh_static else math.nan,
        "static_workers": float(static_workers),
    }
