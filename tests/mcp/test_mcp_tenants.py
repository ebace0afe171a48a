"""The MCP tools of a local index go through the one decision point, bound to one tenant.

Two tenants in the v2 layout (ROOT/acme/main and ROOT/globex/main, each with its own tenant
store): a server bound to acme's index can never read or write globex (a globex project, file
or resource URI is "not found", a globex token does not start the server); a reader's token
lists and reads but cannot publish (a tool error, the denial audited); a project-scoped token
sees only its project; a bad, revoked or expired token refuses to start the server. Called
through the SDK's real client (``mcp.Client``: the full JSON-RPC session in memory).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _mcp_harness import Site, Tenants, make_tenants, mcp_env, run_cli
from _packages import build_project
from mcp import Client, MCPError
from registry_core.audit import MemorySink
from registry_core.auth import Resource, Scope
from registry_core.errors import AuthenticationError, InvalidArgumentError, TokenExpiredError
from registry_core.mcp import create_server

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def gizmo(tmp_path_factory):
    """A project only globex has."""
    return build_project(tmp_path_factory.mktemp("gizmo"), "gizmo", "3.0", payload_kb=2)


@pytest.fixture()
def tenants(tmp_path, site: Site, gizmo):
    rel = site.releases
    t = make_tenants(
        tmp_path / "root",
        {
            "acme": [rel["alpha-1.0"].wheel, rel["alpha-1.1"].wheel, rel["beta-1.0"].wheel],
            "globex": [rel["alpha-1.0"].sdist, gizmo.wheel, gizmo.sdist],
        },
    )
    yield t
    t.close()


def _error(result: Any) -> str:
    assert result.is_error, result
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert "Traceback" not in text
    return text


def _data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def _globex_state(t: Tenants) -> tuple[Any, ...]:
    g = t.indexes["globex"]
    files = sorted((r.filename, r.sha256) for p in g.projects() for r in g.files(p.name))
    on_disk = sorted(
        p.relative_to(t.root).as_posix()
        for p in (t.root / "globex").rglob("*")
        if ".registry-core" not in p.parts
    )
    tokens = [r.token_id for r in t.store("globex").tokens()]
    return g.serial, tuple(files), tuple(on_disk), tuple(tokens)


def test_an_acme_server_never_reaches_globex(tenants, work, gizmo, site) -> None:
    shutil.copy(gizmo.wheel, work / gizmo.wheel.name)
    built = build_project(work.parent / "b", "alpha", "2.0", payload_kb=2)
    shutil.copy(built.wheel, work / built.wheel.name)
    before = _globex_state(tenants)
    server = create_server(
        directory=tenants.directory("acme"), tenant="acme", roots=[work], allow_write=True
    )
    globex_sdist = site.releases["alpha-1.0"].sdist.name

    async def go() -> list[Any]:
        seen = []
        async with Client(server) as c:
            found = _data(await c.call_tool("search_projects", {"query": ""}))
            assert (found["projects"], found["tenant"]) == (["alpha", "beta"], "acme")
            assert _data(await c.call_tool("search_projects", {"query": "giz"}))["total"] == 0
            for name, args in [
                ("list_versions", {"project": "gizmo"}),
                ("project_metadata", {"project": "gizmo"}),
                ("project_metadata", {"project": "gizmo", "version": "3.0"}),
                ("fetch", {"project": "gizmo"}),
                ("fetch", {"project": "alpha", "filename": globex_sdist}),
                ("verify", {"path": gizmo.wheel.name}),
            ]:
                text = _error(await c.call_tool(name, args))
                assert "gizmo" in text or globex_sdist in text, (name, text)
                assert "globex" not in text and "permission" not in text.lower(), text
            for crafted in ("globex/gizmo", "../globex/main/gizmo", "t/globex", "globex:gizmo"):
                text = _error(await c.call_tool("list_versions", {"project": crafted}))
                assert "not a valid project name" in text, text
            plan = _data(await c.call_tool("plan_upgrade", {"requirements": ["gizmo"]}))
            assert plan["entries"][0]["action"] == "unavailable"
            versions = _data(await c.call_tool("list_versions", {"project": "alpha"}))
            assert versions["tenant"] == "acme" and versions["latest"] == "1.1"
            for uri in (
                "registry://acme.main/gizmo",
                "registry://acme.main/gizmo/3.0",
                "registry://globex.main/gizmo",
                "registry://globex.main/alpha",
                "registry://local/gizmo",
            ):
                with pytest.raises(MCPError):
                    await c.read_resource(uri)
            got = await c.read_resource("registry://acme.main/alpha")
            assert json.loads(got.contents[0].text)["tenant"] == "acme"
            pub = _data(await c.call_tool("publish", {"path": built.wheel.name}))
            assert (pub["tenant"], pub["uploader"]) == ("acme", "local")
            seen += [found, versions, plan, pub]
        return seen

    results = anyio.run(go)
    assert "globex" not in json.dumps(results)
    assert tenants.indexes["acme"].file(built.wheel.name) is not None
    assert tenants.indexes["globex"].file(built.wheel.name) is None
    assert _globex_state(tenants) == before


def test_a_reader_token_reads_but_cannot_publish_and_the_denial_is_audited(tenants, work) -> None:
    store = tenants.store("acme")
    store.grant("user:rita", "reader", Resource("acme"))
    raw, _ = store.create_token(
        owner="user:rita", scopes=[Scope.parse("acme", "read,upload,create:main")]
    )
    sink = MemorySink()
    server = create_server(
        directory=tenants.directory("acme"),
        tenant="acme",
        roots=[work],
        allow_write=True,
        token=raw,
        audit=sink,
    )
    serial = tenants.indexes["acme"].serial
    wheel = next(p.name for p in work.iterdir() if p.name.startswith("alpha-1.1"))

    async def go() -> None:
        async with Client(server) as c:
            assert _data(await c.call_tool("list_versions", {"project": "alpha"}))["latest"]
            text = _error(await c.call_tool("publish", {"path": wheel}))
            assert "user:rita may not upload" in text and raw not in text
            stats = json.dumps((await c.call_tool("cache_stats", {})).structured_content)
            assert raw not in stats

    anyio.run(go)
    denied = [e for e in sink.events if e.kind == "authz.denied"]
    assert [(e.tenant, e.subject, e.action, e.resource) for e in denied] == [
        ("acme", "user:rita", "upload", "main/alpha")
    ]
    assert raw not in json.dumps([e.to_json() for e in sink.events])
    assert tenants.indexes["acme"].serial == serial


def test_a_project_scoped_token_sees_only_its_project(tenants) -> None:
    raw, _ = tenants.store("acme").create_token(
        owner=None, scopes=[Scope.parse("acme", "read:main/alpha")]
    )
    server = create_server(directory=tenants.directory("acme"), tenant="acme", token=raw)

    async def go() -> None:
        async with Client(server) as c:
            assert _data(await c.call_tool("search_projects", {}))["projects"] == ["alpha"]
            assert _data(await c.call_tool("list_versions", {"project": "alpha"}))["latest"]
            # the same answer for a project that exists and one that does not
            beta = _error(await c.call_tool("list_versions", {"project": "beta"}))
            nope = _error(await c.call_tool("list_versions", {"project": "nope"}))
            assert beta.replace("beta", "X") == nope.replace("nope", "X")
            assert "may not read" in beta
            plan = _data(await c.call_tool("plan_upgrade", {"requirements": ["beta", "nope"]}))
            assert [e["action"] for e in plan["entries"]] == ["unavailable", "unavailable"]
            assert plan["entries"][0]["reason"] == plan["entries"][1]["reason"]
            publish = _error(await c.call_tool("publish", {"path": "x.whl"}))
            assert "allow_write" in publish.replace("-", "_")

    anyio.run(go)


def test_bad_tokens_refuse_to_start(tenants) -> None:
    acme = tenants.store("acme")
    globex_raw, _ = tenants.store("globex").create_token(
        owner=None, scopes=[Scope.parse("globex", "read:*")]
    )
    revoked, rec = acme.create_token(owner=None, scopes=[Scope.parse("acme", "read:*")])
    acme.revoke_token(rec.token_id)
    now = time.time_ns()
    expired, _ = acme.create_token(
        owner=None,
        scopes=[Scope.parse("acme", "read:*")],
        expires_ns=now + 1,
        now_ns=now,
    )
    where = {"directory": tenants.directory("acme"), "tenant": "acme"}
    for raw, error in (
        ("rc-0123456789abcdef-" + "x" * 43, AuthenticationError),
        ("not a token", AuthenticationError),
        (globex_raw, AuthenticationError),  # another tenant's token is unknown here
        (revoked, AuthenticationError),
        (expired, TokenExpiredError),
    ):
        with pytest.raises(error) as exc:
            create_server(token=raw, **where)
        assert raw not in str(exc.value)
    with pytest.raises(InvalidArgumentError, match="ROOT/globex"):
        create_server(directory=tenants.directory("acme"), tenant="globex")
    with pytest.raises(InvalidArgumentError):
        create_server(directory=tenants.directory("acme"), tenant="Not A Tenant")


def test_the_command_refuses_a_bad_token(site) -> None:
    bad = "rc-0123456789abcdef-" + "y" * 43
    proc = run_cli(
        ["--dir", str(site.directory), "--allow-write"], mcp_env(REGISTRY_CORE_PUBLISH_TOKEN=bad)
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("registry-core mcp: error: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and bad not in proc.stderr
    assert proc.stdout == ""


def test_an_open_index_binds_its_tenant(tenants) -> None:
    server = create_server(index=tenants.indexes["globex"])
    tools = server._registry_core_tools
    assert (tools.tenant, tools.index_name, tools.name) == ("globex", "main", "globex.main")
    assert "globex" in (server.instructions or "")

    async def go() -> None:
        async with Client(server) as c:
            found = _data(await c.call_tool("search_projects", {}))
            assert (found["projects"], found["tenant"]) == (["alpha", "gizmo"], "globex")

    anyio.run(go)
    assert tenants.indexes["globex"].serial  # still open: the caller's index is not closed


def test_config_mode_decides_with_the_config_roles(tenants, work) -> None:
    """alice is owner@* of acme in the config file only: bound through ``config=``, her token
    publishes a new project; bound to the bare directory (stored bindings only) it may not."""
    built = build_project(work.parent / "b", "delta-new", "0.1", payload_kb=2)
    shutil.copy(built.wheel, work / built.wheel.name)
    raw, _ = tenants.store("acme").create_token(
        owner="user:alice", scopes=[Scope.parse("acme", "read,upload,create:main")]
    )
    bare = create_server(
        directory=tenants.directory("acme"),
        tenant="acme",
        roots=[work],
        allow_write=True,
        token=raw,
    )
    configured = create_server(
        config=tenants.config, tenant="acme", roots=[work], allow_write=True, token=raw
    )

    async def go() -> None:
        async with Client(bare) as c:
            text = _error(await c.call_tool("list_versions", {"project": "alpha"}))
            assert "user:alice may not read" in text
        async with Client(configured) as c:
            pub = _data(await c.call_tool("publish", {"path": built.wheel.name}))
            assert (pub["project"], pub["uploader"], pub["tenant"]) == (
                "delta-new",
                "user:alice",
                "acme",
            )
            found = _data(await c.call_tool("search_projects", {}))["projects"]
            assert found == ["alpha", "beta", "delta-new"]

    anyio.run(go)
    assert tenants.indexes["globex"].project("delta-new") is None
    for kwargs in (
        {"config": tenants.config, "tenant": "initech"},
        {"config": tenants.config, "tenant": "acme", "index_name": "other"},
        {"config": tenants.config, "tenant": "acme", "directory": tenants.directory("acme")},
    ):
        with pytest.raises(InvalidArgumentError):
            create_server(**kwargs)
