"""What Telemetry.wrap costs per request, in process (no sockets: the ASGI app is called
directly, so the wrapper's cost is not hidden behind HTTP parsing).

The inner app is a real IndexApp answering a cached ``/simple/<project>/`` page (the hot
read path). Configurations, each run ``--repeat`` times (median shown), ``--requests``
requests from ``--concurrency`` tasks:

- ``bare``: the IndexApp alone;
- ``wrap, all off``: Telemetry(metrics=False, access_log=False): the health routes and the
  contextvar seams only;
- ``metrics``: Prometheus counters and histogram;
- ``metrics+log``: plus the JSON access line (to a discarding sink);
- ``tracing+metrics+log``: plus a span per request exported over OTLP/HTTP to a rotel
  collector on loopback (``--exporter blackhole``) when rotel is installed, else to an
  exporter that discards (the export thread still encodes nothing then: say which in the
  output).

    .venv/bin/python benchmarks/bench_telemetry.py [--requests 3000] [--concurrency 8]
                                                   [--repeat 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _rotel(tmp: Path):
    try:
        import rotel
    except ImportError:
        yield None
        return
    binary = Path(rotel.__file__).parent / "rotel-agent"
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(binary), "start",
            "--otlp-http-endpoint", f"127.0.0.1:{port}",
            "--otlp-grpc-endpoint", f"127.0.0.1:{_free_port()}",
            "--exporter", "blackhole",
            "--pid-file", str(tmp / "rotel.pid"), "--log-file", str(tmp / "rotel.log"),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _scope(path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"accept", b"text/html")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }


async def _drive(app, path: str, requests: int, concurrency: int) -> float:
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def worker(n: int) -> None:
        for _ in range(n):
            await app(_scope(path), receive, send)

    start = time.perf_counter()
    share = requests // concurrency
    await asyncio.gather(*(worker(share) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    assert set(statuses) == {200}, set(statuses)
    return share * concurrency / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "telemetry.json"))
    args = parser.parse_args()

    from _dists import make_wheel
    from registry_core.index import Index
    from registry_core.server import IndexApp
    from registry_core.telemetry import Telemetry

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "store").mkdir()
        index = Index(tmp / "store")
        raw, _ = index.create_token()
        import io

        index.upload(
            "demo_pkg-1.0-py3-none-any.whl", io.BytesIO(make_wheel("demo-pkg", "1.0")), token=raw
        )
        inner = IndexApp(index)
        path = "/simple/demo-pkg/"
        with _rotel(tmp) as endpoint:
            exporter = None
            if endpoint is None:
                from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

                class _Discard(SpanExporter):
                    def export(self, spans):
                        return SpanExportResult.SUCCESS

                exporter = _Discard()
            configs = {
                "bare": None,
                "wrap, all off": Telemetry(metrics=False, access_log=False),
                "metrics": Telemetry(access_log=False),
                "metrics+log": Telemetry(access_log=lambda line: None),
                "tracing+metrics+log": Telemetry(
                    otlp_endpoint=endpoint if exporter is None else None,
                    span_exporter=exporter,
                    access_log=lambda line: None,
                ),
            }
            apps = {name: inner if t is None else t.wrap(inner) for name, t in configs.items()}
            results: dict[str, list[float]] = {name: [] for name in apps}
            asyncio.run(_drive(inner, path, 200, 4))  # warm the page cache
            for _ in range(args.repeat):
                for name, app in apps.items():  # interleaved, so drift hits every config alike
                    results[name].append(
                        asyncio.run(_drive(app, path, args.requests, args.concurrency))
                    )
            tracing = configs["tracing+metrics+log"]
            assert tracing is not None
            tracing.force_flush(30)
            span_stats = tracing.stats
            for t in configs.values():
                if t is not None:
                    t.shutdown()
        inner.close()
        index.close()

    base = statistics.median(results["bare"])
    rows = []
    print(f"{'configuration':<22} {'req/s':>9} {'vs bare':>8}")
    for name, values in results.items():
        rps = statistics.median(values)
        rows.append({"configuration": name, "rps": round(rps, 1), "relative": round(rps / base, 4)})
        print(f"{name:<22} {rps:>9.0f} {rps / base:>8.1%}")
    sink = "rotel (blackhole exporter) over OTLP/HTTP" if endpoint else "a discarding exporter"
    print(f"spans went to {sink}: {span_stats}")
    out = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "span_sink": sink,
        "span_stats": span_stats,
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
