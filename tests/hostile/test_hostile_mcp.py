"""Hostile calls to the MCP tools through the SDK's real client (in-memory session): malformed
arguments, traversal attempts, oversized inputs, write tools without permission, resources with
hostile URIs, and a lying upstream. Each must come back as an MCP error with a clear one-line
message (no traceback, no token), change nothing on disk or in the index, and leave the server
answering the next call."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _mcp_harness import Site, make_roots, start_site
from mcp import Client, MCPError
from registry_core.mcp import create_server
from registry_core.server import start_server

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s: Site = start_site(tmp_path_factory.mktemp("mcp-hostile"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def work(tmp_path, site) -> Path:
    """The usual workspace plus an escaping symlink and a file over the size bound."""
    root = make_roots(tmp_path, site)
    (tmp_path / "outside.whl").write_bytes(b"outside the root")
    (root / "escape.whl").symlink_to(tmp_path / "outside.whl")
    (root / "big.bin").write_bytes(b"x" * 5000)
    return root


def _snapshot(site: Site, work: Path) -> tuple[Any, ...]:
    files = sorted(
        (p.relative_to(work).as_posix(), p.read_bytes() if p.is_file() else b"")
        for p in work.rglob("*")
    )
    index = [
        (r.filename, r.sha256) for p in site.index.projects() for r in site.index.files(p.name)
    ]
    return tuple(files), tuple(sorted(index)), site.index.serial


def _check_error(result: Any, *needles: str, token: str = "") -> str:
    assert result.is_error, result
    text = " ".join(c.text for c in result.content if getattr(c, "text", None))
    assert "Traceback" not in text and 'File "' not in text
    if "validation error" not in text:  # the SDK's schema check lists fields, one per line
        assert "\n" not in text.strip()
    if token:
        assert token not in text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def test_malformed_oversized_traversal_and_writes(site, work) -> None:
    server = create_server(
        registry=site.url, roots=[work], token=site.token, max_bytes=4096
    )  # allow_write off
    a10, a11 = (site.releases[k].wheel.name for k in ("alpha-1.0", "alpha-1.1"))
    before = _snapshot(site, work)
    tok = site.token

    async def go() -> None:
        async with Client(server) as c:
            calls: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
                # malformed arguments (schema and value checks)
                ("list_versions", {}, ("project",)),
                ("list_versions", {"project": 7}, ("project",)),
                ("list_versions", {"project": "../etc"}, ("not a valid project name",)),
                ("list_versions", {"project": "x" * 10_000}, ("project",)),
                ("search_projects", {"limit": -1}, ("limit",)),
                ("plan_upgrade", {"requirements": "alpha"}, ("requirements",)),
                ("plan_upgrade", {"requirements": []}, ("requirements",)),
                ("plan_upgrade", {"requirements": ["alpha"] * 1001}, ("requirements",)),
                ("plan_upgrade", {"requirements": ["al pha ((("]}, ("not a requirement",)),
                ("plan_upgrade", {"requirements": ["alpha"], "installed": {"alpha": 3}}, ()),
                ("project_metadata", {"project": "alpha", "version": "\x00"}, ("version",)),
                ("fetch", {"project": "alpha", "version": "not a version!"}, ()),
                ("inspect_patch", {"patch": "registry://elsewhere/-/patch/" + "0" * 64}, ()),
                ("inspect_patch", {"patch": a10}, ("patch",)),  # a wheel is not a patch
                ("apply", {"old_path": a10, "patch": a11}, ()),
                ("flags", {"overrides": {"NOT_A_FLAG": True}}, ("allow_write",)),
                # traversal
                ("diff", {"old_path": "../outside.whl", "new_path": a11}, ("'..'",)),
                ("diff", {"old_path": "/etc/passwd", "new_path": a11}, ("outside",)),
                ("diff", {"old_path": "escape.whl", "new_path": a11}, ("outside",)),
                ("verify", {"path": "sub/../../outside.whl"}, ("'..'",)),
                ("fetch", {"project": "alpha", "have_path": "/etc/hostname"}, ("outside",)),
                ("inspect_patch", {"patch": "../../etc/passwd"}, ("'..'",)),
                # oversized (max_bytes=4096)
                ("diff", {"old_path": "big.bin", "new_path": a11}, ("4096-byte limit",)),
                # writes without allow_write
                ("publish", {"path": a11}, ("allow_write",)),
                ("diff", {"old_path": a10, "new_path": a11, "output_path": "p"}, ("allow_write",)),
                ("fetch", {"project": "beta", "output_path": "b.whl"}, ("allow_write",)),
                ("apply", {"old_path": a10, "patch": a11, "output_path": "o"}, ("allow_write",)),
                ("flags", {"overrides": {"DELTA_AGGREGATOR": False}}, ("allow_write",)),
                ("security_report", {}, ("local index directory",)),
                ("no_such_tool", {}, ("no_such_tool",)),
            ]
            for name, args, needles in calls:
                try:
                    result = await c.call_tool(name, args)
                except MCPError as exc:  # a protocol-level refusal is an MCP error too
                    assert "Traceback" not in str(exc) and tok not in str(exc)
                    continue
                _check_error(result, *needles, token=tok)
            async with Client(create_server(registry=site.url, max_bytes=1000)) as tiny:
                _check_error(await tiny.call_tool("fetch", {"project": "alpha"}), "1000-byte limit")
            flags = await c.call_tool("flags", {})
            state = {f["name"]: f for f in flags.structured_content["flags"]}
            assert state["DELTA_AGGREGATOR"]["source"] != "override"
            ok = await c.call_tool("list_versions", {"project": "alpha"})  # still serving
            assert not ok.is_error and ok.structured_content["latest"] == "1.1"
            for uri in (
                f"registry://{server._registry_core_tools.name}/-/patch/{'a' * 64}",
                f"registry://{server._registry_core_tools.name}/nope",
                f"registry://{server._registry_core_tools.name}/alpha/9.9",
                f"registry://{server._registry_core_tools.name}/..%2F..%2Fetc/passwd",
                "registry://other/alpha",
            ):
                with pytest.raises(MCPError) as err:
                    await c.read_resource(uri)
                assert "Traceback" not in str(err.value)

    anyio.run(go)
    assert _snapshot(site, work) == before  # nothing written, nothing uploaded


def test_write_refusals_with_allow_write(site, work) -> None:
    """Even with allow_write: a read-only token's publish (the index's decision point says no,
    even for bytes the index already has), writes through symlinks or out of the roots are
    refused."""
    reader, _ = site.index.create_token(scopes=["read:main"], description="hostile reader")
    server = create_server(directory=site.directory, roots=[work], allow_write=True, token=reader)
    a10, a11 = (site.releases[k].wheel.name for k in ("alpha-1.0", "alpha-1.1"))
    before = _snapshot(site, work)

    async def go() -> None:
        async with Client(server) as c:
            for name, args, needles in [
                ("publish", {"path": a11}, ("may not upload",)),
                (
                    "diff",
                    {"old_path": a10, "new_path": a11, "output_path": "escape.whl"},
                    ("symlink",),
                ),
                ("diff", {"old_path": a10, "new_path": a11, "output_path": "../x"}, ("'..'",)),
                ("fetch", {"project": "beta", "output_path": "/tmp/rc-mcp-x.whl"}, ("outside",)),
                ("fetch", {"project": "beta", "output_path": "nodir/x.whl"}, ("does not exist",)),
            ]:
                _check_error(await c.call_tool(name, args), *needles, token=reader)

    anyio.run(go)
    assert _snapshot(site, work) == before
    assert not os.path.exists("/tmp/rc-mcp-x.whl")


def test_wrong_token_never_echoed(site, work) -> None:
    secret = "rc-deadbeef-" + "S" * 43
    server = create_server(registry=site.url, roots=[work], allow_write=True, token=secret)
    before = _snapshot(site, work)

    async def go() -> None:
        async with Client(server) as c:
            result = await c.call_tool("publish", {"path": site.releases["alpha-1.1"].wheel.name})
            _check_error(result, "refused the upload", token=secret)
            for name in ("cache_stats", "flags"):
                out = await c.call_tool(name, {})
                assert secret not in json.dumps(out.structured_content)

    anyio.run(go)
    assert _snapshot(site, work) == before


class _LyingIndex:
    """An upstream whose project page lies: broken JSON for one project, a wrong sha256 for
    another's file (the bytes themselves are served with a correct Content-Digest)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        status, ctype, body = 404, "text/plain", b"no"
        extra: list[tuple[bytes, bytes]] = []
        if path == "/simple/broken/":
            status, ctype, body = 200, "application/vnd.pypi.simple.v1+json", b'{"meta": '
        elif path == "/simple/liar/":
            status, ctype = 200, "application/vnd.pypi.simple.v1+json"
            body = json.dumps(
                {
                    "meta": {"api-version": "1.1"},
                    "name": "liar",
                    "files": [
                        {
                            "filename": "liar-1.0-py3-none-any.whl",
                            "url": "/files/liar-1.0-py3-none-any.whl",
                            "hashes": {"sha256": "0" * 64},
                            "size": 5,
                        }
                    ],
                }
            ).encode()
        elif path == "/files/liar-1.0-py3-none-any.whl":
            status, ctype, body = 200, "application/octet-stream", b"hello"
            digest = base64.b64encode(hashlib.sha256(body).digest())
            extra.append((b"content-digest", b"sha-256=:" + digest + b":"))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def test_lying_upstream(work) -> None:
    handle = start_server(_LyingIndex(), tls=False)
    try:
        server = create_server(registry=handle.url(), roots=[work], allow_write=True)
        before = sorted(p.name for p in work.iterdir())

        async def go() -> None:
            async with Client(server) as c:
                _check_error(await c.call_tool("list_versions", {"project": "broken"}), "JSON")
                _check_error(
                    await c.call_tool("fetch", {"project": "liar", "output_path": "liar.whl"}),
                    "sha256",
                )
                _check_error(await c.call_tool("search_projects", {}), "404")

        anyio.run(go)
        assert sorted(p.name for p in work.iterdir()) == before  # the lie was never written
    finally:
        handle.stop()
