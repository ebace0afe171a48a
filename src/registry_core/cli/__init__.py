"""The ``registry-core`` command line; nothing in the library imports it.

``main(argv)`` parses and runs one command and returns its exit status (the ``registry-core``
entry point); ``python -m registry_core.cli`` does the same. One module per command group:
``_delta`` (diff, apply, info), ``_serve`` (serve), ``_token`` (token), ``_roles`` (role),
``_index`` (index, and the helpers that open a v1 directory or a v2 tenant), ``_proxy`` (proxy,
proxy warm), ``_keys`` (keys), ``_security`` (security), ``_mcp`` (mcp), ``_config`` (config),
``_audit`` (audit verify, show, keys).
"""

from __future__ import annotations

from ._main import build_parser, main
from ._output import Progress

__all__ = ["Progress", "build_parser", "main"]
