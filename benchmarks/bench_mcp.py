"""MCP tool-call latency over stdio and streamable HTTP, and the schema size of every tool.

Setup (all real): an index directory holding project ``synth`` with 500 wheels (500 versions,
synthetic but valid: dist-info METADATA/WHEEL/RECORD) and project ``other`` with 2, uploaded
through ``Index.upload``; served by ``registry-core serve DIR --plain-http`` in its own
process. The MCP server is ``registry-core mcp --registry URL`` in its own process, spawned by
the SDK's stdio client, or ``--transport http`` behind its bearer token (the SDK's streamable
HTTP client). The client is the SDK's ``ClientSession``.

Measured: per transport and tool, ``rounds`` rounds of ``calls`` sequential ``tools/call``
after ``warmup`` calls; p50/p99 per round, medians over the rounds (rounds alternate between
the transports, so machine load hits both alike):

- ``project_metadata`` of ``synth`` (its newest version's PEP 658 metadata; 500 files on the
  project page);
- ``plan_upgrade`` of ``synth==0.0.0`` to the newest ``synth`` (which file changes, full bytes
  against delta bytes, which base);
- ``cache_stats``: a call that touches no index, the floor (the SDK's and the transport's own
  cost per call).

Goal (issue 13): p99 under 20 ms for metadata calls. Schema size: the bytes of each tool's
``tools/list`` entry (name, description, annotations, input and output schema) as compact
JSON: what an agent pays in context for the tool.

    .venv/bin/python benchmarks/bench_mcp.py [--quick] [--json PATH]

Writes ``build/bench/mcp.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _mcp_harness import REGISTRY_CORE, http_session, mcp_env, spawn_http, stdio_session

ROOT = Path(__file__).resolve().parents[1]
N_FILES = 500


def synth_wheel(project: str, version: str, kb: int = 4) -> tuple[str, bytes]:
    """A small valid wheel of ``project`` ``version`` (about ``kb`` KiB of module text)."""
    name = f"{project}-{version}-py3-none-any.whl"
    dist = f"{project}-{version}.dist-info"
    meta = (
        f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\nRequires-Python: >=3.8\n"
        f"Summary: a synthetic project for the MCP benchmark\n"
    )
    wheel = "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    body = "".join(f"def f{i}():\n    return {i * 7919 % 10007}\n\n" for i in range(kb * 30))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{project}/__init__.py", f"VERSION = {version!r}\n" + body)
        zf.writestr(f"{dist}/METADATA", meta)
        zf.writestr(f"{dist}/WHEEL", wheel)
        zf.writestr(f"{dist}/RECORD", "")
    return name, buf.getvalue()


def versions(n: int) -> list[str]:
    return [f"0.{i // 100}.{i % 100}" for i in range(n)]


def build_index(directory: Path, n_files: int) -> None:
    """``synth`` with ``n_files`` versions and ``other`` with 2, uploaded through Index."""
    from registry_core.index import Index

    index = Index(directory)
    try:
        token, _ = index.create_token(description="bench")
        for project, vs in (("synth", versions(n_files)), ("other", ["1.0", "1.1"])):
            for v in vs:
                name, data = synth_wheel(project, v)
                index.upload(name, io.BytesIO(data), token=token)
    finally:
        index.close()


class Serve:
    """``registry-core serve DIR --plain-http --port 0 --no-http3`` in its own process."""

    def __init__(self, directory: Path) -> None:
        self.proc = subprocess.Popen(
            [REGISTRY_CORE, "serve", str(directory), "--plain-http", "--port", "0", "--no-http3"],
            env=mcp_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if " on http://" not in line:
            self.stop()
            raise RuntimeError(f"registry-core serve did not start: {line!r}")
        self.url = line.split(" on ", 1)[1].split()[0]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


CALLS: dict[str, dict[str, Any]] = {}  # tool -> arguments, set in main() (newest version known)


async def _round(session: Any, tool: str, calls: int, warmup: int) -> dict[str, float]:
    args = CALLS[tool]
    for _ in range(warmup):
        result = await session.call_tool(tool, args)
        if result.is_error:
            raise RuntimeError(f"{tool}: {result.content}")
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        result = await session.call_tool(tool, args)
        samples.append(time.perf_counter() - t0)
        if result.is_error:
            raise RuntimeError(f"{tool}: {result.content}")
    return {"p50_ms": pct(samples, 0.5) * 1e3, "p99_ms": pct(samples, 0.99) * 1e3}


def schema_sizes(tools: list[Any]) -> dict[str, int]:
    """Compact-JSON bytes of each tool's tools/list entry (what an agent reads)."""
    out = {}
    for t in tools:
        entry = t.model_dump(mode="json", by_alias=True, exclude_none=True)
        out[t.name] = len(json.dumps(entry, separators=(",", ":")).encode())
    return out


async def bench(url: str, rounds: int, calls: int, warmup: int) -> dict[str, Any]:
    token = secrets.token_urlsafe(32)
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        t: {tool: [] for tool in CALLS} for t in ("stdio", "http")
    }
    sizes: dict[str, int] = {}
    with spawn_http(["--registry", url], mcp_env(REGISTRY_CORE_MCP_TOKEN=token)) as served:
        async with (
            stdio_session(["--registry", url]) as stdio,
            http_session(served.url, token) as http,
        ):
            sizes = schema_sizes((await stdio.list_tools()).tools)
            sessions = {"stdio": stdio, "http": http}
            for r in range(rounds):
                order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
                for transport in order:
                    for tool in CALLS:
                        results[transport][tool].append(
                            await _round(sessions[transport], tool, calls, warmup)
                        )
    summary: dict[str, Any] = {}
    for transport, per_tool in results.items():
        for tool, rs in per_tool.items():
            summary[f"{transport}/{tool}"] = {
                "p50_ms": statistics.median(x["p50_ms"] for x in rs),
                "p99_ms": statistics.median(x["p99_ms"] for x in rs),
                "calls": calls,
                "rounds": rs,
            }
    return {"latency": summary, "schema_bytes": sizes}


def report(out: dict[str, Any]) -> str:
    lines = [
        f"MCP tool calls: {out['files']} files of synth on a `registry-core serve` index; "
        f"{out['rounds']} rounds x {out['calls']} calls (medians of the rounds' p50/p99)",
        f"{'transport/tool':32} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for key, v in out["latency"].items():
        lines.append(f"{key:32} {v['p50_ms']:8.2f} {v['p99_ms']:8.2f}")
    worst = max(v["p99_ms"] for k, v in out["latency"].items() if k.endswith("project_metadata"))
    verdict = "met" if worst < 20 else "MISSED"
    lines.append(f"goal: project_metadata p99 < 20 ms over both transports: {verdict}")
    lines.append("")
    lines.append(f"{'tool':20} {'schema bytes':>12}")
    for name, size in sorted(out["schema_bytes"].items(), key=lambda kv: -kv[1]):
        lines.append(f"{name:20} {size:12}")
    lines.append(f"{'total':20} {sum(out['schema_bytes'].values()):12}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    ap.add_argument("--files", type=int, default=N_FILES)
    ap.add_argument("--json", type=Path, default=ROOT / "build" / "bench" / "mcp.json")
    args = ap.parse_args()
    rounds, calls, warmup = (2, 50, 5) if args.quick else (5, 100, 10)
    newest = versions(args.files)[-1]
    CALLS["project_metadata"] = {"project": "synth"}
    CALLS["plan_upgrade"] = {"requirements": ["synth"], "installed": {"synth": "0.0.0"}}
    CALLS["cache_stats"] = {}  # the floor: a call that reads no index (SDK + transport cost)
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        directory = Path(tmp) / "index"
        directory.mkdir()
        t0 = time.perf_counter()
        build_index(directory, args.files)
        built = time.perf_counter() - t0
        serve = Serve(directory)
        try:
            out = asyncio.run(bench(serve.url, rounds, calls, warmup))
        finally:
            serve.stop()
    out.update(
        files=args.files,
        newest=newest,
        rounds=rounds,
        calls=calls,
        warmup=warmup,
        index_build_s=built,
        arguments=CALLS,
        cpus=os.cpu_count(),
    )
    print(report(out))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
