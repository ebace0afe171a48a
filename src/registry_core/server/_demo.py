"""The end-to-end registry demos: a server on loopback, clients following releases.

``run_demo`` serves successive versions of an artifact from a loopback RegistryApp (HTTP/2 and
HTTP/3 on one port, self-signed certificate), then, for each protocol, has a fresh client
download the first version and follow every update with ``Transport.fetch(have=previous)``
(a 226 patch, a dcz body or the full file, whichever the server offers), verifying each result.
It prints bytes moved against full downloads and the latency percentiles, and returns them.

``run_tenants_demo`` is the multi-tenant server: two tenants from one schema-v2 configuration
(acme: alice owner, bob reader; globex: carol owner), alice's upload over the upload API, bob's
refused (403), bob installing with pip, and alice's token on globex answered with the uniform
404 an unknown tenant gets.

``run_pip_upgrade_demo`` is the package-index path with a real client: two releases of a small
project built with setuptools, an ``Index`` served by ``IndexApp``, the pull-through
``ProxyApp`` in front of it, and pip installing release 1 then upgrading to release 2 through
the proxy; it prints the bytes the proxy pulled from the index against the wheel's size.
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

__all__ = [
    "corpus_artifacts",
    "local_artifacts",
    "main",
    "run_demo",
    "run_pip_upgrade_demo",
    "run_signed_update_demo",
    "run_tenants_demo",
]


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


DEMO_PROJECT = "rc-demo-app"


def _demo_sources(version: str, *, source_kb: int, data_kb: int) -> tuple[str, bytes]:
    """The project's module source and its data file for ``version``: the same base from
    release to release with a few functions and a few 4 KiB blocks of data changed, as a
    patch release changes code and a bundled table."""
    base = random.Random(DEMO_PROJECT)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta", "zeta"]
    lines = [f'"""{DEMO_PROJECT}: generated for the registry-core demo."""\n']
    lines.append(f"VERSION = {version!r}\n\n")
    size = 0
    i = 0
    while size < source_kb << 10:
        line = f"def f{i}(x):\n    return {' '.join(base.choices(words, k=8))!r} + str(x)\n\n"
        lines.append(line)
        size += len(line)
        i += 1
    changed = random.Random(f"{DEMO_PROJECT}-{version}")
    for j in range(8):
        lines.append(f"def changed{j}():\n    return {changed.random()!r}\n\n")
    data = bytearray(base.randbytes(data_kb << 10))
    for _ in range(4):
        at = changed.randrange(0, max(1, len(data) - 4096))
        data[at : at + 4096] = changed.randbytes(4096)
    return "".join(lines), bytes(data)


def build_demo_wheel(
    root: Path, version: str, *, source_kb: int = 1024, data_kb: int = 1024
) -> Path:
    """Build the demo project's wheel for ``version`` under ``root`` with setuptools' PEP 517
    backend in a subprocess (what pip and ``build`` run), offline; returns its path."""
    import textwrap

    module = DEMO_PROJECT.replace("-", "_")
    src = root / f"src-{version}"
    (src / module).mkdir(parents=True)
    code, data = _demo_sources(version, source_kb=source_kb, data_kb=data_kb)
    (src / module / "__init__.py").write_text(code)
    (src / module / "table.bin").write_bytes(data)
    (src / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{DEMO_PROJECT}"
            version = "{version}"
            description = "registry-core demo package"
            requires-python = ">=3.8"

            [tool.setuptools]
            packages = ["{module}"]

            [tool.setuptools.package-data]
            {module} = ["table.bin"]
            """
        )
    )
    from .._util._isolated import build_with_setuptools

    return build_with_setuptools(src, root / "dist")


def _pip(args: list[str], cwd: Path) -> None:
    """Run this interpreter's pip with no user or site configuration (only the URL given)."""
    import subprocess
    import sys

    from .._util._isolated import isolated_client_env

    env = isolated_client_env()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InvalidArgumentError(f"pip {args[0]} failed: {tail}")


def run_pip_upgrade_demo(
    *,
    versions: tuple[str, str] = ("1.0.0", "1.1.0"),
    source_kb: int = 1024,
    data_kb: int = 1024,
    out: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """pip installs release 1, then upgrades to release 2, through the proxy in front of an
    index on loopback; prints and returns what the proxy pulled from the index each time."""
    from ..flags import FeatureFlags
    from ..index import Index
    from ..proxy import ProxyApp
    from ._app import RegistryApp
    from ._index_app import IndexApp
    from ._serve import start_server

    flags = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "QUIC_TRANSPORT": False})
    report: dict[str, Any] = {"project": DEMO_PROJECT, "steps": []}
    with tempfile.TemporaryDirectory(prefix="registry-core-pip-demo-") as work:
        tmp = Path(work)
        t0 = time.perf_counter()
        wheels = [
            build_demo_wheel(tmp / "build", v, source_kb=source_kb, data_kb=data_kb)
            for v in versions
        ]
        out(
            f"  built {DEMO_PROJECT} {versions[0]} and {versions[1]} with setuptools "
            f"({wheels[0].stat().st_size:,} and {wheels[1].stat().st_size:,} B wheels, "
            f"{time.perf_counter() - t0:.1f}s)"
        )
        (tmp / "index").mkdir()
        index = Index(tmp / "index")
        token, _ = index.create_token(scope=DEMO_PROJECT, description="demo uploads")
        with wheels[0].open("rb") as fh:
            index.upload(wheels[0].name, fh, token=token)
        files = RegistryApp(index.storage, flags=flags)
        upstream = start_server(IndexApp(index, files=files), tls=False)
        proxy = ProxyApp(upstream.url(), tmp / "proxy-cache", page_ttl=0.0, flags=flags)
        try:
            front = start_server(proxy, tls=False)
        except BaseException:
            upstream.stop()
            index.close()
            raise
        try:
            out(
                f"  index on {upstream.url('/simple/')}, proxy on {front.url('/simple/')} "
                "(pip talks to the proxy only)"
            )
            target = tmp / "site"
            pip_args = ["--target", str(target), "--index-url", front.url("/simple/"), "-q"]
            for step, (version, wheel) in enumerate(zip(versions, wheels, strict=True)):
                if step:
                    with wheel.open("rb") as fh:
                        record = index.upload(wheel.name, fh, token=token)
                    bases = [r.path for r in index.previous(record)]
                    files.precompute(record.path, bases)
                    files.precompute_idle(60.0)  # the patch is ready before pip asks
                before = proxy.stats
                t0 = time.perf_counter()
                what = "install" if step == 0 else "install --upgrade"
                _pip(["install", *(["--upgrade"] if step else []), *pip_args, DEMO_PROJECT], tmp)
                dt = time.perf_counter() - t0
                after = proxy.stats
                installed = (target / DEMO_PROJECT.replace("-", "_") / "__init__.py").read_text()
                if f"VERSION = {version!r}" not in installed:
                    raise AssertionError(f"pip did not install {DEMO_PROJECT} {version}")
                moved = after.upstream_bytes - before.upstream_bytes
                full = wheel.stat().st_size
                kind = "delta" if after.deltas > before.deltas else "full download"
                report["steps"].append(
                    {
                        "version": version,
                        "wheel_bytes": full,
                        "upstream_bytes": moved,
                        "delta": kind == "delta",
                        "seconds": dt,
                    }
                )
                if step == 0:
                    detail = f"the whole {full:,} B wheel plus its page and metadata"
                else:
                    detail = (
                        f"instead of the {full:,} B wheel ({kind}, page and metadata "
                        f"included: {100 * (1 - moved / full):.1f}% saved)"
                    )
                out(
                    f"  pip {what} {DEMO_PROJECT} -> {version}: {moved:,} B from the index, "
                    f"{detail}, {dt:.1f}s"
                )
        finally:
            front.stop()
            upstream.stop()
            files.close()
            index.close()
    return report


def run_signed_update_demo(
    *,
    versions: tuple[str, str] = ("1.0.0", "1.1.0"),
    source_kb: int = 256,
    data_kb: int = 256,
    out: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """A verified signed update: an index publishing TUF metadata (hybrid Ed25519 + ML-DSA-65
    keys, phase 2 everywhere), a client verifying through python-tuf's ngclient, release 1 in
    full, release 2 as a patch whose DSSE envelope is checked, a tampered file refused, and the
    security report of the registry. Prints and returns the figures."""
    import secrets

    from ..errors import SignatureError
    from ..flags import FeatureFlags
    from ..index import Index
    from ..signing import Keyring
    from ..signing._client import PatchEnvelopes, TrustedIndex
    from ..signing._report import security_report
    from ..signing._tuf import ROLES, TufRepository
    from ..transport import Transport
    from ._app import RegistryApp
    from ._index_app import IndexApp
    from ._serve import make_self_signed, start_server

    flags = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "QUIC_TRANSPORT": False})
    result: dict[str, Any] = {"steps": []}
    with tempfile.TemporaryDirectory(prefix="registry-core-signed-demo-") as work:
        tmp = Path(work)
        wheels = [
            build_demo_wheel(tmp / "build", v, source_kb=source_kb, data_kb=data_kb)
            for v in versions
        ]
        (tmp / "index").mkdir()
        index = Index(tmp / "index")
        state = tmp / "index" / ".registry-core"
        # a passphrase for this run only (never printed): the private keys are encrypted with it
        keyring = Keyring(state / "keys", passphrase=secrets.token_urlsafe(24))
        repo = TufRepository(state / "tuf", keyring, bins=16, phases=dict.fromkeys(ROLES, 2))
        t0 = time.perf_counter()
        repo.init()
        repo.attach(index)  # every upload updates the metadata (bin, snapshot, timestamp)
        out(
            f"  TUF repository: {len(ROLES)} key-owning roles, each an Ed25519 + ML-DSA-65 pair "
            f"at threshold 2 (phase 2: both signatures required), 16 hash bins "
            f"({1000 * (time.perf_counter() - t0):.0f} ms)"
        )
        token, _ = index.create_token(scope=DEMO_PROJECT, description="signed demo")
        files = RegistryApp(index.storage, flags=flags, envelopes=PatchEnvelopes(keyring))
        cert, key = make_self_signed(["127.0.0.1", "localhost"], tmp)
        server = start_server(
            IndexApp(index, files=files, tuf=repo), certfile=cert, keyfile=key, quic=False
        )
        base = f"https://127.0.0.1:{server.port}/"
        trusted = TrustedIndex(
            repo.trusted_root(),
            base + "tuf/",
            tmp / "client-tuf",
            target_base_url=base,
            verify=cert,
        )
        try:

            async def fetch(url: str, have: bytes | None) -> tuple[bytes, dict[str, int]]:
                async with Transport(verify=cert, flags=flags, http3=False, trust=trusted) as t:
                    data = await t.fetch(url, have=have)
                    return data, dict(t.stats)

            have: bytes | None = None
            for step, wheel in enumerate(wheels):
                with wheel.open("rb") as fh:
                    record = index.upload(wheel.name, fh, token=token)
                if step:
                    files.precompute(record.path, [r.path for r in index.previous(record)])
                    files.precompute_idle(60.0)
                t0 = time.perf_counter()
                data, stats = asyncio.run(fetch(base + record.path, have))
                dt = time.perf_counter() - t0
                if data != wheel.read_bytes() or stats.get("fetch_tuf_verified") != 1:
                    raise AssertionError(f"the signed fetch of {record.filename} did not verify")
                wire = stats.get("fetch_bytes_wire", 0)
                how = (
                    "full download"
                    if have is None
                    else f"patch + DSSE envelope (Ed25519 and ML-DSA-65 verified), "
                    f"{100 * (1 - wire / len(data)):.1f}% saved"
                )
                out(
                    f"  {record.filename}: {len(data):,} B verified against TUF targets "
                    f"(ngclient, bin {repo.role_for(record.path)}) in {dt * 1000:.0f} ms; "
                    f"{wire:,} B moved, {how}"
                )
                result["steps"].append(
                    {"file": record.filename, "bytes": len(data), "wire": wire, "delta": bool(have)}
                )
                have = data
            # a file changed on the server's disk: its bytes no longer match the signed targets
            path = index.storage.root / record.path  # type: ignore[attr-defined]
            good = path.read_bytes()
            path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
            try:
                asyncio.run(fetch(base + record.path, None))
            except SignatureError as exc:
                out(f"  tampered {record.filename} on the server: refused ({str(exc)[:90]}...)")
                result["tamper_refused"] = True
            else:
                raise AssertionError("a tampered file was accepted")
            finally:
                path.write_bytes(good)
            report = security_report(tmp / "index", config={"keyring": keyring})
            result["report"] = report.to_dict()
            out("  registry-core security report:")
            for line in report.render().splitlines():
                out("    " + line)
        finally:
            trusted.close()
            server.stop()
            files.close()
            index.close()
    return result


_TENANTS_CONFIG = """\
version = 2
[server]
tls = "plain-http"
port = 0
[storage]
directory = "{root}"

[tenants.acme]
plan = "team"
[tenants.acme.roles]
"user:alice" = ["owner@*"]
"user:bob" = ["reader@main"]

[tenants.globex]
plan = "free"
[tenants.globex.roles]
"user:carol" = ["owner@*"]
"""


def run_tenants_demo(*, out: Callable[[str], Any] = print) -> dict[str, Any]:
    """Two tenants with different roles behind one server on loopback: prints and returns
    what each attempt got."""
    import hashlib

    import httpx

    from ..auth import Scope
    from ..config import parse
    from ._serve import start_server
    from ._tenancy import MultiTenantApp

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="registry-core-tenants-demo-") as work:
        tmp = Path(work)
        t0 = time.perf_counter()
        wheel = build_demo_wheel(tmp / "build", "1.0.0", source_kb=8, data_kb=8)
        config = parse(_TENANTS_CONFIG.format(root=tmp / "root"), source="tenants demo")
        app = MultiTenantApp(config)
        try:
            tokens = {}
            for tenant, who in (("acme", "alice"), ("acme", "bob"), ("globex", "carol")):
                raw, _ = app.tenants[tenant].store.create_token(
                    owner=f"user:{who}",
                    scopes=[Scope.parse(tenant, "read,upload,create:*")],
                    description="tenants demo",
                )
                tokens[who] = raw
            server = start_server(app, tls=False)
        except BaseException:
            app.close()
            raise
        try:
            base = server.url()
            out(
                f"  one server, two tenants: acme at {base}t/acme/main/ (alice owner, bob "
                f"reader, plan team), globex at {base}t/globex/main/ (carol owner, plan free)"
            )
            blob = wheel.read_bytes()
            form = {
                ":action": "file_upload",
                "protocol_version": "1",
                "sha256_digest": hashlib.sha256(blob).hexdigest(),
            }
            with httpx.Client(base_url=base, timeout=60) as client:

                def upload(who: str, tenant: str) -> httpx.Response:
                    return client.post(
                        f"/t/{tenant}/main/legacy/",
                        data=form,
                        files={"content": (wheel.name, blob)},
                        auth=("__token__", tokens[who]),
                    )

                r = upload("alice", "acme")
                result["alice_upload"] = r.status_code
                out(
                    f"  alice uploads {wheel.name} to acme (the upload API twine speaks): "
                    f"{r.status_code}"
                )
                r = upload("bob", "acme")
                result["bob_upload"] = r.status_code
                out(f"  bob (reader) uploads to acme: {r.status_code} {r.text.strip()[:70]}")
                target = tmp / "site"
                authed = (
                    f"http://__token__:{tokens['bob']}@{base[len('http://'):]}t/acme/main/simple/"
                )
                _pip(
                    ["install", "--target", str(target), "--index-url", authed, "-q", DEMO_PROJECT],
                    tmp,
                )
                installed = (target / DEMO_PROJECT.replace("-", "_") / "__init__.py").read_text()
                result["bob_installed"] = "VERSION = '1.0.0'" in installed
                if not result["bob_installed"]:
                    raise AssertionError(f"pip did not install {DEMO_PROJECT} 1.0.0")
                out(f"  bob: pip install {DEMO_PROJECT} from acme: installed 1.0.0")
                theirs = client.get(
                    "/t/globex/main/simple/", headers={"authorization": f"Bearer {tokens['alice']}"}
                )
                nobody = client.get("/t/initech/main/simple/")
                same = (theirs.status_code, theirs.content) == (nobody.status_code, nobody.content)
                result["cross_tenant"] = theirs.status_code
                result["cross_tenant_uniform"] = same
                out(
                    f"  alice's acme token on globex: {theirs.status_code} "
                    f"{theirs.content.decode().strip()!r}, "
                    f"{'the same bytes as' if same else 'DIFFERENT from'} an unknown tenant's "
                    f"({time.perf_counter() - t0:.1f}s in all)"
                )
        finally:
            server.stop()
            app.close()
    return result


def main() -> None:
    """Demo on the corpus cache when present, else on releases built from local files."""
    artifacts = corpus_artifacts()
    if artifacts is None:
        print("(no corpus cache found: building releases from this machine's Python sources)")
        artifacts = local_artifacts()
    run_demo(artifacts)


if __name__ == "__main__":
    main()
