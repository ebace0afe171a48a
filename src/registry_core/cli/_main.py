"""The ``registry-core`` command: parser, dispatch, and the one-line error convention.

Each command prints its result on stdout (one summary line for the file commands) and exits 2
with one line on stderr on a registry-core error. Flags are resolved here, once, where the
process starts (``FeatureFlags.load()``: ``REGISTRY_CORE_FLAGS`` and the nearest
``pyproject.toml``), and passed down as ``args.flags``; the library itself never looks them up.
Building the parser imports no command's implementation: each command loads its parts when run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from .._version import __version__
from ..errors import RegistryCoreError


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (``prog: error: message (see --help)``), exit 2,
    like every other failure of the command; sub-command parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``registry-core`` parser (cheap: no server, index or proxy imported)."""
    from ._audit import add_audit_parser
    from ._cache import add_cache_parser
    from ._config import add_config_parser
    from ._delta import add_delta_parsers
    from ._index import add_index_parser
    from ._keys import add_keys_parser
    from ._mcp import add_mcp_parser
    from ._ml import add_ml_parser
    from ._proxy import add_proxy_parser
    from ._roles import add_role_parser
    from ._security import add_security_parser
    from ._serve import add_serve_parser
    from ._token import add_token_parser

    parser = _Parser(
        prog="registry-core", description="Bandwidth-saving package updates for registries."
    )
    parser.add_argument("--version", action="version", version=f"registry-core {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_delta_parsers(sub)
    add_serve_parser(sub)
    add_token_parser(sub)
    add_role_parser(sub)
    add_index_parser(sub)
    add_proxy_parser(sub)
    add_security_parser(sub)
    add_keys_parser(sub)
    add_mcp_parser(sub)
    add_config_parser(sub)
    add_audit_parser(sub)
    add_cache_parser(sub)
    add_ml_parser(sub)
    return parser


def _load_flags() -> Any:
    """The process's flags, resolved once here at the edge (env + nearest pyproject.toml)."""
    from ..flags import FeatureFlags

    return FeatureFlags.load()


@contextmanager
def _one_line_errors(command: str) -> Iterator[None]:
    try:
        yield
    except (RegistryCoreError, OSError) as exc:
        print(f"registry-core {command}: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except MemoryError:
        print(
            f"registry-core {command}: error: out of memory (the input needs more memory "
            "than this machine has; the limits in docs/security.md bound untrusted input)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``registry-core`` command; returns its exit status (2 on any error)."""
    args = build_parser().parse_args(argv)
    try:
        with _one_line_errors(getattr(args, "command_name", args.command)):
            args.flags = _load_flags()
            return int(args.func(args) or 0)
    except SystemExit as exc:
        return int(exc.code or 0)
