"""Scale-out on loopback: requests per second and p99 for index pages, full downloads and delta
fetches, on 1 and 2 instances, the embedded setup (SQLite + a directory) against the shared one
(PostgreSQL + S3 (moto) + Redis, behind haproxy for 2); the cost of tracing; the audit log's
append and proof latency at 1 M entries (benchmarks/bench_audit.py).

Every server is a real ``registry-core serve --config FILE`` process; PostgreSQL, moto's S3,
redis-server and haproxy are started the way the tests start them (tests/_postgres.py,
tests/_moto.py, tests/_redis.py, tests/_haproxy.py). The load comes from ``--clients`` client
processes with ``--threads`` httpx threads each, ``--seconds`` per mix, every answer checked
by SHA-256 (a wrong byte aborts the run). Goals (issue 15) are printed met / missed.

    .venv/bin/python benchmarks/bench_scale.py [--seconds 5] [--clients 2] [--threads 4]
        [--audit-entries 1000000] [--quick] [--out /tmp/rc/bench_scale.txt]

Caveat: everything (servers, databases, S3, Redis, balancer, clients) shares this machine's
cores, so the 2-instance figure measures contention as much as scale-out; the note says so.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

JSON = "application/vnd.pypi.simple.v1+json"
VERSIONS = ("1.0", "1.1", "1.2", "1.3")
MIXES = ("page", "full", "delta")


def _wheel(version: str, kb: int = 256) -> bytes:
    """A stored wheel whose versions differ a little (small deltas, as between releases)."""
    rng = random.Random("bench-scale")
    lines, n = [], 0
    while n < kb * 1024:
        line = f"LINE_{len(lines)} = {rng.random()!r}\n"
        lines.append(line)
        n += len(line)
    changed = "".join(f"V_{j} = {random.Random(version + str(j)).random()!r}\n" for j in range(8))
    buf = io.BytesIO()
    members = {
        "bench_pkg/__init__.py": "".join(lines) + changed,
        f"bench_pkg-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: bench-pkg\nVersion: {version}\n"
        ),
        f"bench_pkg-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
    }
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, text in members.items():  # fixed timestamps: the same bytes in every process
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), text)
    return buf.getvalue()


BASE_CONFIG = """\
version = 2

[server]
host = "127.0.0.1"
port = {port}
tls = "plain-http"
http3 = false
drain_timeout_s = 5

[storage]
directory = "{state}"
{storage}
{shared}
[telemetry]
metrics = true
{tracing}
[audit]
enabled = false

[flags]
DELTA_AGGREGATOR = true
DELTA_STABLE = true

[rate_limits.plans.bench]
rate = 100000
burst = 1000000
upload_rate = 1000
upload_burst = 1000

[tenants.acme]
public = true
plan = "bench"

[tenants.acme.roles]
"user:bench" = ["owner@*"]
"""


class Serve:
    """One ``registry-core serve --config`` process."""

    def __init__(self, config: Path, port: int, env: dict[str, str], log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "registry_core.cli", "serve", "--config", str(config)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "serving on" in line:
                break
        else:
            raise RuntimeError(f"serve did not start: {log.read_text()[-2000:]}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the load (in client processes) ------------------------------------------------------------


def _client(args: tuple[str, str, dict[str, Any], float, int, int]) -> dict[str, Any]:
    url, mix, files, seconds, threads, seed = args
    import httpx

    from registry_core.delta import DeltaAggregator
    from registry_core.wire import etag_for

    blobs = {v: _wheel(v) for v in VERSIONS}
    apply = DeltaAggregator().apply
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run(i: int) -> None:
        rng = random.Random(seed * 100 + i)
        mine: list[float] = []
        with httpx.Client(base_url=url, timeout=30) as c:
            while time.monotonic() < stop_at:
                v = rng.choice(VERSIONS[1:])
                t = time.perf_counter()
                if mix == "page":
                    r = c.get("/t/acme/main/simple/bench-pkg/", headers={"accept": JSON})
                    ok = r.status_code == 200 and len(r.json()["files"]) == len(VERSIONS)
                elif mix == "full":
                    r = c.get(files[v])
                    ok = r.status_code == 200 and hashlib.sha256(r.content).digest() == (
                        hashlib.sha256(blobs[v]).digest()
                    )
                else:
                    base = VERSIONS[VERSIONS.index(v) - 1]
                    r = c.get(
                        files[v],
                        headers={"if-none-match": etag_for(blobs[base]), "a-im": "rcdelta"},
                    )
                    body = apply(blobs[base], r.content) if r.status_code == 226 else r.content
                    ok = r.status_code in (200, 226) and body == blobs[v]
                mine.append(time.perf_counter() - t)
                if not ok:
                    with lock:
                        errors.append(f"{mix} {v}: {r.status_code}")
        with lock:
            latencies.extend(mine)

    def guarded(i: int) -> None:
        try:
            run(i)
        except Exception as exc:  # a failed request is a result, never a silent thread death
            with lock:
                errors.append(f"{mix}: {exc!r}")

    workers = [threading.Thread(target=guarded, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"latencies": latencies, "errors": errors}


def measure(url: str, files: dict[str, str], opts: argparse.Namespace) -> dict[str, Any]:
    """rps and p99 of each mix through ``url``."""
    out = {}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(opts.clients) as pool:
        for mix in MIXES:
            pool.map(_client, [(url, mix, files, 0.5, opts.threads, 99)] * opts.clients)  # warm
            t = time.monotonic()
            parts = pool.map(
                _client,
                [(url, mix, files, opts.seconds, opts.threads, s) for s in range(opts.clients)],
            )
            elapsed = time.monotonic() - t
            lat = sorted(x for p in parts for x in p["latencies"])
            if not lat:
                raise AssertionError(f"{mix}: no request finished in {opts.seconds} s")
            errors = [e for p in parts for e in p["errors"]]
            if errors:
                raise AssertionError(f"{mix}: {len(errors)} bad answers, e.g. {errors[:3]}")
            out[mix] = {
                "rps": len(lat) / elapsed,
                "p50_ms": statistics.median(lat) * 1e3,
                "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3,
                "n": len(lat),
            }
    return out


# -- setups ------------------------------------------------------------------------------------


def _upload(url: str, token: str) -> dict[str, str]:
    import httpx

    with httpx.Client(base_url=url, timeout=60) as c:
        for v in VERSIONS:
            blob = _wheel(v)
            r = c.post(
                "/t/acme/main/legacy/",
                auth=("__token__", token),
                data={
                    ":action": "file_upload",
                    "protocol_version": "1",
                    "sha256_digest": hashlib.sha256(blob).hexdigest(),
                },
                files={"content": (f"bench_pkg-{v}-py3-none-any.whl", blob)},
            )
            assert r.status_code == 200, (r.status_code, r.text[:200])
        page = c.get("/t/acme/main/simple/bench-pkg/", headers={"accept": JSON})
        files = {}
        for f in page.json()["files"]:
            v = f["filename"].split("-")[1]
            files[v] = str(page.url.join(f["url"]).copy_with(fragment=None))
        return files


def run_setup(
    name: str,
    work: Path,
    opts: argparse.Namespace,
    *,
    shared: bool,
    instances: int,
    tracing: str = "",
) -> dict[str, Any]:
    from _haproxy import HAProxy, free_port
    from registry_core.auth import Scope, TenantStore

    d = work / name.replace(" ", "_").replace("+", "_")
    d.mkdir()
    env = {**os.environ}
    env.pop("REGISTRY_CORE_FLAGS", None)
    stop: list[Any] = []
    try:
        if shared:
            import _postgres
            from _moto import MotoServer
            from _redis import RedisServer

            pg = _postgres.shared_server()
            dsn = pg.create_database("bench")
            moto = MotoServer(d)
            stop.append(moto)
            redis_server = RedisServer(d)
            stop.append(redis_server)
            bucket = moto.bucket()
            env.update(moto.env())
            env["RC_BENCH_DSN"] = dsn
            storage = (
                f'backend = "s3"\nbucket = "{bucket}"\nendpoint_url = "{moto.endpoint_url}"\n'
                'region = "us-east-1"\n'
            )
            shared_text = (
                '[database]\nbackend = "postgresql"\nurl_env = "RC_BENCH_DSN"\n\n'
                f'[cache]\nbackend = "redis"\nredis_url = "{redis_server.url}"\n'
            )
            store = TenantStore(dsn, tenant="acme")
        else:
            storage = shared_text = ""
            (d / "state-0" / "acme" / ".registry-core").mkdir(parents=True)
            store = TenantStore(
                d / "state-0" / "acme" / ".registry-core" / "tenant.sqlite3", tenant="acme"
            )
        token, _ = store.create_token(
            owner="user:bench", scopes=[Scope.parse("acme", "read,upload,create:*")]
        )
        store.close()
        servers = []
        for i in range(instances):
            port = free_port()
            config = d / f"i{i}.toml"
            config.write_text(
                BASE_CONFIG.format(
                    port=port,
                    state=d / f"state-{i}",
                    storage=storage,
                    shared=shared_text,
                    tracing=tracing,
                )
            )
            s = Serve(config, port, env, d / f"i{i}.stderr")
            stop.append(s)
            servers.append(s)
        url = servers[0].url
        if instances > 1:
            proxy = HAProxy(d, {f"s{i}": s.port for i, s in enumerate(servers)})
            stop.append(proxy)
            for i in range(instances):
                proxy.wait_state(f"s{i}", "UP")
            url = proxy.url
        files = _upload(url, token)
        return measure(url, files, opts)
    finally:
        for thing in reversed(stop):
            with contextlib.suppress(Exception):
                thing.stop()


def run_audit(entries: int) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("bench_audit", HERE / "bench_audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run(entries, 2000, False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--audit-entries", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="2 s per mix, 100,000 audit entries")
    ap.add_argument("--skip-audit", action="store_true")
    ap.add_argument("--out", default="/tmp/rc/bench_scale.txt")
    opts = ap.parse_args()
    if opts.quick:
        opts.seconds, opts.audit_entries = 2.0, 100_000
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(
        f"bench_scale: {opts.clients} client processes x {opts.threads} threads, "
        f"{opts.seconds:g} s per mix, {os.cpu_count()} CPUs shared by everything"
    )
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rc-bench-scale-") as tmp:
        work = Path(tmp)
        dead = f'otlp_endpoint = "http://127.0.0.1:{_closed_port()}"\nallow_http = true\n'
        setups = [
            ("sqlite+dir x1", {"shared": False, "instances": 1}),
            ("sqlite+dir x1 tracing", {"shared": False, "instances": 1, "tracing": dead}),
            ("pg+s3+redis x1", {"shared": True, "instances": 1}),
            ("pg+s3+redis x2 haproxy", {"shared": True, "instances": 2}),
        ]
        for name, kw in setups:
            say(f"-- {name}")
            results[name] = run_setup(name, work, opts, **kw)
            for mix, r in results[name].items():
                say(
                    f"   {mix:6} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                    f"p99 {r['p99_ms']:7.2f} ms  ({r['n']} requests)"
                )
    say("")
    say(f"{'setup':26} " + "  ".join(f"{m + ' rps':>10} {m + ' p99':>10}" for m in MIXES))
    for name, r in results.items():
        say(
            f"{name:26} " + "  ".join(f"{r[m]['rps']:10.0f} {r[m]['p99_ms']:8.2f}ms" for m in MIXES)
        )
    goals: list[tuple[str, bool, str]] = []
    plain, traced = results["sqlite+dir x1"], results["sqlite+dir x1 tracing"]
    cost = max(1 - traced[m]["rps"] / plain[m]["rps"] for m in MIXES)
    goals.append(
        (
            "tracing costs under 5% of throughput",
            cost < 0.05,
            f"worst mix {cost:+.1%} (exporting to a closed port: spans made, exports fail)",
        )
    )
    one, two = results["pg+s3+redis x1"], results["pg+s3+redis x2 haproxy"]
    ratio = two["delta"]["rps"] / one["delta"]["rps"]
    goals.append(
        (
            "2 instances serve >= 1.6x one on the delta mix",
            ratio >= 1.6,
            f"{ratio:.2f}x (both instances, PG, S3, Redis, haproxy and the clients on "
            f"{os.cpu_count()} CPUs)",
        )
    )
    if not opts.skip_audit:
        say("")
        say(f"-- audit log at {opts.audit_entries:,} entries (bench_audit.run)")
        audit = run_audit(opts.audit_entries)
        append_us = audit["append_us_amortized"]
        incl, cons = audit["inclusion_us"]["p99"], audit["consistency_us"]["p99"]
        say(
            f"   append {append_us:.1f} us amortized; inclusion p99 {incl:.0f} us; "
            f"consistency p99 {cons:.0f} us; checkpoint {audit['checkpoint_ms']:.1f} ms"
        )
        goals.append(
            (
                f"audit append under 0.1 ms amortized at {opts.audit_entries:,}",
                append_us < 100,
                f"{append_us:.1f} us",
            )
        )
        goals.append(
            (
                f"audit proofs under 1 ms at {opts.audit_entries:,}",
                incl < 1000 and cons < 1000,
                f"inclusion p99 {incl:.0f} us, consistency p99 {cons:.0f} us",
            )
        )
    say("")
    say("goals:")
    for text, met, detail in goals:
        say(f"  [{'met' if met else 'MISSED'}] {text}: {detail}")
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text("\n".join(lines) + "\n")
    print(f"saved to {opts.out}")
    return 0


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
