"""The MCP tests' shared fixtures: a real index on loopback per module (``site``) and a
workspace root holding two of its wheels (``work``); a module may define its own."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _mcp_harness import site, work  # noqa: F401
