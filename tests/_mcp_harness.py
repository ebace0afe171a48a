"""A real index on loopback and real MCP client sessions for the MCP tests and benchmark.

``start_site`` builds real setuptools releases (``build_project``), uploads them through
``Index.upload`` and serves ``IndexApp`` over plain HTTP on 127.0.0.1 (``start_server(tls=False)``,
as ``registry-core serve --plain-http`` does). ``stdio_session`` spawns ``registry-core mcp``
with the SDK's stdio client; ``spawn_http`` starts ``registry-core mcp --transport http`` and
returns its URL once it printed its "serving" line; ``http_session`` connects the SDK's
streamable HTTP client with (or without) a bearer token.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _packages import Built, build_project
from registry_core.index import Index
from registry_core.server import IndexApp, start_server

BIN = Path(sys.executable).parent
REGISTRY_CORE = str(BIN / "registry-core")


@dataclass
class Site:
    """One running index: its directory, base URL, upload token and the releases in it."""

    directory: Path
    url: str
    token: str
    releases: dict[str, Built]
    index: Index
    _stop: list[Any] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for stop in reversed(self._stop):
            stop()


def start_site(root: Path, releases: dict[str, Built] | None = None) -> Site:
    """An index in ``root/index`` holding alpha 1.0, alpha 1.1 and beta 1.0 (wheel + sdist)."""
    if releases is None:
        build = root / "build"
        build.mkdir()
        releases = {
            "alpha-1.0": build_project(build, "alpha", "1.0", payload_kb=16),
            "alpha-1.1": build_project(build, "alpha", "1.1", payload_kb=16),
            "beta-1.0": build_project(build, "beta", "1.0", payload_kb=4),
        }
    directory = root / "index"
    directory.mkdir()
    index = Index(directory)
    token, _ = index.create_token(description="mcp tests")
    for built in releases.values():
        for path in (built.wheel, built.sdist):
            with open(path, "rb") as f:
                index.upload(path.name, f, token=token)
    app = IndexApp(index)
    handle = start_server(app, tls=False)
    site = Site(directory, handle.url(), token, releases, index)
    site._stop += [index.close, app.close, handle.stop]
    return site


def mcp_env(**extra: str) -> dict[str, str]:
    """The environment ``registry-core mcp`` runs in: no flags file, no stray tokens."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REGISTRY_CORE_MCP_TOKEN", "REGISTRY_CORE_PUBLISH_TOKEN")
    }
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def stdio_session(args: list[str], env: dict[str, str] | None = None) -> AsyncIterator[Any]:
    """An initialized ``ClientSession`` over stdio to ``registry-core mcp ARGS``."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=REGISTRY_CORE, args=["mcp", *args], env=env or mcp_env())
    async with contextlib.AsyncExitStack() as stack:
        errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115
        streams = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
        await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def http_session(
    url: str, token: str | None, *, cafile: str | None = None
) -> AsyncIterator[Any]:
    """An initialized ``ClientSession`` over streamable HTTP, sending ``token`` if given
    (``cafile``: the CA bundle an https server is verified with)."""
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    async with contextlib.AsyncExitStack() as stack:
        if cafile is None:
            http = create_mcp_http_client(headers=headers)
        else:
            import ssl

            import httpx2

            timeout = httpx2.Timeout(30.0, read=300.0)
            http = httpx2.AsyncClient(
                headers=headers, timeout=timeout, verify=ssl.create_default_context(cafile=cafile)
            )
        client = await stack.enter_async_context(http)
        streams = await stack.enter_async_context(streamable_http_client(url, http_client=client))
        session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
        await session.initialize()
        yield session


@dataclass
class Spawned:
    """A running ``registry-core mcp --transport http``: its process, URL and stderr path."""

    proc: subprocess.Popen[str]
    url: str
    first_line: str


@contextlib.contextmanager
def spawn_http(
    args: list[str], env: dict[str, str], *, deadline: float = 60.0
) -> Iterator[Spawned]:
    """Start ``registry-core mcp --transport http --listen 127.0.0.1:0 ARGS``; yields once its
    "serving" line is out (bounded by ``deadline`` seconds), stops it afterwards."""
    proc = subprocess.Popen(
        [REGISTRY_CORE, "mcp", "--transport", "http", "--listen", "127.0.0.1:0", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_line(proc, deadline)
        url = next((w for w in line.split() if w.startswith("http")), "")
        yield Spawned(proc, url.rstrip(";"), line)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _first_line(proc: subprocess.Popen[str], deadline: float) -> str:
    """The process's first stdout line; its stderr in the error when it exits first."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            if sel.select(timeout=max(0.0, end - time.monotonic())):
                line = proc.stdout.readline()
                if line:
                    return line.strip()
                break  # EOF: the process ended
    finally:
        sel.close()
    proc.wait(timeout=30)
    err = proc.stderr.read() if proc.stderr is not None else ""
    raise AssertionError(f"registry-core mcp exited {proc.returncode} before serving: {err}")


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``registry-core mcp ARGS`` to completion (for the refusals: exit 2, one line)."""
    return subprocess.run(
        [REGISTRY_CORE, "mcp", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
