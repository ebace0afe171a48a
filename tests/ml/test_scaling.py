"""Scaling hints: arithmetic, gauges on a registry passed in, the ASGI handler, and the replay
against a static provisioning."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from test_forecast import _seasonal

from registry_core.errors import InvalidArgumentError
from registry_core.ml._forecast import Forecaster, train
from registry_core.ml._scaling import ScalingAdvisor, replay_hints, scaling_endpoint
from registry_core.ml.traces import Request

DAY = 86400.0


def _primed(rate_per_bucket: int, buckets: int = 200) -> Forecaster:
    """A seasonal-mean forecaster fed a flat load: its forecast is that load."""
    fc = Forecaster("seasonal-mean", bucket_s=900.0)
    for b in range(buckets):
        for i in range(rate_per_bucket):
            fc.observe(Request(b * 900.0 + i, "c", "page", "p", "", "", 1, route="/r"))
    return fc


def test_hint_arithmetic_and_gauges() -> None:
    reg = CollectorRegistry()
    fc = _primed(900)  # 1 rps
    adv = ScalingAdvisor(
        fc, per_worker_rps=0.25, headroom=0.5, workers_per_instance=4, registry=reg
    )
    hint = adv.recommend(150 * 900.0)
    assert hint.expected_rps == pytest.approx(1.0)
    assert hint.workers == math.ceil(1.0 * 1.5 / 0.25) == 6
    assert hint.instances == 2
    assert reg.get_sample_value("registry_scaling_workers") == 6
    assert reg.get_sample_value("registry_scaling_instances") == 2
    assert reg.get_sample_value("registry_scaling_upper_rps") == pytest.approx(hint.upper_rps)
    capped = ScalingAdvisor(fc, per_worker_rps=0.01, max_workers=10).recommend(150 * 900.0)
    assert capped.workers == 10 and "max_workers" in capped.reason
    floor = ScalingAdvisor(_primed(0, 0), per_worker_rps=1.0, min_workers=2).recommend(0.0)
    assert floor.workers == 2 and "min_workers" in floor.reason
    bads: list[dict[str, Any]] = [
        {"per_worker_rps": 0},
        {"per_worker_rps": 1, "min_workers": 5, "max_workers": 2},
        {"per_worker_rps": 1, "headroom": -1},
        {"per_worker_rps": 1, "workers_per_instance": 0},
    ]
    for bad in bads:
        with pytest.raises(InvalidArgumentError):
            ScalingAdvisor(fc, **bad)


def _call(app: Any, method: str) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    asyncio.run(app({"type": "http", "method": method, "path": "/scaling"}, receive, send))
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, sent[1]["body"]


def test_asgi_endpoint() -> None:
    adv = ScalingAdvisor(_primed(900), per_worker_rps=0.5)
    app = scaling_endpoint(adv, clock=lambda: 150 * 900.0)
    status, headers, body = _call(app, "GET")
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["workers"] == adv.recommend(150 * 900.0).workers
    assert set(doc) == {"start", "workers", "instances", "expected_rps", "upper_rps", "reason"}
    status, headers, _ = _call(app, "POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_replay_against_static() -> None:
    trace = _seasonal(days=6)
    art = train(trace, seed=0, models=["ridge"])
    start = int(0.7 * 6 * 96) * 900.0
    out = replay_hints(Forecaster.from_artifact(art), trace, start=start, per_worker_rps=0.005)
    assert out["buckets"] > 100
    assert out["worker_hours_hint"] < out["worker_hours_static"]  # a daily cycle: static wastes
    assert out["worker_hours_needed"] <= out["worker_hours_static"]
    assert 0.0 <= out["under_hint_share"] <= 0.2
