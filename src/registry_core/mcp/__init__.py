"""MCP tools and resources over the registry, for the official ``mcp`` SDK (an optional extra).

``register(server, registry=URL | directory=DIR, roots=..., allow_write=False, ...)`` adds the
tools (search_projects, list_versions, project_metadata, plan_upgrade, diff, apply,
inspect_patch, fetch, publish, verify, security_report, flags, cache_stats) and the
``registry://{index}/{project}[/{version}]`` resources to an SDK ``MCPServer``;
``create_server(...)`` builds one. The SDK is imported when this package is: without the
extra, importing it raises ImportError naming ``pip install 'registry-core[mcp]'``.
``import registry_core`` never imports this package.
"""

from __future__ import annotations

try:
    import mcp as _mcp  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "registry_core.mcp needs the MCP SDK: pip install 'registry-core[mcp]'"
    ) from exc

from ._http import BearerTokenApp, http_app
from ._roots import Roots
from ._server import TOOL_NAMES, create_server, register
from ._tools import RegistryTools

__all__ = [
    "TOOL_NAMES",
    "BearerTokenApp",
    "RegistryTools",
    "Roots",
    "create_server",
    "http_app",
    "register",
]
