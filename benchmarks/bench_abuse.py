"""The registry server under bounded attack loads, while a legitimate client fetches deltas.

The server is the real ``registry-core serve`` in its own process on loopback (default
limits, see docs/security.md). The legitimate client is ``registry_core.transport.Transport``
over HTTP/2 from 127.0.0.1, following consecutive releases with ``fetch(new, have=old)`` (226
patches; the server computed them once in a warm-up pass). Attackers run in another process,
from other loopback addresses (127.0.0.2 and up, so that per-IP caps and per-client fairness
see them as other clients), with bounded concurrency; each scenario:

- ``forced_diffs``: GET and HEAD of the newest large wheel naming every stored release's ETag
  with ``A-IM: rcdelta`` (the R8 request that made the server diff every pair);
- ``unread_bodies``: connections that ask for a 32 MiB file and never read (R9);
- ``slow_bodies``: connections that send a request head announcing a body, then nothing (R9);
- ``unique_paths``: a flood of GETs of paths that do not exist (R7);
- ``dictionary_misses``: GETs offering ``Available-Dictionary`` hashes the server does not
  hold (R10);
- ``all``: every attacker above at once.

For each scenario (a fresh server each) the legitimate client's p50/p99 is measured without
attackers, then with them, ``--repeat`` times (default 3; the table shows medians); the goal is
p99 with attackers at most 2x without. The server's RSS is sampled from
/proc during the attack and compared with a budget derived from the configured limits:

    budget = idle RSS + patch cache (64 MiB) + patch workers (2) x 4 x max diff input (32 MiB)
             + attacker connections x 256 KiB

The attacker process runs at ``--attacker-nice`` (default 10): on a small shared machine the
attackers' own client CPU (httpx, TLS) would otherwise starve the server and the legitimate
client and pass for server damage; their CPU time and request counts are reported.

Artifacts: the benchmark corpus when present (boto3 wheels for the legitimate client,
botocore wheels as the forced-diff target; ``make corpus``), else wheels built with zipfile
from this machine's standard library. Everything is bounded (request counts, a time limit per
attacker) and stops by itself. Prints the table and writes ``benchmarks/results/abuse.json``.

    .venv/bin/python benchmarks/bench_abuse.py [--quick] [--repeat N] [--scenarios a,b]
                                               [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import io
import itertools
import json
import os
import platform
import random
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

SCENARIOS = (
    "forced_diffs",
    "unread_bodies",
    "slow_bodies",
    "unique_paths",
    "dictionary_misses",
    "all",
)
ATTACK_TIME_LIMIT = 300.0  # an attacker process ends by itself after this many seconds
MiB = 1 << 20


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


def etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


# -- artifacts ---------------------------------------------------------------------------------


def _stdlib_wheels(n: int, count: int, seed: int) -> list[tuple[str, bytes]]:
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if 1_000 < p.stat().st_size < 200_000)
    rng = random.Random(seed)
    sources = [(p.name, p.read_bytes()) for p in rng.sample(files, min(count, len(files)))]
    out = []
    for i in range(n):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in sources:
                zf.writestr(
                    zipfile.ZipInfo(f"pkg/{name}", (2024, 1, 1, 0, 0, 0)),
                    data,
                    zipfile.ZIP_DEFLATED,
                )
        out.append((f"1.{i}", buf.getvalue()))
        for _ in range(3):
            j = rng.randrange(len(sources))
            sources[j] = (sources[j][0], sources[j][1] + f"\n# {i}\n".encode())
    return out


def build_tree(root: Path, quick: bool) -> dict[str, Any]:
    """Write the served tree; returns what the clients need to know about it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _corpus import series

    by_name = {s.name: s for s in series()}
    legit: list[tuple[str, bytes]]
    bomb: list[tuple[str, bytes]]
    if "boto3-wheel" in by_name and "botocore-wheel" in by_name:
        source = "corpus: boto3 wheels (legitimate), botocore wheels (forced diffs)"
        legit = [(p.name, p.read_bytes()) for p in by_name["boto3-wheel"].paths]
        bomb = [(p.name, p.read_bytes()) for p in by_name["botocore-wheel"].paths]
    else:
        source = "built from the standard library with zipfile (no corpus; make corpus)"
        legit = [(f"legit-{v}-py3-none-any.whl", d) for v, d in _stdlib_wheels(6, 40, 1)]
        bomb = [(f"big-{v}-py3-none-any.whl", d) for v, d in _stdlib_wheels(4, 800, 2)]
    if quick:
        legit = legit[:4]
    paths = {}
    for folder, items in (("legit", legit), ("bomb", bomb)):
        for name, data in items:
            rel = f"simple/{folder}/{name}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
            paths[rel] = data
    big = os.urandom(32 * MiB)
    (root / "files").mkdir()
    (root / "files" / "blob-1.0.bin").write_bytes(big)
    legit_rels = [f"simple/legit/{n}" for n, _ in legit]
    bomb_rels = [f"simple/bomb/{n}" for n, _ in bomb]
    return {
        "source": source,
        "legit": legit_rels,
        "bomb": bomb_rels,
        "bomb_etags": [etag(paths[r]) for r in bomb_rels] + [etag(paths[r]) for r in legit_rels],
        "big": "files/blob-1.0.bin",
        "sizes": {
            "legit_wheel": len(legit[-1][1]),
            "bomb_wheel": len(bomb[-1][1]),
            "big": len(big),
        },
    }


# -- the server --------------------------------------------------------------------------------


class Server:
    """``registry-core serve`` in a subprocess, with an RSS sampler."""

    def __init__(self, root: Path, cache: Path, extra: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_CORE_")}
        env["REGISTRY_CORE_FLAGS"] = "DELTA_AGGREGATOR=on,ZSTD_COMPRESSION=on"
        env["XDG_CACHE_HOME"] = str(cache)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "registry_core.cli",
                "serve",
                str(root),
                "--self-signed",
                "--port",
                "0",
                "--no-http3",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cache,
        )
        line = self.proc.stdout.readline()
        if "serving on" not in line:
            raise SystemExit(f"server did not start: {line}{self.proc.stderr.read()}")
        self.port = int(re.search(r":(\d+)/", line).group(1))
        self.cert = line.rsplit("certificate ", 1)[1].strip()
        self._peak = 0
        self._sampling = threading.Event()
        self._thread: threading.Thread | None = None

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def start_sampling(self) -> None:
        self._peak = self.rss()
        self._sampling.set()

        def run() -> None:
            while self._sampling.is_set():
                with contextlib.suppress(OSError, ValueError):
                    self._peak = max(self._peak, self.rss())
                time.sleep(0.02)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop_sampling(self) -> int:
        self._sampling.clear()
        if self._thread is not None:
            self._thread.join()
        return self._peak

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the legitimate client ---------------------------------------------------------------------


async def legit_run(
    port: int, cert: str, tree: dict[str, Any], data: dict[str, bytes], n: int
) -> dict[str, Any]:
    from registry_core.flags import FeatureFlags
    from registry_core.transport import Transport

    flags = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "ZSTD_COMPRESSION": True})
    rels = tree["legit"]
    pairs = list(itertools.pairwise(rels))
    lat: list[float] = []
    async with Transport(verify=cert, http3=False, flags=flags) as t:
        for i in range(n):
            old, new = pairs[i % len(pairs)]
            t0 = time.perf_counter()
            got = await t.fetch(f"https://127.0.0.1:{port}/{new}", have=data[old])
            lat.append((time.perf_counter() - t0) * 1e3)
            if got != data[new]:
                raise SystemExit(f"{new}: fetched bytes differ")
        stats = dict(t.stats)
    return {
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "n": n,
        "deltas": stats.get("fetch_delta", 0),
        "fulls": stats.get("fetch_full", 0),
    }


# -- attackers (run in their own process: python bench_abuse.py --attack NAME ...) -------------


def _tls(port: int, source: str, rcvbuf: int | None = None) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.socket()
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        raw.bind((source, 0))
        raw.settimeout(10)
        raw.connect(("127.0.0.1", port))
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def _socket_attack(
    port: int,
    sources: list[str],
    per_ip: int,
    request: bytes,
    rcvbuf: int | None,
    stop: threading.Event,
    counts: dict[str, int],
) -> None:
    """Keep ``per_ip`` connections per source address open, each having sent ``request`` and
    then nothing (reading nothing); a connection the server drops is replaced."""
    import select

    held: list[ssl.SSLSocket] = []

    def fill() -> None:
        for ip in sources:
            mine = sum(1 for s in held if s.getsockname()[0] == ip)
            for _ in range(per_ip - mine):
                try:
                    s = _tls(port, ip, rcvbuf)
                    s.sendall(request)
                    held.append(s)
                    counts["opened"] += 1
                except (OSError, ssl.SSLError):
                    counts["refused"] += 1

    while not stop.is_set():
        fill()
        poller = select.poll()
        for s in held:
            poller.register(s, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
        dead = {fd for fd, ev in poller.poll(200)}
        for s in [s for s in held if s.fileno() in dead]:
            held.remove(s)
            s.close()
            counts["dropped_by_server"] += 1
    for s in held:
        s.close()


async def _http_attack(
    port: int,
    cert: str,
    sources: list[str],
    concurrency: int,
    make: Any,
    stop: threading.Event,
    counts: dict[str, int],
) -> None:
    import httpx

    async def worker(client: httpx.AsyncClient, k: int) -> None:
        i = 0
        while not stop.is_set():
            method, path, headers = make(k, i)
            i += 1
            try:
                r = await client.request(
                    method, f"https://127.0.0.1:{port}/{path}", headers=headers
                )
                counts[f"status_{r.status_code}"] += 1
            except httpx.HTTPError as exc:
                counts[type(exc).__name__] += 1

    clients = [
        httpx.AsyncClient(
            http2=True,
            timeout=60,
            transport=httpx.AsyncHTTPTransport(http2=True, verify=cert, local_address=ip),
        )
        for ip in sources
    ]
    try:
        await asyncio.gather(
            *(worker(c, k) for k, c in enumerate(clients) for _ in range(concurrency))
        )
    finally:
        for c in clients:
            await c.aclose()


def attack(name: str, port: int, cert: str, tree: dict[str, Any]) -> None:
    """One attacker process: prints 'ready' once under way, stops on stdin EOF or the limit."""
    import collections

    counts: collections.Counter[str] = collections.Counter()
    stop = threading.Event()
    threading.Timer(ATTACK_TIME_LIMIT, stop.set).start()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    names = SCENARIOS[:-1] if name == "all" else (name,)
    threads: list[threading.Thread] = []
    ip = iter(f"127.0.0.{i}" for i in range(2, 250))
    for what in names:
        if what in ("unread_bodies", "slow_bodies"):
            if what == "unread_bodies":
                req = f"GET /{tree['big']} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
                rcvbuf: int | None = 4096
            else:
                req = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nx"
                rcvbuf = None
            srcs = [next(ip), next(ip)]
            threads.append(
                threading.Thread(
                    target=_socket_attack,
                    args=(port, srcs, 48, req, rcvbuf, stop, counts),
                    daemon=True,
                )
            )
            continue
        srcs = [next(ip) for _ in range(4)]
        if what == "forced_diffs":
            target = tree["bomb"][-1]
            own = tree["bomb_etags"][len(tree["bomb"]) - 1]  # naming it would get a 304
            tags = ", ".join([t for t in tree["bomb_etags"] if t != own][:32])

            def make(k: int, i: int, target: str = target, tags: str = tags) -> Any:
                return (
                    "HEAD" if i % 2 else "GET",
                    target,
                    {"a-im": "rcdelta", "if-none-match": tags},
                )

            conc = 2
        elif what == "unique_paths":

            def make(k: int, i: int) -> Any:
                return "GET", f"nope/{k}/{i}/{random.getrandbits(64):x}", {}

            conc = 8
        else:  # dictionary_misses
            target = tree["legit"][-1]

            def make(k: int, i: int, target: str = target) -> Any:
                h = base64.b64encode(random.randbytes(32)).decode()
                return (
                    "GET",
                    target,
                    {"available-dictionary": f":{h}:", "accept-encoding": "dcz, zstd, gzip"},
                )

            conc = 8

        def run_loop(srcs: list[str] = srcs, make: Any = make, conc: int = conc) -> None:
            asyncio.run(_http_attack(port, cert, srcs, conc, make, stop, counts))

        threads.append(threading.Thread(target=run_loop, daemon=True))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while sum(counts.values()) < 8 and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.05)
    print("ready", flush=True)
    for t in threads:
        t.join()
    print(json.dumps(dict(counts)), flush=True)
    os._exit(0)  # the time-limit Timer thread is not waited for


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (children not included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Attacker:
    def __init__(self, name: str, port: int, cert: str, tree_file: Path, nice: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--attack",
                name,
                "--port",
                str(port),
                "--cert",
                cert,
                "--tree",
                str(tree_file),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"attacker {name} did not start: {line!r}")

    def stop(self) -> dict[str, int]:
        with contextlib.suppress(OSError):
            self.cpu = cpu_seconds(self.proc.pid)
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(60)
        last = out.strip().splitlines()[-1] if out.strip() else "{}"
        return json.loads(last)


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "abuse.json"))
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="without/with pairs per scenario; the table shows medians",
    )
    ap.add_argument("--attack", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    ap.add_argument(
        "--attacker-nice",
        type=int,
        default=10,
        help="niceness of the attacker process (default 10): on a small shared "
        "machine its own client CPU must not pass for server damage; 0 = off",
    )
    ap.add_argument(
        "--max-requests-per-ip",
        type=int,
        default=None,
        help="passed to registry-core serve (default: its default)",
    )
    args = ap.parse_args()
    if args.attack:
        attack(args.attack, args.port, args.cert, json.loads(Path(args.tree).read_text()))
        return
    n = 60 if args.quick else 200
    extra = []
    if args.max_requests_per_ip is not None:
        extra = ["--max-requests-per-ip", str(args.max_requests_per_ip)]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
    work = Path(tempfile.mkdtemp(prefix="bench-abuse-"))
    try:
        root = work / "www"
        tree = build_tree(root, args.quick)
        (work / "cache").mkdir()
        tree_file = work / "tree.json"
        tree_file.write_text(json.dumps(tree))
        data = {rel: (root / rel).read_bytes() for rel in tree["legit"]}
        print(
            f"artifacts: {tree['source']}; legitimate wheel {tree['sizes']['legit_wheel']:,} B, "
            f"forced-diff target {tree['sizes']['bomb_wheel']:,} B, unread file "
            f"{tree['sizes']['big']:,} B",
            file=sys.stderr,
        )
        rows = []
        for name in scenarios:
            # A fresh server per scenario: what one attack leaves behind (allocator high-water
            # marks, cached patches) does not count against the next.
            server = Server(root, work / "cache", extra)
            try:
                warm = asyncio.run(
                    legit_run(server.port, server.cert, tree, data, len(tree["legit"]) - 1)
                )
                idle = server.rss()
                runs = []
                for _ in range(args.repeat):
                    without = asyncio.run(legit_run(server.port, server.cert, tree, data, n))
                    server.start_sampling()
                    attacker = Attacker(
                        name, server.port, server.cert, tree_file, args.attacker_nice
                    )
                    cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
                    try:
                        with_ = asyncio.run(legit_run(server.port, server.cert, tree, data, n))
                    finally:
                        counts = attacker.stop()
                        peak = server.stop_sampling()
                    wall = time.monotonic() - t0
                    cpu = {
                        "wall_s": wall,
                        "server_cpu_s": cpu_seconds(server.proc.pid) - cpu0,
                        "attacker_cpu_s": getattr(attacker, "cpu", float("nan")),
                    }
                    runs.append(
                        {
                            "without": without,
                            "with": with_,
                            "peak_rss": peak,
                            "attacker": counts,
                            "cpu": cpu,
                        }
                    )
                    print(
                        f"  {name}: p99 {without['p99_ms']:.2f} -> {with_['p99_ms']:.2f} ms, "
                        f"peak RSS {peak / MiB:.0f} MiB; attacker {counts}",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                server.stop()
            conns = max(r["attacker"].get("opened", 0) for r in runs)
            conns = min(conns, 1000) if conns else 16  # http attackers: a few connections each
            budget = idle + 64 * MiB + 2 * 4 * 32 * MiB + conns * 256 * 1024

            def med(cond: str, key: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(r[cond][key] for r in runs)

            row = {
                "scenario": name,
                "without": {"p50_ms": med("without", "p50_ms"), "p99_ms": med("without", "p99_ms")},
                "with": {"p50_ms": med("with", "p50_ms"), "p99_ms": med("with", "p99_ms")},
                "server_peak_rss": max(r["peak_rss"] for r in runs),
                "budget": budget,
                "idle_rss": idle,
                "warm_up": warm,
                "runs": runs,
            }
            row["ratio_p99"] = row["with"]["p99_ms"] / row["without"]["p99_ms"]
            rows.append(row)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)

    print(
        f"legitimate client: Transport.fetch(new, have=old) over HTTP/2, {n} fetches per "
        f"run, medians of {args.repeat} without/with pairs per scenario (a fresh server "
        f"each); load average at the end: {os.getloadavg()}"
    )
    print(
        "| scenario | legit p50 ms without / with | legit p99 ms without / with | p99 ratio "
        "| server peak RSS MiB | budget MiB | CPU s server / attacker | attacker requests "
        "| goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ok = r["ratio_p99"] <= 2 and r["server_peak_rss"] <= r["budget"]
        cpu_s = statistics.median(x["cpu"]["server_cpu_s"] for x in r["runs"])
        cpu_a = statistics.median(x["cpu"]["attacker_cpu_s"] for x in r["runs"])
        reqs = statistics.median(
            sum(v for k, v in x["attacker"].items() if k.startswith("status_") or k == "opened")
            for x in r["runs"]
        )
        print(
            f"| {r['scenario']} | {r['without']['p50_ms']:.2f} / {r['with']['p50_ms']:.2f} | "
            f"{r['without']['p99_ms']:.2f} / {r['with']['p99_ms']:.2f} | "
            f"{r['ratio_p99']:.2f}x | {r['server_peak_rss'] / MiB:.0f} | "
            f"{r['budget'] / MiB:.0f} | {cpu_s:.1f} / {cpu_a:.1f} | {reqs:.0f} | "
            f"{'met' if ok else 'MISSED'} |"
        )
    print(
        "(attacker requests: responses received, or connections opened for the socket "
        "attacks; CPU: during the run with attackers)"
    )
    record = {
        "command": " ".join(["python benchmarks/bench_abuse.py", *sys.argv[1:]]),
        "artifacts": tree["source"],
        "sizes": tree["sizes"],
        "fetches_per_run": n,
        "repeat": args.repeat,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
        },
        "budget_formula": "idle RSS + 64 MiB patch cache + 2 workers x 4 x 32 MiB diff input "
        "+ attacker connections x 256 KiB",
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
