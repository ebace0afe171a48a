"""The SDK side: :func:`register` mounts the tools and resources on an ``MCPServer``.

Each tool is a thin closure over :class:`~registry_core.mcp._tools.RegistryTools`: its typed
parameters become the input schema, its result dataclass the output schema, and the result
carries the structured content plus a one-line human summary. A
:class:`~registry_core.errors.RegistryCoreError` (or a bad value) becomes an MCP tool error
with its message; anything else the SDK reports as a bare "Error executing tool", never a
traceback. The configured token is scrubbed from every message.

A local index (``directory=`` or ``index=``) is one index of one tenant (``tenant=``,
``index_name=``): the tools act as the configured token's principal (checked at start: a bad
token raises here, so the server never starts) or as the local operator, and every call goes
through the index's decision point (``RegistryTools``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from ..errors import NotFoundError, ProjectNotFoundError, RegistryCoreError
from . import _tools as t
from ._resources import PATCH_MIME
from ._tools import RegistryTools

if TYPE_CHECKING:
    from ..audit import AuditSink
    from ..auth import TenantStore
    from ..config import Config
    from ..flags import FeatureFlags
    from ..index import Index

__all__ = ["TOOL_NAMES", "create_server", "register"]

TOOL_NAMES = (
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
)

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

Project = Annotated[str, Field(description="project name", max_length=200)]
Version = Annotated[str | None, Field(description="version (default: latest)", max_length=100)]
Path_ = Annotated[str, Field(description="file path inside a root", max_length=4096)]
OutPath = Annotated[
    str | None, Field(description="write here too (needs allow_write)", max_length=4096)
]


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _result(value: Any, summary: str) -> CallToolResult:
    data = (
        dataclasses.asdict(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type)
        else value
    )
    return CallToolResult(content=[TextContent(type="text", text=summary)], structured_content=data)


def _guard(
    tools: RegistryTools, fn: Callable[..., Awaitable[CallToolResult]]
) -> Callable[..., Awaitable[CallToolResult]]:
    """Turn our errors into MCP tool errors with a clear (token-free) message."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            return await fn(*args, **kwargs)
        except (RegistryCoreError, ValueError, LookupError, OSError) as exc:
            msg = str(exc) or exc.__class__.__name__
            if isinstance(exc, OSError) and not isinstance(exc, RegistryCoreError):
                msg = f"{exc.__class__.__name__}: {exc.strerror or 'I/O error'}"
            msg = " ".join(line.strip() for line in msg.splitlines() if line.strip())
            raise ToolError(_scrub(msg[:2000], tools._token)) from None

    return wrapper


def _strip_titles(schema: Any, *, names: bool = False) -> None:
    """Drop pydantic's generated ``title`` keys (they repeat the property names) in place;
    ``names``: ``schema`` maps property names to schemas (a property may be called title)."""
    if isinstance(schema, dict):
        if not names:
            schema.pop("title", None)
        for key, value in schema.items():
            _strip_titles(value, names=not names and key in ("properties", "$defs"))
    elif isinstance(schema, list):
        for item in schema:
            _strip_titles(item)


def _compact_schemas(server: MCPServer, name: str) -> None:
    """Smaller tools/list entries (agents pay for every byte in context); validation is
    unchanged: it runs on the models, and a schema without titles accepts the same values."""
    manager = getattr(server, "_tool_manager", None)
    tool = manager.get_tool(name) if manager is not None else None
    if tool is None:  # another SDK layout: keep the SDK's schemas as they are
        return
    _strip_titles(tool.parameters)
    _strip_titles(tool.output_schema)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n} B"


def register(
    server: MCPServer,
    *,
    registry: str | None = None,
    directory: str | os.PathLike[str] | None = None,
    roots: Sequence[str | os.PathLike[str]] = (),
    allow_write: bool = False,
    token: str | None = None,
    verify: bool | str = True,
    flags: FeatureFlags | None = None,
    max_bytes: int = 64 << 20,
    cache: Any = None,
    tenant: str = "default",
    index_name: str = "main",
    tenant_store: TenantStore | str | os.PathLike[str] | None = None,
    index: Index | None = None,
    audit: AuditSink | None = None,
    config: Config | str | os.PathLike[str] | None = None,
) -> list[str]:
    """Add the registry tools and resources to ``server`` (an SDK ``MCPServer``).

    ``registry`` (a URL: the remote server decides who may do what) or a local index:
    ``config`` (a v2 config file or Config: index ``index_name`` of tenant ``tenant``, with the
    config's role bindings, as the server decides), ``directory`` (tenant ``tenant``, index
    ``index_name``; a non-default tenant's directory is ``ROOT/<tenant>/<index>`` with its
    store at ``ROOT/<tenant>/.registry-core/``, or give ``tenant_store``; stored bindings only)
    or an open ``index``. ``token``: the principal of a local index's tools
    (authenticated now: AuthenticationError / TokenExpiredError if it is bad), the upload
    token of a remote one; none: the local operator. ``audit`` receives the index's events
    (denials included)."""
    if not isinstance(server, MCPServer):
        raise TypeError(
            "register() needs an mcp.server.mcpserver.MCPServer (the SDK's FastMCP-style "
            f"server), not {type(server).__name__}"
        )
    tools = RegistryTools(
        registry=registry,
        directory=directory,
        roots=roots,
        allow_write=allow_write,
        token=token,
        verify=verify,
        flags=flags,
        max_bytes=max_bytes,
        cache=cache,
        index=index,
        tenant=tenant,
        index_name=index_name,
        tenant_store=tenant_store,
        audit=audit,
        config=config,
    )
    server._registry_core_tools = tools  # type: ignore[attr-defined]  # for tests and aclose

    def add(
        fn: Callable[..., Awaitable[CallToolResult]], description: str, ann: Any = _READ
    ) -> None:
        server.add_tool(
            _guard(tools, fn),
            name=fn.__name__.rstrip("_"),
            description=description,
            annotations=ann,
            structured_output=True,
        )
        _compact_schemas(server, fn.__name__.rstrip("_"))

    async def search_projects(
        query: Annotated[str, Field(description="substring of the name", max_length=200)] = "",
        limit: Annotated[int, Field(ge=1, le=1000)] = 50,
    ) -> Annotated[CallToolResult, t.SearchResult]:
        r = await tools.search_projects(query, limit)
        return _result(r, f"{r.total} projects match {query!r}; showing {len(r.projects)}")

    async def list_versions(project: Project) -> Annotated[CallToolResult, t.VersionsResult]:
        r = await tools.list_versions(project)
        return _result(r, f"{r.project}: {len(r.versions)} versions, latest {r.latest}")

    async def project_metadata(
        project: Project, version: Version = None
    ) -> Annotated[CallToolResult, t.MetadataResult]:
        r = await tools.project_metadata(project, version)
        return _result(r, f"{r.project} {r.version}: {len(r.files)} files, {r.summary or ''}")

    async def plan_upgrade(
        requirements: Annotated[
            list[Annotated[str, Field(max_length=1000)]],
            Field(description="requirement lines", min_length=1, max_length=1000),
        ],
        installed: Annotated[
            dict[str, str] | None, Field(description="installed name -> version")
        ] = None,
        python_version: Annotated[str | None, Field(max_length=20)] = None,
        platform_tags: Annotated[
            list[str] | None, Field(description="tags, best first (default: this interpreter)")
        ] = None,
        compute_deltas: Annotated[bool, Field(description="diff when not precomputed")] = False,
    ) -> Annotated[CallToolResult, t.PlanResult]:
        r = await tools.plan_upgrade(
            requirements, installed, python_version, platform_tags, compute_deltas
        )
        return _result(
            r,
            f"{r.changes} files change: {_mb(r.transfer_bytes)} to transfer "
            f"({_mb(r.full_bytes)} as full files)",
        )

    async def diff(
        old_path: Path_, new_path: Path_, output_path: OutPath = None
    ) -> Annotated[CallToolResult, t.PatchResult]:
        r = await tools.diff(old_path, new_path, output_path)
        return _result(r, f"{r.method} patch {_mb(r.size)} ({100 * r.saved:.1f}% saved): {r.uri}")

    async def apply(
        old_path: Path_,
        patch: Annotated[str, Field(description="patch resource URI or path", max_length=4096)],
        output_path: OutPath = None,
    ) -> Annotated[CallToolResult, t.ArtifactResult]:
        r = await tools.apply(old_path, patch, output_path)
        return _result(r, f"rebuilt {_mb(r.size)} sha256 {r.sha256[:16]}: {r.uri}")

    async def inspect_patch(
        patch: Annotated[str, Field(description="patch resource URI or path", max_length=4096)],
    ) -> Annotated[CallToolResult, t.PatchResult]:
        r = await tools.inspect_patch(patch)
        return _result(r, f"{r.method} patch {_mb(r.size)} -> {_mb(r.target_size)}")

    async def fetch(
        project: Project,
        version: Version = None,
        filename: Annotated[str | None, Field(max_length=300)] = None,
        have_path: Annotated[
            str | None, Field(description="older file to patch from", max_length=4096)
        ] = None,
        output_path: OutPath = None,
    ) -> Annotated[CallToolResult, t.ArtifactResult]:
        r = await tools.fetch(project, version, filename, have_path, output_path)
        return _result(
            r, f"{r.filename}: {_mb(r.size)} ({r.how}, {_mb(r.transferred_bytes)} moved): {r.uri}"
        )

    async def publish(path: Path_) -> Annotated[CallToolResult, t.PublishResult]:
        r = await tools.publish(path)
        return _result(r, f"published {r.filename} ({_mb(r.size)})")

    async def verify_(
        path: Path_, filename: Annotated[str | None, Field(max_length=300)] = None
    ) -> Annotated[CallToolResult, t.VerifyResult]:
        r = await tools.verify(path, filename)
        return _result(r, f"{r.filename}: {'OK' if r.ok else 'FAILED'}: {r.reason}")

    async def security_report() -> Annotated[CallToolResult, dict[str, Any]]:
        r = await tools.security_report()
        return _result(
            r,
            f"compliance {100 * r['compliance_score']:.1f}%, PQC coverage "
            f"{100 * r['pqc_coverage']:.1f}%, threat {r['quantum_threat_score']:.3f}",
        )

    async def flags_(
        overrides: Annotated[
            dict[str, bool] | None, Field(description="set for this server (allow_write)")
        ] = None,
    ) -> Annotated[CallToolResult, t.FlagsResult]:
        r = await tools.flags_tool(overrides)
        on = sum(1 for f in r.flags if f.value == "True")
        return _result(r, f"{len(r.flags)} flags, {on} on; overridden: {r.overridden or 'none'}")

    async def cache_stats() -> Annotated[CallToolResult, t.CacheStatsResult]:
        r = await tools.cache_stats()
        return _result(r, f"{r.resources['entries']} resources held ({_mb(r.resources['bytes'])})")

    add(search_projects, "Find projects in the index by name substring.")
    add(list_versions, "List a project's versions, newest first.")
    add(project_metadata, "Core metadata and files of one project version.")
    add(
        plan_upgrade,
        "For requirements over installed versions: files that change, full vs delta bytes, base.",
    )
    add(diff, "Make a patch between two files; returns it as a resource.", _WRITE)
    add(apply, "Apply a patch to a file; the verified result is a resource.", _WRITE)
    add(inspect_patch, "Header facts of a patch (sizes, digests, method).")
    add(fetch, "Download a file (delta-aware, sha256-checked) as a resource.", _WRITE)
    add(publish, "Upload a wheel or sdist to the index (needs allow_write and a token).", _WRITE)
    add(verify_, "Check a file's sha256 against the index.")
    add(security_report, "The signed registry's security figures (local index only).")
    add(flags_, "Feature flags and their sources; overrides need allow_write.", _WRITE)
    add(cache_stats, "Counters of this server's resource store, transport and build cache.")

    _register_resources(server, tools)
    return list(TOOL_NAMES)


def _register_resources(server: MCPServer, tools: RegistryTools) -> None:
    name = tools.name

    async def resource_call(fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await fn()
        except (ProjectNotFoundError, NotFoundError) as exc:
            raise ResourceNotFoundError(_scrub(str(exc), tools._token)) from None
        except (RegistryCoreError, ValueError, OSError) as exc:
            raise ResourceError(_scrub(str(exc), tools._token)) from None

    def blob_reader(kind: str) -> Callable[[str], Awaitable[bytes]]:
        async def read(sha256: str) -> bytes:
            got = tools.blobs.get(kind, sha256)
            if got is None:
                raise ResourceNotFoundError(f"no {kind} {sha256[:64]} held (evicted or never made)")
            return got.data

        return read

    async def project(project: str) -> str:
        data = await resource_call(lambda: tools.project_resource(project))
        return json.dumps(data)

    async def version(project: str, version: str) -> str:
        data = await resource_call(lambda: tools.version_resource(project, version))
        return json.dumps(data)

    server.resource(
        f"registry://{name}/-/patch/{{sha256}}",
        name="patch",
        description="A patch a tool made.",
        mime_type=PATCH_MIME,
    )(blob_reader("patch"))
    server.resource(
        f"registry://{name}/-/artifact/{{sha256}}",
        name="artifact",
        description="A file a tool fetched or rebuilt (zip or gzip).",
        mime_type="application/octet-stream",
    )(blob_reader("artifact"))
    server.resource(
        f"registry://{name}/{{project}}",
        name="project",
        description="A project's versions (JSON).",
        mime_type="application/json",
    )(project)
    server.resource(
        f"registry://{name}/{{project}}/{{version}}",
        name="version",
        description="One version's core metadata and files (JSON).",
        mime_type="application/json",
    )(version)


def create_server(*, name: str = "registry-core", **kwargs: Any) -> MCPServer:
    """An ``MCPServer`` with the registry tools and resources (``register``'s arguments); a
    local index's server names its tenant and index in its instructions."""
    from .._version import __version__

    instructions = None
    index = kwargs.get("index")
    local = index is not None or kwargs.get("directory") or kwargs.get("config")
    if kwargs.get("registry") is None and local:
        tenant = index.tenant if index is not None else kwargs.get("tenant", "default")
        index_name = index.name if index is not None else kwargs.get("index_name", "main")
        instructions = f"Package index {index_name!r} of tenant {tenant!r}."
    server = MCPServer(name, instructions=instructions, version=__version__)
    register(server, **kwargs)
    return server
