"""The ``registry-core`` console script as a user runs it, for the CLI tests: ``cli(*args)``
is the command line; ``Running`` starts a long-running command (serve, proxy) and reads its
URL from the "serving on" line it prints once it listens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "registry-core"


def cli(*args: str) -> list[str]:
    """The installed console script (the pyproject entry point) when present."""
    if SCRIPT.exists():
        return [str(SCRIPT), *args]
    return [sys.executable, "-m", "registry_core.cli", *args]


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without REGISTRY_CORE_* settings, deltas on, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_CORE_")}
    env["REGISTRY_CORE_FLAGS"] = "DELTA_AGGREGATOR=on"
    env.update(extra)
    return env


class Running:
    """A long-running command; ``url`` from its first stdout line ("serving on")."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            cli(*args),
            cwd=cwd,
            env=env or cli_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.line = self.proc.stdout.readline()  # blocks until printed or the process ends
        if "serving on" not in self.line:
            self.proc.kill()
            raise AssertionError((self.line, self.proc.communicate(timeout=30)))
        self.url = self.line.split("serving on ", 1)[1].split()[0]
        self.rest = ""

    def stop(self) -> int:
        """SIGTERM; returns the exit status (what it printed after is in ``self.rest``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.rest, _ = self.proc.communicate(timeout=30)
            return self.proc.returncode
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()
