"""A real index on loopback and real MCP client sessions for the MCP tests and benchmark.

``start_site`` builds real setuptools releases (``build_project``), uploads them through
``Index.upload`` and serves ``IndexApp`` over plain HTTP on 127.0.0.1 (``start_server(tls=False)``,
as ``registry-core serve --plain-http`` does). ``stdio_session`` spawns ``registry-core mcp``
with the SDK's stdio client; ``spawn_http`` starts ``registry-core mcp --transport http`` and
returns its URL once it printed its "serving" line; ``http_session`` connects the SDK's
streamable HTTP client with (or without) a bearer token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _packages import Built, build_project
from registry_core.auth import parse_token
from registry_core.index import Index
from registry_core.server import IndexApp, start_server

BIN = Path(sys.executable).parent
#: every tool registry-core mcp lists
TOOLS = {
    "search_projects",
    "list_versions",
    "project_metadata",
    "plan_upgrade",
    "diff",
    "apply",
    "inspect_patch",
    "fetch",
    "publish",
    "verify",
    "security_report",
    "flags",
    "cache_stats",
}
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


def make_roots(tmp_path: Path, site: Site) -> Path:
    """A root holding alpha 1.0's and 1.1's wheels (what an agent's workspace would have)."""
    root = tmp_path / "work"
    root.mkdir()
    for key in ("alpha-1.0", "alpha-1.1"):
        shutil.copy(site.releases[key].wheel, root / site.releases[key].wheel.name)
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A real index on loopback for one test module (import the fixture by name)."""
    s = start_site(tmp_path_factory.mktemp("mcp-site"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def work(tmp_path: Path, site: Site) -> Path:
    """The test's root (the file tools' workspace): alpha 1.0's and 1.1's wheels."""
    return make_roots(tmp_path, site)


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


# -- the every-tool walk shared by the stdio and HTTP tests -------------------------------------


def data_of(result: Any) -> dict[str, Any]:
    """The structured result of a successful call (unwrapped when the SDK wrapped it)."""
    assert not result.is_error, result.content
    data = result.structured_content
    if data is None:  # a result without a schema: its JSON text
        data = json.loads(result.content[0].text)
    if isinstance(data, dict) and set(data) == {"result"}:
        data = data["result"]
    assert result.content and result.content[0].text.strip(), "a one-line summary is expected"
    return data


def error_of(result: Any) -> str:
    assert result.is_error, result
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert "Traceback" not in text and 'File "' not in text, text
    return text


def no_secret(site: Site, *results: Any) -> None:
    for r in results:
        dumped = r.model_dump_json() if hasattr(r, "model_dump_json") else json.dumps(r)
        assert site.token not in dumped
        # not even the secret part (split as the token format does: the secret may hold "-")
        assert parse_token(site.token)[1] not in dumped


async def read_blob(session: Any, uri: str) -> tuple[bytes, str | None]:
    got = await session.read_resource(uri)
    (content,) = got.contents
    return base64.b64decode(content.blob), content.mime_type


async def exercise_every_tool(s: Any, site: Site, tools: set[str]) -> None:
    """List and call every tool and read every kind of resource through session ``s``, served
    by ``registry-core mcp --registry site.url --root R`` (R holding alpha 1.0's and 1.1's
    wheels): results checked, errors are tool errors, no token anywhere."""
    old = site.releases["alpha-1.0"].wheel
    new = site.releases["alpha-1.1"].wheel
    new_sha = hashlib.sha256(new.read_bytes()).hexdigest()
    listed = await s.list_tools()
    names = {t.name for t in listed.tools}
    assert tools - {"publish"} <= names, names
    for t in listed.tools:
        assert t.description and "\n" not in t.description.strip()
        assert t.input_schema.get("type") == "object"
    results = []

    r = await s.call_tool("search_projects", {"query": "alp"})
    assert data_of(r)["projects"] == ["alpha"]
    results.append(r)

    r = await s.call_tool("list_versions", {"project": "Alpha"})
    d = data_of(r)
    assert d["latest"] == "1.1"
    assert [v["version"] for v in d["versions"]] == ["1.1", "1.0"]
    results.append(r)

    r = await s.call_tool("project_metadata", {"project": "alpha"})
    meta = data_of(r)
    assert meta["version"] == "1.1" and meta["summary"] == "a test package"
    assert {f["filename"] for f in meta["files"]} == {
        new.name,
        site.releases["alpha-1.1"].sdist.name,
    }
    assert meta["uri"].startswith("registry://") and meta["uri"].endswith("/alpha/1.1")
    results.append(r)

    r = await s.call_tool(
        "plan_upgrade",
        {"requirements": ["alpha", "beta"], "installed": {"alpha": "1.0"}},
    )
    plan = data_of(r)
    by = {e["project"]: e for e in plan["entries"]}
    assert by["alpha"]["action"] == "upgrade" and by["alpha"]["version"] == "1.1"
    assert by["alpha"]["full_bytes"] > 0
    assert by["beta"]["action"] == "install"
    results.append(r)

    r = await s.call_tool("diff", {"old_path": old.name, "new_path": new.name})
    patch = data_of(r)
    assert patch["target_sha256"] == new_sha
    data, mime = await read_blob(s, patch["uri"])
    assert len(data) == patch["size"] and mime == patch["mime_type"]
    results.append(r)

    r = await s.call_tool("inspect_patch", {"patch": patch["uri"]})
    assert data_of(r)["target_sha256"] == new_sha
    results.append(r)

    r = await s.call_tool("apply", {"old_path": old.name, "patch": patch["uri"]})
    art = data_of(r)
    assert art["sha256"] == new_sha
    data, _ = await read_blob(s, art["uri"])
    assert data == new.read_bytes()
    results.append(r)

    r = await s.call_tool(
        "fetch",
        {"project": "alpha", "filename": new.name, "have_path": old.name},
    )
    art = data_of(r)
    assert art["sha256"] == new_sha and art["size"] == new.stat().st_size
    data, mime = await read_blob(s, art["uri"])
    assert hashlib.sha256(data).hexdigest() == new_sha
    assert art["mime_type"] == "application/zip"
    assert mime in ("application/zip", "application/octet-stream")
    results.append(r)

    r = await s.call_tool("verify", {"path": new.name})
    v = data_of(r)
    assert v["ok"] is True and v["expected_sha256"] == new_sha
    results.append(r)

    r = await s.call_tool("flags", {})
    assert {"DELTA_AGGREGATOR"} <= {f["name"] for f in data_of(r)["flags"]}
    results.append(r)

    r = await s.call_tool("cache_stats", {})
    assert data_of(r)["resources"]["entries"] >= 1
    results.append(r)

    # security_report needs a local directory; publish needs --allow-write
    results.append(await s.call_tool("security_report", {}))
    assert "--dir" in error_of(results[-1]) or "director" in error_of(results[-1])
    if "publish" in names:
        results.append(await s.call_tool("publish", {"path": new.name}))
        assert "allow_write" in error_of(results[-1]).replace("-", "_")

    # resources: the project and the version, as JSON
    templates = await s.list_resource_templates()
    assert len(templates.resource_templates) >= 2
    version_uri = meta["uri"]
    project_uri = version_uri.rsplit("/", 1)[0]
    for uri, key in ((project_uri, "alpha"), (version_uri, "1.1")):
        got = await s.read_resource(uri)
        (content,) = got.contents
        assert key in content.text
        results.append(got)

    # errors are MCP errors, and the server keeps serving after them
    error_of(await s.call_tool("list_versions", {"project": "no-such-project"}))
    error_of(await s.call_tool("diff", {"old_path": "../etc/passwd", "new_path": new.name}))
    error_of(await s.call_tool("project_metadata", {"project": 7}))
    assert data_of(await s.call_tool("search_projects", {"query": ""}))["total"] == 2
    no_secret(site, *results)


# -- two tenants in the v2 layout (the isolation tests of the MCP tools and the CLI) ------------

V2_CONFIG = """\
version = 2

[storage]
directory = "{root}"

[tenants.acme]
token_max_ttl_s = 2592000

[tenants.acme.roles]
"user:alice" = ["owner@*"]

[tenants.acme.group_roles]
"engineering" = ["maintainer@main"]

[tenants.globex]

[tenants.globex.roles]
"user:gina" = ["owner@*"]
"""


@dataclass
class Tenants:
    """ROOT/acme/main and ROOT/globex/main, each an Index over its own TenantStore at
    ROOT/<tenant>/.registry-core/tenant.sqlite3, and the v2 config file naming them."""

    root: Path
    config: Path
    indexes: dict[str, Index]
    _stop: list[Any] = field(default_factory=list, repr=False)

    def directory(self, tenant: str) -> Path:
        return self.root / tenant / "main"

    def store(self, tenant: str) -> Any:
        return self.indexes[tenant].auth

    def close(self) -> None:
        for stop in reversed(self._stop):
            stop()


def make_tenants(root: Path, uploads: dict[str, list[Path]], *, audit: Any = None) -> Tenants:
    """The two tenants of :data:`V2_CONFIG` under ``root``; ``uploads[tenant]``: the files
    uploaded into its index by its local operator; ``audit``: both indexes' and stores' sink."""
    from registry_core.auth import Principal, TenantStore

    root.mkdir(parents=True, exist_ok=True)
    config = root / "registry.toml"
    config.write_text(V2_CONFIG.format(root=root.as_posix()), encoding="utf-8")
    tenants = Tenants(root, config, {})
    for name in ("acme", "globex"):
        directory = root / name / "main"
        directory.mkdir(parents=True)
        store = TenantStore(
            root / name / ".registry-core" / "tenant.sqlite3", tenant=name, audit=audit
        )
        index = Index(directory, auth=store, tenant=name, name="main", audit=audit)
        tenants.indexes[name] = index
        tenants._stop += [store.close, index.close]
        for path in uploads.get(name, ()):
            with open(path, "rb") as f:
                index.upload(path.name, f, principal=Principal.local(name))
    return tenants
