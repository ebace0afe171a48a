"""The end-to-end registry update demo: a server on loopback, a client following releases.

``run_demo`` serves successive versions of an artifact from a loopback RegistryApp (HTTP/2 and
HTTP/3 on one port, self-signed certificate), then, for each protocol, has a fresh client
download the first version and follow every update with ``Transport.fetch(have=previous)``
(a 226 patch, a dcz body or the full file, whichever the server offers), verifying each result.
It prints bytes moved against full downloads and the latency percentiles, and returns them.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import re
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["corpus_artifacts", "local_artifacts", "main", "run_demo"]


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


def local_artifacts(n: int = 4, *, seed: int = 7) -> list[tuple[str, bytes]]:
    """``n`` wheel-shaped releases built from this machine's standard-library sources.

    Each release edits a few modules of the previous one, as a real patch release does.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if 2_000 < p.stat().st_size < 80_000)
    rng = random.Random(seed)
    sources = [(p.name, p.read_bytes()) for p in rng.sample(files, min(40, len(files)))]
    out = []
    for i in range(n):
        version = f"1.{i}.0"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in sources:
                zf.writestr(
                    zipfile.ZipInfo(f"demo/{name}", (2024, 1, 1, 0, 0, 0)),
                    data,
                    zipfile.ZIP_DEFLATED,
                )
            zf.writestr(
                f"demo-{version}.dist-info/METADATA",
                f"Metadata-Version: 2.1\nName: demo\nVersion: {version}\n",
            )
        out.append((version, buf.getvalue()))
        for _ in range(4):
            j = rng.randrange(len(sources))
            name, data = sources[j]
            sources[j] = (name, data.replace(b"def ", b"def  ", 1) + f"\n# {version}\n".encode())
    return out


def _natural(path: Path) -> list[Any]:
    """Sort key putting ``pkg-1.10`` after ``pkg-1.9`` (release order for simple versions)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def corpus_artifacts(
    corpus: str | os.PathLike[str] | None = None, *, min_versions: int = 3
) -> list[tuple[str, bytes]] | None:
    """The longest release series of the benchmark corpus cache, or None when absent."""
    root = Path(
        corpus
        or os.environ.get("REGISTRY_CORE_CORPUS")
        or Path.home() / ".cache" / "registry-core" / "corpus"
    )
    if not root.is_dir():
        return None
    best: list[Path] = []
    for series in sorted(p for p in root.iterdir() if p.is_dir()):
        paths = sorted((p for p in series.iterdir() if p.is_file()), key=_natural)
        if len(paths) > len(best):
            best = paths
    if len(best) < min_versions:
        return None
    return [(p.name, p.read_bytes()) for p in best]


def _distinct_releases(
    artifacts_by_version: list[tuple[str, bytes]], filename: str
) -> list[tuple[str, str, bytes]]:
    """``(version, url path, bytes)`` per distinct release, in order.

    A release repeated (the same bytes again, e.g. the same pip found in a venv and in its
    interpreter) is served once; two different artifacts under one file name are refused,
    since one would silently replace the other on disk.
    """
    import hashlib

    by_path: dict[str, bytes] = {}
    out: list[tuple[str, str, bytes]] = []
    for version, data in artifacts_by_version:
        rel = f"packages/{filename.format(version=version)}"
        digest = hashlib.sha256(data).digest()
        if rel in by_path and by_path[rel] != digest:
            raise InvalidArgumentError(
                f"two different artifacts are both named {rel!r}; give each release its "
                "own file name"
            )
        if rel in by_path or digest in by_path.values():
            continue
        by_path[rel] = digest
        out.append((version, rel, data))
    if len(out) < 2:
        raise InvalidArgumentError(f"the demo needs at least two distinct releases, got {len(out)}")
    return out


def run_demo(
    artifacts_by_version: list[tuple[str, bytes]],
    *,
    filename: str = "{version}",
    protocols: tuple[str, ...] = ("h2", "h3"),
    repeats: int = 20,
    out: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Serve the releases and follow them over each protocol; print and return the figures.

    ``filename``: how a version maps to a file name (``"{version}"`` keeps names as given).
    ``repeats``: extra rounds of update fetches (server patches cached) for the percentiles.
    """
    from ..flags import FeatureFlags
    from ..transport import Transport
    from ._app import RegistryApp
    from ._serve import make_self_signed, start_server

    releases = _distinct_releases(artifacts_by_version, filename)
    artifacts_by_version = [(version, data) for version, _, data in releases]
    paths = [rel for _, rel, _ in releases]
    flags = FeatureFlags(overrides={"QUIC_TRANSPORT": True, "DELTA_AGGREGATOR": True})
    workdir = tempfile.TemporaryDirectory(prefix="registry-core-demo-")
    tmp = Path(workdir.name)
    root = tmp / "www"
    for rel, (_, data) in zip(paths, artifacts_by_version, strict=True):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    cert, key = make_self_signed(["127.0.0.1", "localhost"], tmp)
    app = RegistryApp(root, flags=flags)
    try:
        server = start_server(app, certfile=cert, keyfile=key)
    except BaseException:
        workdir.cleanup()
        raise
    base = f"https://127.0.0.1:{server.port}/"
    report: dict[str, Any] = {"versions": [v for v, _ in artifacts_by_version], "protocols": {}}
    out(
        f"registry-core demo: {len(paths)} releases served from {base} "
        f"(TCP h2 + UDP h3 on one port)"
    )

    async def follow(proto: str) -> dict[str, Any]:
        async with Transport(verify=cert, http3=(proto == "h3"), flags=flags) as t:
            steps = []
            have = None
            for (version, data), rel in zip(artifacts_by_version, paths, strict=False):
                wire0 = t.stats["fetch_bytes_wire"]
                t0 = time.perf_counter()
                got = await t.fetch(base + rel, have=have)
                ms = (time.perf_counter() - t0) * 1e3
                if got != data:
                    raise AssertionError(f"{version}: fetched bytes differ from the release")
                steps.append(
                    {
                        "version": version,
                        "full": len(data),
                        "wire": t.stats["fetch_bytes_wire"] - wire0,
                        "ms": ms,
                    }
                )
                have = got
            lat = []
            for _ in range(repeats):
                for i in range(1, len(paths)):
                    t0 = time.perf_counter()
                    await t.fetch(base + paths[i], have=artifacts_by_version[i - 1][1])
                    lat.append((time.perf_counter() - t0) * 1e3)
            version_seen = (await t.get(base + paths[0], headers={"a-im": ""})).http_version
            return {
                "steps": steps,
                "update_ms": lat,
                "http_version": version_seen,
                "stats": dict(t.stats),
            }

    try:
        for proto in protocols:
            res = asyncio.run(follow(proto))
            report["protocols"][proto] = res
            out("")
            out(f"== {res['http_version']} ==")
            out(f"{'release':<40} {'full bytes':>12} {'on the wire':>12} {'ratio':>7} {'ms':>8}")
            for s in res["steps"]:
                out(
                    f"{s['version'][:40]:<40} {s['full']:>12,} {s['wire']:>12,} "
                    f"{s['wire'] / s['full']:>7.3f} {s['ms']:>8.1f}"
                )
            updates = res["steps"][1:]
            full = sum(s["full"] for s in updates)
            wire = sum(s["wire"] for s in updates)
            lat = res["update_ms"]
            out(
                f"updates: {wire:,} bytes moved for {full:,} bytes of releases "
                f"({wire / full:.2%}, {full / max(wire, 1):.1f}x less)"
            )
            out(
                f"update fetch latency over {len(lat)} fetches: p50 {_pct(lat, .5):.2f} ms, "
                f"p99 {_pct(lat, .99):.2f} ms"
            )
            res["summary"] = {
                "update_bytes_full": full,
                "update_bytes_wire": wire,
                "p50_ms": _pct(lat, 0.5),
                "p99_ms": _pct(lat, 0.99),
            }
    finally:
        server.stop()
        workdir.cleanup()
    out("")
    out(f"server: {app.patches_computed} patches computed (cached after the first request)")
    return report


def main() -> None:
    """Demo on the corpus cache when present, else on releases built from local files."""
    artifacts = corpus_artifacts()
    if artifacts is None:
        print("(no corpus cache found: building releases from this machine's Python sources)")
        artifacts = local_artifacts()
    run_demo(artifacts)


if __name__ == "__main__":
    main()
