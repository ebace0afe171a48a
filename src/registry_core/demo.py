"""``make demo``: the main job, offline, on built-in defaults.

1. The C core: chunk and fingerprint real files found on this machine (the standard library).
2. A real update: consecutive releases from the benchmark corpus when it has been fetched
   (``make corpus``), otherwise two versions of pip installed on this machine packed as wheels;
   the patch, its size against the full artifact, and verification of the rebuilt bytes.
3. The registry path (server on loopback, client following updates) when the transport is built.
4. A package index with the pull-through proxy in front: pip installs a small project built
   here with setuptools, then upgrades it through the proxy; the bytes the proxy pulled from
   the index against the wheel's size.
5. A verified signed update: the index publishes TUF metadata (hybrid Ed25519 + ML-DSA-65
   keys, both signatures required), a client verifies release 1 and the patch to release 2
   through python-tuf's ngclient and the patch's DSSE envelope, a tampered file is refused,
   and the registry's security report is printed.
"""

from __future__ import annotations

import io
import itertools
import os
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

from . import build_info
from .chunking import chunks
from .hashing import content_id, integrity


def _stdlib_files(limit_bytes: int = 32 << 20) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        files.append(path)
        total += path.stat().st_size
        if total >= limit_bytes:
            break
    return files


def core_report() -> None:
    info = build_info()
    print(
        f"registry-core {info['version']} (C core {info['core_version']}, {info['compiler']}, "
        f"PGO {'on' if info['pgo'] else 'off'})"
    )
    files = _stdlib_files()
    data = b"".join(p.read_bytes() for p in files)
    t0 = time.perf_counter()
    ends = chunks(data)
    dt = time.perf_counter() - t0
    seen: dict[str, int] = {}
    start = 0
    for end in ends:
        seen.setdefault(content_id(memoryview(data)[start:end]), end - start)
        start = end
    unique = sum(seen.values())
    print(
        f"  chunked {len(files)} standard-library files, {len(data) / 1e6:.1f} MB, into "
        f"{len(ends)} chunks (avg {len(data) // max(len(ends), 1)} B) at "
        f"{len(data) / 1e6 / max(dt, 1e-9):.0f} MB/s; {len(seen)} distinct chunks, "
        f"{100 * (1 - unique / max(len(data), 1)):.1f}% duplicate bytes"
    )
    print(f"  integrity of the lot: {integrity(data)[:30]}...")


def _wheel_from_tree(root: Path, name: str) -> bytes:
    """Pack an installed package directory as wheel builders do (zipfile, deflate level 6)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                info = zipfile.ZipInfo(
                    f"{name}/{path.relative_to(root).as_posix()}", (2020, 2, 2, 0, 0, 0)
                )
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def _corpus_releases() -> list[tuple[str, bytes]] | None:
    """The longest release series of the benchmark corpus cache (``make corpus``), if present."""
    from .server._demo import corpus_artifacts

    return corpus_artifacts()


def _machine_releases() -> list[tuple[str, bytes]] | None:
    """Two pip versions present on this machine (the interpreter's and this environment's), or,
    when both are the same version, wheel-shaped releases built from the standard library."""
    by_version: dict[str, Path] = {}
    for base in sorted({sys.base_prefix, sys.prefix}):
        site = Path(sysconfig.get_paths(vars={"base": base, "platbase": base})["purelib"])
        pip_dir = site / "pip"
        dist = sorted(site.glob("pip-*.dist-info"))
        if pip_dir.is_dir() and dist:
            by_version.setdefault(dist[-1].name[4:-10], pip_dir)  # one wheel per version
    if len(by_version) < 2:
        from .server._demo import local_artifacts

        print("  one pip version on this machine; using releases built from the stdlib")
        return [(f"demo-{v}-py3-none-any.whl", data) for v, data in local_artifacts()]
    candidates = sorted(
        by_version.items(), key=lambda c: [int(x) if x.isdigit() else 0 for x in c[0].split(".")]
    )
    for v, d in candidates:
        print(f"  pip {v}: packed from {d}")
    return [(f"pip-{v}-py3-none-any.whl", _wheel_from_tree(d, "pip")) for v, d in candidates]


def delta_report() -> list[tuple[str, bytes]]:
    from .delta import DeltaAggregator

    releases = _corpus_releases()
    source = "benchmark corpus (real PyPI releases)"
    if releases is None:
        source = "pip installations on this machine"
        print(f"\nNo corpus cache (make corpus); using the {source}:")
        releases = _machine_releases()
    if not releases:
        print("  no two releases found on this machine; skipping the delta demo")
        return []
    agg = DeltaAggregator()
    print(f"\nA client following updates, from the {source}:")
    total_full = total_patch = 0
    for (old_name, old), (new_name, new) in itertools.pairwise(releases):
        t0 = time.perf_counter()
        patch = agg.diff(old, new)
        t_diff = time.perf_counter() - t0
        t0 = time.perf_counter()
        rebuilt = agg.apply(old, patch)
        t_apply = time.perf_counter() - t0
        ok = rebuilt == new and integrity(rebuilt) == integrity(new)
        total_full += len(new)
        total_patch += len(patch)
        print(
            f"  {old_name} -> {new_name}: {len(new):>9,} B artifact, {len(patch):>8,} B "
            f"{agg.inspect(patch).method} patch ({100 * (1 - len(patch) / len(new)):.1f}% saved), "
            f"diff {t_diff:.2f}s, apply {t_apply * 1000:.0f} ms, "
            f"byte-exact: {'yes' if ok else 'NO'}"
        )
        if not ok:
            raise SystemExit("verification failed")
    print(
        f"  total: {total_patch:,} B of patches instead of {total_full:,} B "
        f"({100 * (1 - total_patch / total_full):.1f}% bandwidth saved)"
    )
    return releases


def transport_report(releases: list[tuple[str, bytes]]) -> None:
    from .server._demo import run_demo

    print("\nThe registry path (server on loopback, client over HTTP/2 and HTTP/3):")
    run_demo(releases)


def pip_upgrade_report() -> dict[str, object] | None:
    import importlib.util

    print("\nA pip upgrade through the pull-through proxy (index and proxy on loopback):")
    missing = [m for m in ("pip", "setuptools") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"  {' and '.join(missing)} not installed here; skipping the pip demo")
        return None
    from .server._demo import run_pip_upgrade_demo

    return run_pip_upgrade_demo()


def signed_update_report() -> dict[str, object] | None:
    import importlib.util

    print("\nA verified signed update (TUF metadata, hybrid Ed25519 + ML-DSA-65 signatures):")
    missing = [m for m in ("tuf", "setuptools") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"  {' and '.join(missing)} not installed here; skipping the signed demo")
        return None
    from .server._demo import run_signed_update_demo

    return run_signed_update_demo()


def tenants_report() -> dict[str, object] | None:
    import importlib.util

    print(
        "\nTwo tenants with different roles on one server "
        "(acme: alice owner, bob reader; globex: carol owner):"
    )
    missing = [m for m in ("pip", "setuptools") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"  {' and '.join(missing)} not installed here; skipping the tenants demo")
        return None
    from .server._demo import run_tenants_demo

    return run_tenants_demo()


def main() -> None:
    core_report()
    releases = delta_report()
    if releases and os.environ.get("REGISTRY_CORE_DEMO_TRANSPORT", "1") == "1":
        transport_report(releases)
    if os.environ.get("REGISTRY_CORE_DEMO_PIP", "1") == "1":
        pip_upgrade_report()
    if os.environ.get("REGISTRY_CORE_DEMO_SIGNED", "1") == "1":
        signed_update_report()
    if os.environ.get("REGISTRY_CORE_DEMO_TENANTS", "1") == "1":
        tenants_report()


if __name__ == "__main__":
    main()
