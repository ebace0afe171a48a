"""Real packaging tools run in isolation: a setuptools build in a subprocess, and the
environment pip / uv / twine run in with no user or site configuration.

The demo, the tests and the benchmarks all build small local projects and drive real clients
against a local index; these are the one copy of how (nothing here is imported at package
import time).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import InvalidArgumentError

__all__ = ["build_with_setuptools", "isolated_client_env"]


def build_with_setuptools(src: Path, dist: Path, hook: str = "build_wheel") -> Path:
    """Run setuptools' PEP 517 ``hook`` (``build_wheel`` / ``build_sdist``: what pip and
    ``build`` call) for the project in ``src`` in a subprocess, offline; returns the built
    file in ``dist``. One process per hook, as the frontends do (a second hook in the same
    process can write nothing)."""
    if hook not in ("build_wheel", "build_sdist"):
        raise InvalidArgumentError(f"hook must be build_wheel or build_sdist, not {hook!r}")
    dist.mkdir(parents=True, exist_ok=True)
    script = f"import sys, setuptools.build_meta as b; print('BUILT', b.{hook}(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(dist)],
        cwd=src,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=300,
    )
    built = [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("BUILT ")]
    if proc.returncode != 0 or not built:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InvalidArgumentError(f"setuptools {hook} of {src} failed: {tail}")
    return dist / built[-1]


def isolated_client_env(*, drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """This process's environment for pip / uv / twine with their user and site configuration
    cut off (no config file, find-links, extra index, keyring, cache): everything must come
    from the URL the caller passes. ``drop``: more variable names to remove; ``extra``: set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "TWINE_")) and k != "PYTHONPATH" and k not in drop
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_NO_CACHE_DIR="1",
        PIP_KEYRING_PROVIDER="disabled",
        UV_NO_CONFIG="1",
        UV_NO_CACHE="1",
        UV_KEYRING_PROVIDER="disabled",
        UV_PYTHON_DOWNLOADS="never",
        UV_OFFLINE="0",
    )
    env.update(extra)
    return env
