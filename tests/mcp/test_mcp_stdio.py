"""``registry-core mcp`` over stdio: the SDK's real ClientSession spawns the command and lists
and calls every tool and resource against a real index on loopback (``IndexApp`` over
``start_server(tls=False)``, releases built by setuptools), then against the same index
directory with ``--dir`` and ``--allow-write`` (publish, security_report).

One session per configuration (spawning costs about a second), so the checks of one session
live in one test; every tool error must come back as an MCP tool error (``is_error``) with a
one-line message, never a traceback, and no token anywhere in a result.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _mcp_harness import (
    TOOLS,
    Site,
    data_of,
    exercise_every_tool,
    make_roots,
    mcp_env,
    start_site,
    stdio_session,
)
from _packages import build_project

pytestmark = pytest.mark.network


@pytest.fixture(autouse=True)
def _need_mcp_package() -> None:
    """registry_core.mcp (built in parallel) must exist; skip locally until then, fail on CI."""
    try:
        from registry_core.mcp import create_server  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"registry_core.mcp is not importable yet: {exc}")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s: Site = start_site(tmp_path_factory.mktemp("mcp-stdio"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def roots(tmp_path, site) -> Path:
    return make_roots(tmp_path, site)


def test_every_tool_and_resource_over_stdio_against_a_remote_index(site, roots):
    async def go() -> None:
        args = ["--registry", site.url, "--root", str(roots)]
        with anyio.fail_after(240):
            async with stdio_session(args) as s:
                await exercise_every_tool(s, site, TOOLS)

    anyio.run(go)


def test_local_directory_with_write_publishes(site, tmp_path, monkeypatch):
    """``--dir DIR --allow-write``: publish uploads into the directory, security_report reads
    its TUF metadata (a signed registry: keys made here)."""
    from registry_core.signing import TufRepository

    directory = tmp_path / "index"
    shutil.copytree(site.directory, directory)
    monkeypatch.setenv("REGISTRY_CORE_KEY_PASSPHRASE", "mcp-test-passphrase")
    TufRepository.for_registry(directory, bins=0).init()
    root = tmp_path / "work"
    root.mkdir()
    built = build_project(tmp_path / "build", "gamma", "0.1", payload_kb=2)
    shutil.copy(built.wheel, root / built.wheel.name)
    from registry_core.index import Index

    index = Index(directory)
    token, _ = index.create_token(description="mcp publish")
    index.close()
    env = mcp_env(REGISTRY_CORE_PUBLISH_TOKEN=token)

    async def go() -> None:
        args = ["--dir", str(directory), "--root", str(root), "--allow-write"]
        with anyio.fail_after(240):
            async with stdio_session(args, env) as s:
                r = await s.call_tool("publish", {"path": built.wheel.name})
                pub = data_of(r)
                assert pub["project"] == "gamma" and pub["version"] == "0.1"
                assert token not in r.model_dump_json()
                assert (
                    data_of(await s.call_tool("list_versions", {"project": "gamma"}))["latest"]
                    == "0.1"
                )
                r = await s.call_tool("security_report", {})
                report = data_of(r)
                assert "compliance_score" in json.dumps(report)
                dumped = r.model_dump_json()
                assert token not in dumped and "mcp-test-passphrase" not in dumped
                # the same file again: same bytes, nothing new; the directory keeps one copy
                data_of(await s.call_tool("publish", {"path": built.wheel.name}))

    anyio.run(go)
    assert (directory / "gamma" / built.wheel.name).read_bytes() == built.wheel.read_bytes()


def test_the_command_needs_a_source(site):
    from _mcp_harness import run_cli

    proc = run_cli([], mcp_env())
    assert proc.returncode == 2 and "--registry" in proc.stderr
    proc = run_cli(["--dir", str(site.directory / "missing")], mcp_env())
    assert proc.returncode == 2 and "not a directory" in proc.stderr
    proc = run_cli(["--registry", site.url, "--publish-token-file", "x"], mcp_env())
    assert proc.returncode == 2 and "--allow-write" in proc.stderr
