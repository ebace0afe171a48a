"""``python -m registry_core.flags``: the table, JSON, context decisions, config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run(*args: str, cwd, env_flags: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGISTRY_CORE_FLAGS": env_flags}
    env.pop("REGISTRY_CORE_FLAGS_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "registry_core.flags", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def test_table_shows_values_and_sources(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.registry-core.flags]\nPGO_BUILDS = true\n")
    out = run(cwd=tmp_path, env_flags="QUIC_TRANSPORT=on")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert "on" in lines["QUIC_TRANSPORT"] and "env REGISTRY_CORE_FLAGS" in lines["QUIC_TRANSPORT"]
    assert "[tool.registry-core.flags]" in lines["PGO_BUILDS"]
    assert "default (beta)" in lines["BROTLI_COMPRESSION"]


def test_json_with_context(tmp_path):
    (tmp_path / "flags.toml").write_text('[flags]\nINCREMENTAL_CACHE = { tenants = ["acme"] }\n')
    out = run("--config", "flags.toml", "--json", "--tenant", "acme", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["flag"]: r for r in json.loads(out.stdout)}
    assert rows["INCREMENTAL_CACHE"]["for_context"] is True
    assert rows["INCREMENTAL_CACHE"]["value"].startswith("targeted: tenants=acme")
    other = run("--config", "flags.toml", "--json", "--tenant", "x", cwd=tmp_path)
    assert {r["flag"]: r for r in json.loads(other.stdout)}["INCREMENTAL_CACHE"][
        "for_context"
    ] is False


def test_bad_config_exits_2_with_the_error(tmp_path):
    out = run(cwd=tmp_path, env_flags="QUIC_TRANSPORT=perhaps")
    assert out.returncode == 2
    assert "REGISTRY_CORE_FLAGS" in out.stderr and "perhaps" in out.stderr
