"""Real packages and real clients for the index and proxy tests (offline, loopback only).

``build_project`` writes a small setuptools project and builds its wheel and sdist with
setuptools' own PEP 517 backend (``setuptools.build_meta``, the producer pip and ``build``
call), in a subprocess, without network. ``client_env`` is the environment pip, uv and twine
run in: this machine's pip/uv configuration (find-links, extra indexes) is cut off, so a test
proves the client used our index and nothing else.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from registry_core._util._isolated import build_with_setuptools, isolated_client_env

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Built:
    """One built release: its wheel and sdist paths."""

    name: str
    version: str
    wheel: Path
    sdist: Path


def _payload(name: str, version: str, kb: int) -> str:
    """Python source of about ``kb`` KiB that changes a little from version to version, as
    real releases do (so a delta between two versions is small but not empty)."""
    rng = random.Random(name)  # same base text for every version of a project
    lines = [f"# {name}: generated module\n", f"VERSION = {version!r}\n"]
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]
    n = 0
    i = 0
    while n < kb * 1024:
        body = " ".join(rng.choice(words) for _ in range(8))
        line = f"def f{i}(x):\n    return {body!r} + str(x)\n\n"
        lines.append(line)
        n += len(line)
        i += 1
    # the version-specific part: a few functions differ per version
    vr = random.Random(f"{name}-{version}")
    for j in range(5):
        lines.append(f"def changed{j}():\n    return {vr.random()!r}\n\n")
    return "".join(lines)


def build_project(
    root: Path,
    name: str,
    version: str,
    *,
    requires_python: str | None = None,
    dependencies: list[str] | None = None,
    payload_kb: int = 64,
) -> Built:
    """Build ``name`` ``version`` (wheel + sdist) under ``root``; returns the two paths."""
    module = name.lower().replace("-", "_").replace(".", "_")
    src = root / f"src-{module}-{version}"
    if src.exists():
        shutil.rmtree(src)
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(_payload(name, version, payload_kb))
    rp = f"requires-python = {requires_python!r}\n" if requires_python else ""
    deps = f"dependencies = {dependencies!r}\n" if dependencies else ""
    (src / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "{version}"
            description = "a test package"
            """
        )
        + rp
        + deps
        + "\n[tool.setuptools]\npackages = ["
        + repr(module)
        + "]\n"
    )
    dist = root / "dist"
    wheel = build_with_setuptools(src, dist, "build_wheel")
    sdist = build_with_setuptools(src, dist, "build_sdist")
    return Built(name, version, wheel, sdist)


def client_env(**extra: str) -> dict[str, str]:
    """The environment for pip / uv / twine: no user or site configuration, no find-links,
    no extra index, no keyring; everything must come from the URL the test passes."""
    return isolated_client_env(**extra)


def tool(name: str) -> str:
    """Path of a client (pip, uv, twine) installed in the test environment."""
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise FileNotFoundError(f"{name} is not installed in the test environment")
        return found
    return str(path)


def run(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run a client; on failure the assertion shows its whole output."""
    proc = subprocess.run(
        args, env=env or client_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n"
            f"--- stderr\n{proc.stderr}"
        )
    return proc
