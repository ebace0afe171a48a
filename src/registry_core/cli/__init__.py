"""The ``registry-core`` command line; nothing in the library imports it.

``main(argv)`` parses and runs one command and returns its exit status (the ``registry-core``
entry point); ``python -m registry_core.cli`` does the same.
"""

from __future__ import annotations

from ._main import Progress, build_parser, main

__all__ = ["Progress", "build_parser", "main"]
