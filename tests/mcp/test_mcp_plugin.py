"""register() mounted into a plugin author's own SDK server (``MCPServer``), called through the
SDK's real client (``mcp.Client`` over its in-memory transport: the full JSON-RPC session)
against a real index on loopback: the plugin's own tool keeps working next to ours, our tools
list with typed input and output schemas, calls return structured content plus a one-line
summary, and the resources (project, version, patch, artifact) read back with MIME types."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _mcp_harness import Site
from mcp import Client
from mcp.server.mcpserver import MCPServer
from registry_core.mcp import TOOL_NAMES, create_server, register

pytestmark = pytest.mark.network


def _plugin(site: Site, work: Path) -> MCPServer:
    server = MCPServer("my-plugin")

    @server.tool(description="The plugin's own tool.")
    def ping(text: str) -> str:
        return f"pong {text}"

    names = register(server, registry=site.url, roots=[work], token=site.token)
    assert names == list(TOOL_NAMES)
    return server


def test_plugin_mount_lists_and_calls(site, work) -> None:
    server = _plugin(site, work)

    async def go() -> None:
        async with Client(server) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert set(listed) == {"ping", *TOOL_NAMES}
            for name in TOOL_NAMES:
                tool = listed[name]
                assert tool.description and len(tool.description) <= 100, name
                assert tool.input_schema["type"] == "object" and tool.output_schema, name
                size = len(json.dumps(tool.model_dump(mode="json", exclude_none=True)))
                assert size < 2500, (name, size)  # agents pay for schemas in context
                assert '"title"' not in json.dumps(tool.input_schema), name
            pm = listed["project_metadata"].input_schema
            assert pm["required"] == ["project"] and pm["properties"]["project"]["type"] == "string"

            pong = await client.call_tool("ping", {"text": "x"})
            assert not pong.is_error and pong.content[0].text == "pong x"

            meta = await client.call_tool("project_metadata", {"project": "alpha"})
            assert not meta.is_error
            data: dict[str, Any] = meta.structured_content
            assert (data["project"], data["version"], data["summary"]) == (
                "alpha",
                "1.1",
                "a test package",
            )
            summary = meta.content[0].text
            assert "\n" not in summary and summary.startswith("alpha 1.1: 2 files")

            plan = await client.call_tool(
                "plan_upgrade",
                {"requirements": ["alpha"], "installed": {"alpha": "1.0"}, "compute_deltas": True},
            )
            assert not plan.is_error, plan.content
            entry = plan.structured_content["entries"][0]
            assert entry["action"] == "upgrade" and entry["delta_bytes"] < entry["full_bytes"]
            assert plan.content[0].text.startswith("1 files change")

    anyio.run(go)


def test_resources_read_back(site, work) -> None:
    server = _plugin(site, work)
    index = site.url.split("://", 1)[1].rstrip("/")
    old = site.releases["alpha-1.0"].wheel.name
    new_bytes = site.releases["alpha-1.1"].wheel.read_bytes()

    async def go() -> None:
        async with Client(server) as client:
            templates = {
                t.name: t for t in (await client.list_resource_templates()).resource_templates
            }
            assert templates["project"].uri_template == f"registry://{index}/{{project}}"
            assert (
                templates["version"].uri_template == f"registry://{index}/{{project}}/{{version}}"
            )

            proj = await client.read_resource(f"registry://{index}/alpha")
            body = json.loads(proj.contents[0].text)
            assert proj.contents[0].mime_type == "application/json"
            assert [v["version"] for v in body["versions"]] == ["1.1", "1.0"]
            ver = await client.read_resource(f"registry://{index}/alpha/1.0")
            assert json.loads(ver.contents[0].text)["version"] == "1.0"

            patch = await client.call_tool(
                "diff", {"old_path": old, "new_path": site.releases["alpha-1.1"].wheel.name}
            )
            assert not patch.is_error, patch.content
            uri = patch.structured_content["uri"]
            assert uri.startswith(f"registry://{index}/-/patch/")
            assert uri in patch.content[0].text  # the patch is a resource, not inlined text
            blob = (await client.read_resource(uri)).contents[0]
            assert blob.mime_type == "application/vnd.registry-core.patch"
            raw = base64.b64decode(blob.blob)
            assert len(raw) == patch.structured_content["size"]
            assert hashlib.sha256(raw).hexdigest() == uri.rsplit("/", 1)[1]

            fetched = await client.call_tool("fetch", {"project": "alpha", "have_path": old})
            assert not fetched.is_error, fetched.content
            art = (await client.read_resource(fetched.structured_content["uri"])).contents[0]
            assert base64.b64decode(art.blob) == new_bytes
            assert fetched.structured_content["how"] == "delta"
            assert fetched.structured_content["mime_type"] == "application/zip"

            inspected = await client.call_tool("inspect_patch", {"patch": uri})
            assert inspected.structured_content["size"] == len(raw)

    anyio.run(go)


def test_create_server_on_a_directory(site, work) -> None:
    server = create_server(name="rc", directory=site.directory, roots=[work])

    async def go() -> None:
        async with Client(server) as client:
            found = await client.call_tool("search_projects", {"query": "be"})
            assert found.structured_content["projects"] == ["beta"]
            ver = await client.read_resource("registry://local/beta/1.0")
            assert json.loads(ver.contents[0].text)["summary"] == "a test package"

    anyio.run(go)


def test_register_refuses_other_servers(site) -> None:
    with pytest.raises(TypeError, match="MCPServer"):
        register(object(), registry=site.url)  # type: ignore[arg-type]


def test_import_is_lazy() -> None:
    import subprocess

    code = (
        "import registry_core, sys; print('mcp' in sys.modules, 'registry_core.mcp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
