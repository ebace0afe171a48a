"""Transport latency and throughput against one local server (hypercorn, TCP+UDP, loopback).

Clients, all against the same server in the same run:
- ``ours h2``: registry_core Transport over HTTP/2; ``ours h3``: the same over HTTP/3;
- ``httpx h1`` / ``httpx h2``: plain ``httpx.AsyncClient`` (HTTP/1.1, HTTP/2), the anchor.

Cases:
- small GET: sequential GETs of a 25-byte file on a warm connection, p50/p99 latency;
- delta fetch: ``Transport.fetch(v1.1, have=v1.0)`` of a ~72 KB wheel (226 + patch, patch
  cached by the server, result verified); the httpx rows download the full wheel instead;
- 32 in flight: distinct small GETs, 32 outstanding at a time, requests/s;
- new connection: a fresh client's first small GET (TCP/UDP + TLS/QUIC handshake), p50/p99;
  ours resumes the TLS/QUIC session of the previous client (0-RTT over HTTP/3), httpx has
  no session resumption; every client of a row shares one SSLContext (no CA reload);
- 1 MiB: sequential downloads of a 1 MiB body, MB/s.

The machine is shared, so the whole set runs ``--repeat`` times (default 3) with the client
order rotated, and the table shows per-cell medians; every run is kept in the JSON.
Prints a table and writes ``benchmarks/results/transport.json``.

    .venv/bin/python benchmarks/bench_transport.py [--quick] [--repeat N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _servers import make_versions
from registry_core.flags import FeatureFlags
from registry_core.server import make_self_signed
from registry_core.transport import Transport

FLAGS = FeatureFlags(
    overrides={
        "QUIC_TRANSPORT": True,
        "CONNECTION_COALESCE": True,
        "DELTA_AGGREGATOR": True,
        "ZSTD_COMPRESSION": True,
    }
)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class Client:
    """One client under test with a uniform async interface."""

    def __init__(self, name: str, cafile: str) -> None:
        self.name = name
        self.cafile = cafile
        self.tickets: dict = {}  # TLS/QUIC sessions, shared by every fresh client of ours
        self.ctx = ssl.create_default_context(cafile=cafile)  # shared by httpx clients
        self.c = self._make()

    def _make(self):
        if self.name.startswith("ours"):
            return Transport(
                verify=self.cafile,
                http3=self.name.endswith("h3"),
                flags=FLAGS,
                coalesce_requests=False,
                session_tickets=self.tickets,
            )
        return httpx.AsyncClient(
            http2=self.name.endswith("h2"), verify=self.ctx, limits=httpx.Limits(max_connections=32)
        )

    async def get(self, url: str) -> bytes:
        r = await self.c.get(url)
        if self.name.startswith("ours"):
            assert r.status == 200, r.status
            return r.content
        assert r.status_code == 200, r.status_code
        return r.content

    async def delta(self, url: str, have: bytes) -> bytes:
        if self.name.startswith("ours"):
            return await self.c.fetch(url, have=have)
        return await self.get(url)

    async def close(self) -> None:
        await self.c.aclose()

    def fresh(self) -> Client:
        other = Client.__new__(Client)
        other.name, other.cafile, other.tickets, other.ctx = (
            self.name,
            self.cafile,
            self.tickets,
            self.ctx,
        )
        other.c = other._make()
        return other


async def bench_client(
    name: str, cafile: str, base: str, files: dict[str, bytes], n: int
) -> dict[str, float]:
    client = Client(name, cafile)
    small, big = base + "/small.txt", base + "/blob/1mib.bin"
    old, new = files["v0"], files["v1"]
    out: dict[str, float] = {}
    for _ in range(20):  # warm up: connection, Alt-Svc, server caches
        await client.get(small)
    assert await client.delta(base + "/pkg-1.1.whl", old) == new

    lat = []
    for _ in range(n):
        t = time.perf_counter()
        await client.get(small)
        lat.append(time.perf_counter() - t)
    out["small_p50_ms"], out["small_p99_ms"] = pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3

    lat = []
    for _ in range(max(20, n // 3)):
        t = time.perf_counter()
        data = await client.delta(base + "/pkg-1.1.whl", old)
        lat.append(time.perf_counter() - t)
        assert data == new
    out["delta_p50_ms"], out["delta_p99_ms"] = pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3

    total = n * 2
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            await client.get(f"{small}?i={i}")

    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    out["inflight32_rps"] = total / (time.perf_counter() - t)

    lat = []
    client.resumed = 0
    for _ in range(max(10, n // 4)):
        fresh = client.fresh()
        t = time.perf_counter()
        await fresh.get(small)
        lat.append(time.perf_counter() - t)
        await asyncio.sleep(0.005)  # let the session ticket arrive, as a longer exchange would
        if name.startswith("ours"):
            client.resumed += fresh.c.stats["tls_resumed"] + fresh.c.stats["h3_0rtt"]
        await fresh.close()
    out["newconn_p50_ms"], out["newconn_p99_ms"] = pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3
    if os.environ.get("BENCH_DEBUG"):
        print(name, [round(x * 1e3, 1) for x in lat], file=sys.stderr)

    rates = []
    for _ in range(max(5, n // 30)):
        t = time.perf_counter()
        body = await client.get(big)
        rates.append(len(body) / (time.perf_counter() - t) / 1e6)
    out["mib_MBps"] = statistics.median(rates)
    if name.startswith("ours"):
        stats = client.c.stats
        out["resumed_new_connections"] = float(client.resumed)
        out["connections"] = stats["connections_h2"] + stats["connections_h3"]
        out["h3_used"] = float(stats["connections_h3"] > 0)
    await client.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "transport.json"))
    ap.add_argument("--clients", default="httpx h1,httpx h2,ours h2,ours h3")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="whole runs, client order rotated each time; the table shows medians",
    )
    args = ap.parse_args()
    n = 100 if args.quick else 400

    root = Path(tempfile.mkdtemp(prefix="bench-transport-"))
    versions = make_versions(2)
    files = {
        "small.txt": b"registry-core says hello\n",
        "blob/1mib.bin": os.urandom(1 << 20),
        "pkg-1.0.whl": versions[0][1],
        "pkg-1.1.whl": versions[1][1],
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    cert, key = make_self_signed(["127.0.0.1", "localhost"], root.parent / root.name)
    # The server runs in its own process (as in production), so client and server do not
    # share one GIL; flags come through the environment, as an operator would set them.
    env = {**os.environ, "REGISTRY_CORE_FLAGS": "QUIC_TRANSPORT=on,DELTA_AGGREGATOR=on"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "registry_core.cli",
            "serve",
            str(root),
            "--port",
            "0",
            "--certfile",
            cert,
            "--keyfile",
            key,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = server.stdout.readline()
    port = int(re.search(r":(\d+)/", line).group(1))
    base = f"https://127.0.0.1:{port}"
    data = {"v0": versions[0][1], "v1": versions[1][1]}
    names = [c.strip() for c in args.clients.split(",")]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        for rep in range(args.repeat):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                runs[name].append(asyncio.run(bench_client(name, cert, base, data, n)))
                print(f"  run {rep + 1}/{args.repeat} {name}: done", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(10)

    cols = [
        ("small_p50_ms", "small p50 ms"),
        ("small_p99_ms", "small p99 ms"),
        ("delta_p50_ms", "delta p50 ms"),
        ("delta_p99_ms", "delta p99 ms"),
        ("inflight32_rps", "32-in-flight req/s"),
        ("newconn_p50_ms", "new conn p50 ms"),
        ("newconn_p99_ms", "new conn p99 ms"),
        ("mib_MBps", "1 MiB MB/s"),
    ]
    results = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    print(f"medians of {args.repeat} runs; load average at the end: {os.getloadavg()}")
    print("| client | " + " | ".join(c[1] for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, r in results.items():
        print(
            f"| {name} | "
            + " | ".join(f"{r[k]:.1f}" if r[k] >= 10 else f"{r[k]:.2f}" for k, _ in cols)
            + " |"
        )
    print("(httpx delta columns: a full download of the same wheel; httpx has no delta fetch)")
    record = {
        "command": "python benchmarks/bench_transport.py"
        + (" --quick" if args.quick else "")
        + (f" --repeat {args.repeat}" if args.repeat != 3 else ""),
        "samples_small": n,
        "wheel_bytes": len(versions[1][1]),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
        },
        "repeat": args.repeat,
        "results_median": results,
        "runs": runs,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
