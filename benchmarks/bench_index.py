"""The CI-image scenario: pip installs real corpus releases, then upgrades them step by step.

One run of the scenario: a fresh venv; ``pip install --no-deps`` release N of each chosen
series (boto3, botocore and a native wheel, by default orjson); then one ``pip install
--no-deps --upgrade`` per later release (every series that has a release at that step moves
one release up). pip runs with no configuration and no cache, against:

- ``pypiserver``: a plain local index serving the files (the anchor);
- ``devpi``: devpi-server as a caching proxy (a mirror index) in front of that pypiserver;
- ``ours``: our proxy (registry_core.proxy.ProxyApp) in front of our index server
  (registry_core.index.Index + server.IndexApp) holding the same files, uploaded in release
  order with twine, patches precomputed at upload (waited for before the runs).

"Upstream" is the link from the proxy to the index (for pypiserver alone: the link pip uses).
Every upstream link and every pip link goes through a byte-counting TCP relay
(``_index_anchors.ByteRelay``), so bytes are measured the same way for all three (on the wire,
headers included). Each run starts the proxies (devpi, ours) with an empty cache, and the
anchors' pip steps are interleaved (step i of each anchor, the first one rotating), so a busy
moment on a shared machine lands on all of them alike; the table shows medians over the runs.
CPU is the user+system time of each anchor's server processes over its run (from /proc); the
plain pypiserver and devpi's upstream pypiserver are two processes serving the same files.

Our servers run with their defaults (as ``registry-core serve`` / ``registry-core proxy`` do;
``--files-opt KEY=INT`` passes a RegistryApp keyword to try another bound), each in its own
process (``bench_index.py --child index|proxy``, driven over stdin).

Also: the project page latency of our IndexApp for a synthetic project with 500 files (3 rounds
of 1000 sequential GETs over HTTP/1.1 keep-alive after warm-up, JSON and HTML, medians of the
rounds), and pypiserver's page for the same 500 files as the anchor.

Goals (issue 11): upstream bytes for the updates at most 3% of what pip moves from the plain
index for them; install time through our proxy at most 1.2x the plain local index; index page
p99 under 5 ms for a project with 500 files.

    .venv/bin/python benchmarks/bench_index.py [--quick] [--runs R] [--native SERIES]
                                               [--anchors pypiserver,devpi,ours] [--json PATH]

Needs the corpus (``python benchmarks/fetch_corpus.py``) and devpi-server (bench extra); runs
offline. Writes ``build/bench/index.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _corpus import SERIES, corpus_dir, find_artifact
from _index_anchors import (
    ByteRelay,
    Proc,
    child_call,
    start_child,
    start_devpi,
    start_pypiserver,
)
from registry_core._util._isolated import isolated_client_env

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ("pypiserver", "devpi", "ours")


# ---------------------------------------------------------------------------------------------
# the scenario


def plan(native: list[str], quick: bool) -> list[list[tuple[str, str, Path]]]:
    """Steps of ``(project, version, path)``: step 0 installs release N of every series, step i
    upgrades each series that has an i-th later release."""
    wanted = ["boto3-wheel", "botocore-wheel", *native]
    specs = {s.name: s for s in SERIES}
    chains: list[list[tuple[str, str, Path]]] = []
    for name in wanted:
        if name not in specs:
            raise SystemExit(f"unknown series {name!r}; known: {sorted(specs)}")
        spec = specs[name]
        chain = []
        for v in spec.versions:
            path = find_artifact(spec, v)
            if path is None:
                break  # a gap ends the chain: consecutive releases only
            chain.append((spec.project, v, path))
        if len(chain) < 2:
            raise SystemExit(
                f"corpus series {name} has fewer than 2 consecutive releases in {corpus_dir()}; "
                "run: python benchmarks/fetch_corpus.py"
            )
        chains.append(chain[:3] if quick else chain)
    return [[c[i] for c in chains if i < len(c)] for i in range(max(len(c) for c in chains))]


def clean_env() -> dict[str, str]:
    """pip / twine with no user configuration, no cache, no proxy variables."""
    return isolated_client_env(
        drop=("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"),
        PIP_DEFAULT_TIMEOUT="120",
        NO_PROXY="*",
    )


def installed(venv: Path) -> dict[str, str]:
    """``{normalized project: version}`` from the venv's dist-info directories."""
    site = next((venv / "lib").glob("python*/site-packages"))
    out = {}
    for d in site.glob("*.dist-info"):
        name, version = d.name[: -len(".dist-info")].rsplit("-", 1)
        out[name.lower().replace("_", "-")] = version
    return out


class Scenario:
    """One anchor's run: a fresh venv taken through the steps one :meth:`step` at a time (the
    anchors' steps are interleaved, so a busy moment on the shared machine hits all of them)."""

    def __init__(
        self,
        steps: list[list[tuple[str, str, Path]]],
        index_url: str,
        pip_relay: ByteRelay,
        upstream: ByteRelay,
        servers: list[Proc],
        work: Path,
    ) -> None:
        self.steps, self.index_url = steps, index_url
        self.pip_relay, self.upstream, self.servers = pip_relay, upstream, servers
        self.venv = work / "venv"
        shutil.rmtree(self.venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.venv)], check=True)
        self.env = clean_env()
        self.cpu0 = [p.cpu() for p in servers]
        self.cpu = [0.0 for _ in servers]
        self.out: list[dict[str, Any]] = []

    def step(self, i: int) -> None:
        step = self.steps[i]
        reqs = [f"{project}=={version}" for project, version, _ in step]
        cmd = [sys.executable, "-m", "pip", "--python", str(self.venv / "bin" / "python")]
        cmd += ["install", "--no-deps", "--no-cache-dir", "--index-url", self.index_url, "-q"]
        if i:
            cmd.append("--upgrade")
        up0, pip0 = self.upstream.total, self.pip_relay.total
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + reqs, env=self.env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"pip failed at step {i} ({reqs}):\n{proc.stdout}\n{proc.stderr}")
        have = installed(self.venv)
        for project, version, _ in step:
            got = have.get(project.lower().replace("_", "-").replace(".", "-"))
            if got != version:
                raise RuntimeError(f"step {i}: {project} is {got} in the venv, wanted {version}")
        self.out.append(
            {
                "step": i,
                "requirements": reqs,
                "wall_s": wall,
                "upstream_bytes": self.upstream.total - up0,
                "pip_bytes": self.pip_relay.total - pip0,
                "file_bytes": sum(p.stat().st_size for _, _, p in step),
            }
        )

    def finish(self) -> None:
        """Read the servers' CPU (before they stop): their whole time since the run opened."""
        self.cpu = [p.cpu() - c0 for p, c0 in zip(self.servers, self.cpu0, strict=True)]

    def result(self) -> dict[str, Any]:
        """Totals over the steps and the servers' CPU seconds over the run."""
        out_steps = self.out
        init, updates = out_steps[0], out_steps[1:]
        return {
            "steps": out_steps,
            "initial_wall_s": init["wall_s"],
            "updates_wall_s": sum(s["wall_s"] for s in updates),
            "total_wall_s": sum(s["wall_s"] for s in out_steps),
            "initial_upstream_bytes": init["upstream_bytes"],
            "updates_upstream_bytes": sum(s["upstream_bytes"] for s in updates),
            "initial_pip_bytes": init["pip_bytes"],
            "updates_pip_bytes": sum(s["pip_bytes"] for s in updates),
            "updates_file_bytes": sum(s["file_bytes"] for s in updates),
            "cpu_s": {p.name: c for p, c in zip(self.servers, self.cpu, strict=True)},
        }


# ---------------------------------------------------------------------------------------------
# the anchors


class Bench:
    """The servers shared by the runs: the upstream pypiservers and our index (with relays)."""

    def __init__(self, args: argparse.Namespace, work: Path, steps) -> None:
        self.args, self.work, self.steps = args, work, steps
        self.files_opts = dict(parse_opt(o) for o in args.files_opt)
        self.pypi = self.pypi2 = self.ours_index = None
        self.pypi_relay = self.devpi_up = self.ours_up = None
        self.setup: dict[str, Any] = {}

    def start(self) -> None:
        work, steps = self.work, self.steps
        self.files = work / "files"
        self.files.mkdir()
        for step in steps:
            for _, _, path in step:
                try:
                    os.link(path, self.files / path.name)
                except OSError:  # another file system
                    shutil.copy2(path, self.files / path.name)
        # two pypiservers over the same files: one for pip (a), one as devpi's upstream (b),
        # so each anchor's CPU is its own while their steps interleave
        self.pypi = start_pypiserver(self.files, work / "logs" / "pypiserver.log")
        self.pypi2 = start_pypiserver(self.files, work / "logs" / "pypiserver-upstream.log")
        self.pypi2.name = "pypiserver"
        host = "127.0.0.1"
        self.pypi_relay = ByteRelay(host, int(self.pypi.url.rsplit(":", 1)[1]))  # pip -> (a)
        self.devpi_up = ByteRelay(host, int(self.pypi2.url.rsplit(":", 1)[1]))  # devpi -> (b)

    def close(self) -> None:
        for r in (self.pypi_relay, self.devpi_up, self.ours_up):
            if r is not None:
                r.close()
        for p in (self.pypi, self.pypi2, self.ours_index):
            if p is not None:
                p.stop()

    def open(self, anchor: str, n: int) -> tuple[Scenario, Callable[[], dict[str, Any]]]:
        """Start ``anchor``'s run ``n`` (fresh proxy caches); returns it and its closer, which
        stops the run's own servers and returns extra counters."""
        work = self.work / f"{anchor}-{n}"
        work.mkdir()
        if anchor == "pypiserver":
            url = self.pypi_relay.url + "/simple/"
            sc = Scenario(self.steps, url, self.pypi_relay, self.pypi_relay, [self.pypi], work)
            return sc, dict
        if anchor == "devpi":
            devpi, simple = start_devpi(
                work / "devpi", self.devpi_up.url + "/simple/", work / "devpi.log"
            )
            relay = ByteRelay("127.0.0.1", int(devpi.url.rsplit(":", 1)[1]))
            path = simple.split(devpi.url, 1)[1]
            sc = Scenario(
                self.steps, relay.url + path, relay, self.devpi_up, [devpi, self.pypi2], work
            )

            def close_devpi() -> dict[str, Any]:
                relay.close()
                devpi.stop()
                return {}

            return sc, close_devpi
        if anchor == "ours":
            index, up = self.ours_setup()
            proxy = start_child("proxy", [up.url, str(work / "proxy-cache")], work / "proxy.log")
            relay = ByteRelay("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))
            sc = Scenario(self.steps, relay.url + "/simple/", relay, up, [proxy, index], work)

            def close_ours() -> dict[str, Any]:
                try:
                    return {
                        "index_stats": child_call(index, "stats"),
                        "proxy_stats": child_call(proxy, "stats")["stats"],
                    }
                finally:
                    relay.close()
                    child_stop(proxy)

            return sc, close_ours
        raise ValueError(anchor)

    def ours_setup(self) -> tuple[Proc, ByteRelay]:
        """Our index server with the scenario's files uploaded by twine, release by release."""
        if self.ours_index is not None and self.ours_up is not None:
            return self.ours_index, self.ours_up
        index = start_child(
            "index",
            [str(self.work / "ours-index"), json.dumps(self.files_opts)],
            self.work / "logs" / "index.log",
        )
        self.ours_index = index
        token = index.info["token"]  # type: ignore[attr-defined]
        twine = shutil.which("twine", path=str(Path(sys.executable).parent)) or "twine"
        env = clean_env()
        env.update(TWINE_USERNAME="__token__", TWINE_PASSWORD=token, TWINE_NON_INTERACTIVE="1")
        cpu0 = index.cpu()
        t0 = time.perf_counter()
        for step in self.steps:
            # one twine call per release step, then wait for the patch precompute to go idle:
            # the precompute queue is bounded, so uploads wait for it as a publisher would
            cmd = [twine, "upload", "--repository-url", index.url + "/legacy/"]
            cmd += ["--disable-progress-bar", *[str(p) for _, _, p in step]]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"twine upload failed:\n{proc.stdout}\n{proc.stderr}")
            child_call(index, "idle")
        self.setup = {
            "upload_and_precompute_s": time.perf_counter() - t0,
            "index_cpu_s": index.cpu() - cpu0,
            **child_call(index, "stats"),
        }
        host, port = "127.0.0.1", int(index.url.rsplit(":", 1)[1])
        self.ours_up = ByteRelay(host, port)
        return index, self.ours_up


def child_stop(proc: Proc) -> None:
    with contextlib.suppress(RuntimeError, OSError, ValueError):
        child_call(proc, "quit", timeout_s=30)
    proc.stop()


# ---------------------------------------------------------------------------------------------
# index page latency for a project with many files


def synth_wheel(version: str) -> tuple[str, bytes]:
    """A tiny valid wheel of project ``synth``."""
    name = f"synth-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    dist = f"synth-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: synth\nVersion: {version}\nRequires-Python: >=3.8\n"
    wheel = "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("synth/__init__.py", f"VERSION = {version!r}\n")
        zf.writestr(f"{dist}/METADATA", meta)
        zf.writestr(f"{dist}/WHEEL", wheel)
        zf.writestr(f"{dist}/RECORD", "")
    return name, buf.getvalue()


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def page_latency(url: str, accept: str, gets: int, warmup: int = 100) -> dict[str, float]:
    import httpx

    with httpx.Client(timeout=30) as client:
        size = 0
        for _ in range(warmup):
            r = client.get(url, headers={"Accept": accept})
            r.raise_for_status()
            size = len(r.content)
        samples = []
        for _ in range(gets):
            t0 = time.perf_counter()
            r = client.get(url, headers={"Accept": accept})
            r.content  # noqa: B018 (read the whole body inside the timing)
            samples.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code}")
    return {
        "p50_ms": pct(samples, 0.5) * 1e3,
        "p99_ms": pct(samples, 0.99) * 1e3,
        "bytes": size,
        "gets": gets,
    }


def bench_pages(work: Path, n_files: int, gets: int, repeat: int) -> dict[str, Any]:
    """Page latency: ``repeat`` rounds of ``gets`` GETs per server and media type, rounds
    alternating between them; p50/p99 are the medians over the rounds."""
    synth = work / "synth"
    synth.mkdir()
    for i in range(n_files):
        name, data = synth_wheel(f"0.{i // 100}.{i % 100}")
        (synth / name).write_bytes(data)
    out: dict[str, Any] = {"files": n_files, "repeat": repeat}
    index = start_child("index", [str(work / "synth-index")], work / "logs" / "synth-index.log")
    pypi = start_pypiserver(synth, work / "logs" / "synth-pypiserver.log")
    cases = {
        "ours_json": (index.url + "/simple/synth/", "application/vnd.pypi.simple.v1+json"),
        "ours_html": (index.url + "/simple/synth/", "text/html"),
        "pypiserver_html": (pypi.url + "/simple/synth/", "text/html"),
    }
    rounds: dict[str, list[dict[str, float]]] = {k: [] for k in cases}
    try:
        child_call(index, "load " + str(synth))
        for _ in range(repeat):
            for key, (url, accept) in cases.items():
                # pypiserver is ~30x slower per page: fewer GETs keep the run short
                n = gets if key.startswith("ours") else max(100, gets // 5)
                rounds[key].append(page_latency(url, accept, n))
    finally:
        child_stop(index)
        pypi.stop()
    for key, rs in rounds.items():
        out[key] = {
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "bytes": rs[0]["bytes"],
            "gets": rs[0]["gets"],
            "rounds": rs,
        }
    return out


# ---------------------------------------------------------------------------------------------
# our servers, in a child process (bench_index.py --child index|proxy ...)


def child_main(role: str, args: list[str]) -> None:
    """Serve one of our apps on loopback; one JSON line per command read from stdin."""
    import asyncio  # noqa: F401 (imported here so the parent stays light)

    from registry_core.server import start_server

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    index = app = files = None
    if role == "index":
        from registry_core.index import Index
        from registry_core.server import IndexApp, RegistryApp

        root = Path(args[0])
        root.mkdir(parents=True, exist_ok=True)
        index = Index(root)
        opts = json.loads(args[1]) if len(args) > 1 else {}
        files = RegistryApp(index.storage, **opts)
        app = IndexApp(index, files=files)
        raw, _ = index.create_token(description="bench upload")
        handle = start_server(app, tls=False)
        reply({"url": handle.url().rstrip("/"), "token": raw})
    elif role == "proxy":
        from registry_core.proxy import ProxyApp

        upstream, cache = args
        app = ProxyApp(upstream, cache)
        handle = start_server(app, tls=False)
        reply({"url": handle.url().rstrip("/")})
    else:
        raise SystemExit(f"unknown child role {role!r}")

    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        try:
            if cmd == "quit":
                reply({"ok": True})
                break
            if cmd == "idle":
                assert files is not None
                if not files.precompute_idle(timeout=600):
                    raise TimeoutError("the patch precompute did not go idle in 600 s")
                reply({"ok": True})
            elif cmd == "stats" and files is None:
                st = getattr(app, "stats", None)
                reply({"stats": _plain(st)})
            elif cmd == "stats":
                st = files.stats
                counts = {
                    k: getattr(st, k, None)
                    for k in (
                        "precomputed",
                        "precompute_skipped",
                        "precompute_dropped",
                        "patches_served",
                        "patches_from_store",
                        "patch_busy",
                        "patch_timeouts",
                    )
                }
                counts["patch_refusals"] = dict(getattr(st, "patch_refusals", {}))
                patches = Path(args[0]) / ".registry-core" / "patches"
                found = [p for p in patches.rglob("*") if p.is_file()] if patches.is_dir() else []
                counts["patch_store_bytes"] = sum(p.stat().st_size for p in found)
                reply(counts)
            elif cmd == "load":
                assert index is not None
                token, _ = index.create_token(description="bench load")
                for path in sorted(Path(arg).iterdir()):
                    with open(path, "rb") as f:
                        index.upload(path.name, f, token=token)
                reply({"ok": True})
            else:
                reply({"error": f"unknown command {cmd!r}"})
        except Exception as exc:  # the parent shows it with the log tail
            reply({"error": f"{type(exc).__name__}: {exc}"})
    handle.stop()


def _plain(obj: Any) -> Any:
    """A JSON-able view of a stats object (dataclass, mapping or anything with __dict__)."""
    import dataclasses

    if obj is None or isinstance(obj, (int, float, str, bool)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif callable(getattr(obj, "as_dict", None)):
        obj = obj.as_dict()
    elif not isinstance(obj, dict) and hasattr(obj, "__dict__"):
        obj = vars(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return repr(obj)


# ---------------------------------------------------------------------------------------------
# report


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Medians over the runs; ``x_plain``: the median of the per-run ratios to pypiserver's
    time in the same run (the runs interleave, so each run's ratio is a paired comparison)."""
    out = {}
    plain = runs.get("pypiserver") or []
    for anchor, rs in runs.items():
        if not rs:
            continue
        med = {
            k: statistics.median(r[k] for r in rs)
            for k in (
                "initial_wall_s",
                "updates_wall_s",
                "total_wall_s",
                "initial_upstream_bytes",
                "updates_upstream_bytes",
                "initial_pip_bytes",
                "updates_pip_bytes",
                "updates_file_bytes",
            )
        }
        med["total_wall_s_min"] = min(r["total_wall_s"] for r in rs)
        med["total_wall_s_max"] = max(r["total_wall_s"] for r in rs)
        if len(plain) == len(rs):
            med["x_plain_runs"] = [
                r["total_wall_s"] / p["total_wall_s"] for r, p in zip(rs, plain, strict=True)
            ]
            med["x_plain"] = statistics.median(med["x_plain_runs"])
        med["updates_upstream_bytes_per_step"] = [s["upstream_bytes"] for s in rs[0]["steps"][1:]]
        names = rs[0]["cpu_s"].keys()
        med["cpu_s"] = {n: statistics.median(r["cpu_s"][n] for r in rs) for n in names}
        out[anchor] = med
    return out


def report(
    summary: dict, pages: dict | None, steps, runs: int, setup: dict | None = None
) -> list[str]:
    lines = []
    plain = summary.get("pypiserver")
    chain = {}
    for step in steps:
        for project, version, _ in step:
            chain.setdefault(project, []).append(version)
    lines.append(
        "scenario: "
        + "; ".join(f"{p} {v[0]} -> {v[-1]} ({len(v) - 1} updates)" for p, v in chain.items())
        + f"; {len(steps) - 1} upgrade steps; medians of {runs} run(s)"
    )
    head = (
        f"{'anchor':<11} {'up initial':>11} {'up updates':>11} {'% plain':>8} "
        f"{'pip updates':>11} {'install s':>9} {'(min-max)':>11} {'updates s':>9} {'x plain':>7} "
        f"{'proxy CPU s':>11} {'index CPU s':>11}"
    )
    lines += [head, "-" * len(head)]
    for anchor in ANCHORS:
        s = summary.get(anchor)
        if s is None:
            continue
        pctv = (
            f"{100 * s['updates_upstream_bytes'] / plain['updates_pip_bytes']:.1f}%"
            if plain
            else "-"
        )
        ratio = f"{s['x_plain']:.2f}" if "x_plain" in s else "-"
        cpu = list(s["cpu_s"].values())
        proxy_cpu = f"{cpu[0]:.2f}" if anchor != "pypiserver" else "-"
        index_cpu = f"{cpu[-1]:.2f}"
        lines.append(
            f"{anchor:<11} {mb(s['initial_upstream_bytes']):>11} "
            f"{mb(s['updates_upstream_bytes']):>11} {pctv:>8} {mb(s['updates_pip_bytes']):>11} "
            f"{s['total_wall_s']:>9.2f} "
            f"{s['total_wall_s_min']:>5.1f}-{s['total_wall_s_max']:<5.1f} "
            f"{s['updates_wall_s']:>9.2f} {ratio:>7} "
            f"{proxy_cpu:>11} {index_cpu:>11}"
        )
    lines.append(
        "up = bytes over the upstream link (proxy -> index; for pypiserver alone: pip's link), "
        "both directions, headers included; % plain = up updates / pip updates of pypiserver; "
        "install s = pip wall time summed over the steps (median of runs); CPU = the server "
        "processes' user+system time over a run"
    )
    ours = summary.get("ours")
    if ours:
        per = ours["updates_upstream_bytes_per_step"]
        lines.append(
            "ours upstream bytes per update step (run 1): "
            + ", ".join(mb(b) for b in per)
            + f" (files moved: {', '.join(mb(s['file_bytes']) for s in steps_bytes(steps)[1:])})"
        )
    if setup:
        lines.append(
            f"ours setup (not in the table): twine uploads in release order + patch precompute "
            f"{setup.get('upload_and_precompute_s', 0):.1f} s wall, index CPU "
            f"{setup.get('index_cpu_s', 0):.2f} s, {setup.get('precomputed')} patches "
            f"({mb(setup.get('patch_store_bytes') or 0)} stored), "
            f"{setup.get('precompute_dropped')} dropped"
        )
    if pages:
        lines.append("")
        lines.append(
            f"project page, {pages['files']} files, sequential GETs over HTTP/1.1 keep-alive "
            f"(httpx), medians of {pages['repeat']} round(s):"
        )
        for key in ("ours_json", "ours_html", "pypiserver_html"):
            if key in pages:
                p = pages[key]
                lines.append(
                    f"  {key:<16} p50 {p['p50_ms']:6.2f} ms  p99 {p['p99_ms']:6.2f} ms  "
                    f"({mb(p['bytes'])}, {p['gets']} GETs a round)"
                )
    lines.append("")
    lines += goals(summary, pages)
    return lines


def steps_bytes(steps: list[list[tuple[str, str, Path]]]) -> list[dict[str, int]]:
    return [{"file_bytes": sum(p.stat().st_size for _, _, p in step)} for step in steps]


def goals(summary: dict, pages: dict | None) -> list[str]:
    out = []
    plain, ours = summary.get("pypiserver"), summary.get("ours")
    if plain and ours:
        share = ours["updates_upstream_bytes"] / plain["updates_pip_bytes"]
        out.append(
            f"goal upstream bytes for updates <= 3% of plain index: {100 * share:.2f}% "
            f"({mb(ours['updates_upstream_bytes'])} vs {mb(plain['updates_pip_bytes'])}) "
            + ("MET" if share <= 0.03 else "MISSED")
        )
        ratio = ours.get("x_plain", ours["total_wall_s"] / plain["total_wall_s"])
        runs_x = ", ".join(f"{x:.3f}" for x in ours.get("x_plain_runs", []))
        out.append(
            f"goal install time <= 1.2x plain index: {ratio:.3f}x (median of the paired runs' "
            f"ratios {runs_x}; medians {ours['total_wall_s']:.2f} s vs "
            f"{plain['total_wall_s']:.2f} s) " + ("MET" if ratio <= 1.2 else "MISSED")
        )
    else:
        out.append("goals on bytes and time: not measured (needs the pypiserver and ours rows)")
    if pages and "ours_json" in pages:
        worst = max(pages["ours_json"]["p99_ms"], pages["ours_html"]["p99_ms"])
        out.append(
            f"goal index page p99 < 5 ms ({pages['files']} files): {worst:.2f} ms (worse of "
            "JSON/HTML) " + ("MET" if worst < 5 else "MISSED")
        )
    return out


def parse_opt(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise SystemExit(f"--files-opt wants KEY=INT, got {text!r}")
    return key, int(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 releases per series, 1 run, 300 GETs")
    ap.add_argument("--runs", type=int, default=None, help="scenario runs per anchor (default 3)")
    ap.add_argument(
        "--native",
        default="orjson-wheel",
        help="comma-separated native wheel series (default orjson-wheel)",
    )
    ap.add_argument("--anchors", default=",".join(ANCHORS))
    ap.add_argument("--page-files", type=int, default=500)
    ap.add_argument("--page-gets", type=int, default=None, help="default 1000 (--quick 300)")
    ap.add_argument("--no-pages", action="store_true")
    ap.add_argument("--json", default=str(ROOT / "build" / "bench" / "index.json"))
    ap.add_argument(
        "--files-opt",
        action="append",
        default=[],
        metavar="KEY=INT",
        help="a RegistryApp keyword for our index server, e.g. max_expanded_bytes=134217728",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main(args.child[0], args.child[1:])
    runs = args.runs or (1 if args.quick else 3)
    gets = args.page_gets or (300 if args.quick else 1000)
    anchors = [a for a in args.anchors.split(",") if a]
    unknown = set(anchors) - set(ANCHORS)
    if unknown:
        raise SystemExit(f"unknown anchors {sorted(unknown)}; known: {list(ANCHORS)}")
    steps = plan([s for s in args.native.split(",") if s], args.quick)

    files_opts = dict(parse_opt(o) for o in args.files_opt)
    load0 = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    results: dict[str, list[dict[str, Any]]] = {a: [] for a in anchors}
    bench = Bench(args, work, steps)
    pages = None
    try:
        bench.start()
        for n in range(runs):
            print(f"run {n + 1}/{runs}: {', '.join(anchors)}, steps interleaved ...", flush=True)
            opened = {a: bench.open(a, n) for a in anchors}
            try:
                for i in range(len(steps)):
                    k = (n + i) % len(anchors)  # rotate who goes first
                    for anchor in anchors[k:] + anchors[:k]:
                        opened[anchor][0].step(i)
            finally:
                for sc, _ in opened.values():
                    with contextlib.suppress(OSError):  # a server that died: the error is above
                        sc.finish()
                extras = {a: closer() for a, (_, closer) in opened.items()}
            for anchor in anchors:
                r = {**opened[anchor][0].result(), **extras[anchor]}
                results[anchor].append(r)
                print(
                    f"  {anchor}: {r['total_wall_s']:.2f} s, upstream "
                    f"{mb(r['initial_upstream_bytes'])} + {mb(r['updates_upstream_bytes'])}",
                    flush=True,
                )
        if not args.no_pages and "ours" in anchors:
            print(f"index pages: {args.page_files} files, {gets} GETs ...", flush=True)
            pages = bench_pages(work, args.page_files, gets, 1 if args.quick else 3)
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")
    summary = summarize(results)
    lines = report(summary, pages, steps, runs, bench.setup)
    print()
    print("\n".join(lines))
    doc = {
        "bench": "index",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg(),
        },
        "files_opts": files_opts,
        "steps": [[f"{p}=={v}" for p, v, _ in s] for s in steps],
        "runs": results,
        "summary": summary,
        "ours_setup": bench.setup,
        "pages": pages,
        "report": lines,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
