"""The ML layer's cost inside the server: the request-path hand-off, the observer's throughput,
and the first full read of the typosquat popular list.

    .venv/bin/python benchmarks/ml/bench_ml_server.py [--quick]

- hand-off: ``MLObserver.submit`` per request (what the request path pays: a tuple appended to
  a bounded queue) over N synthetic page and file requests from 200 peers, with the rules
  detector and the scaling forecaster consuming them on the worker thread at the same time;
- throughput: requests per second the single worker scores (submit included);
- popular list: ``popular_from_index`` over P projects of a SQLite index, each wheel requiring
  five of 97 dependency names (two database reads per project).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zipfile


def _wheel(name: str, requires: list[str]) -> bytes:
    """A minimal wheel whose METADATA requires ``requires``."""
    escaped = name.replace("-", "_")
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        when = (2024, 1, 1, 0, 0, 0)
        zf.writestr(zipfile.ZipInfo(f"{escaped}/__init__.py", when), b"")
        zf.writestr(zipfile.ZipInfo(f"{escaped}-1.0.dist-info/METADATA", when), meta)
        wheel = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
        zf.writestr(zipfile.ZipInfo(f"{escaped}-1.0.dist-info/WHEEL", when), wheel)
    return buf.getvalue()


def _observer(n: int) -> dict[str, float]:
    from registry_core.audit import MemorySink
    from registry_core.config._schema import MLConfig
    from registry_core.server._ml_hooks import MLObserver, TenantML, _advisor, _scorer

    ml = MLConfig(anomaly_detection=True, scaling=True)
    scorer, sink = _scorer(ml, None, MemorySink())
    tml = TenantML("acme", scorer=scorer, alerts=sink, advisor=_advisor(ml, "acme"))
    obs = MLObserver({"acme": tml}, max_queue=n + 1)
    paths = [
        f"/simple/project-{i % 500}/" if i % 3 else f"/p{i % 500}/p{i % 500}-1.0-py3-none-any.whl"
        for i in range(n)
    ]
    peers = [f"10.0.0.{i % 200}" for i in range(n)]
    t0 = time.perf_counter()
    for i in range(n):
        obs.submit("acme", "GET", paths[i], 200, 1000, peers[i], "-")
    t1 = time.perf_counter()
    if not obs.drain(600):
        raise RuntimeError("the observer did not drain in 600 s")
    t2 = time.perf_counter()
    stats = obs.stats()
    obs.close()
    return {
        "submit_us": (t1 - t0) / n * 1e6,
        "worker_rps": n / (t2 - t0),
        "dropped": float(stats.get("dropped", 0)),
    }


def _popular(projects: int) -> dict[str, float]:
    from registry_core.auth import Principal
    from registry_core.index import Index
    from registry_core.ml._typosquat import popular_from_index

    with tempfile.TemporaryDirectory() as d, Index(d) as index:
        who = Principal.local(index.tenant)
        for i in range(projects):
            name = f"proj-{i}"
            deps = [f"dep-{(i * 7 + k) % 97}" for k in range(5)]
            blob = _wheel(name, deps)
            index.upload(f"proj_{i}-1.0-py3-none-any.whl", io.BytesIO(blob), principal=who)
        t0 = time.perf_counter()
        top = popular_from_index(index, 500)
        dt = time.perf_counter() - t0
    return {"ms": dt * 1e3, "us_per_project": dt / projects * 1e6, "names": float(len(top))}


def run(quick: bool = False, seed: int = 0) -> str:
    """The server-side ML costs as a markdown table (``seed`` unused: the inputs are fixed)."""
    n = 10_000 if quick else 50_000
    projects = 200 if quick else 1000
    obs = _observer(n)
    pop = _popular(projects)
    return "\n".join(
        [
            "## ML in the server (`bench_ml_server`)",
            "",
            "| measure | value |",
            "| --- | ---: |",
            f"| request-path hand-off (MLObserver.submit), {n:,} requests | "
            f"{obs['submit_us']:.2f} µs/request |",
            "| worker throughput, rules + scaling forecast | "
            f"{obs['worker_rps']:,.0f} requests/s |",
            f"| requests dropped (queue full) | {obs['dropped']:.0f} |",
            f"| popular_from_index, {projects:,} projects on SQLite | {pop['ms']:.0f} ms "
            f"({pop['us_per_project']:.0f} µs/project, {pop['names']:.0f} names) |",
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(run(quick=parser.parse_args().quick))
