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


#: Top-level command -> (module, the function adding its parser), in ``--help`` order. A
#: command line naming one of them imports that module alone (``registry-core cache run``
#: does not pay for the server, index or ML parsers); tests check this table against the
#: modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "diff": ("_delta", "add_delta_parsers"),
    "apply": ("_delta", "add_delta_parsers"),
    "info": ("_delta", "add_delta_parsers"),
    "serve": ("_serve", "add_serve_parser"),
    "token": ("_token", "add_token_parser"),
    "role": ("_roles", "add_role_parser"),
    "index": ("_index", "add_index_parser"),
    "proxy": ("_proxy", "add_proxy_parser"),
    "security": ("_security", "add_security_parser"),
    "keys": ("_keys", "add_keys_parser"),
    "mcp": ("_mcp", "add_mcp_parser"),
    "config": ("_config", "add_config_parser"),
    "audit": ("_audit", "add_audit_parser"),
    "cache": ("_cache", "add_cache_parser"),
    "ml": ("_ml", "add_ml_parser"),
}


def _command_of(argv: Sequence[str] | None) -> str | None:
    """The command an argument list names (its first argument, when that is a command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return args[0] if args and args[0] in COMMANDS else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``registry-core`` parser: every command's, or only ``command``'s when given (cheap
    either way: no server, index or proxy imported, only the argument definitions)."""
    import importlib

    parser = _Parser(
        prog="registry-core", description="Bandwidth-saving package updates for registries."
    )
    parser.add_argument("--version", action="version", version=f"registry-core {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = [COMMANDS[command]] if command is not None else list(dict.fromkeys(COMMANDS.values()))
    for module, function in dict.fromkeys(wanted):
        getattr(importlib.import_module(f"{__package__}.{module}"), function)(sub)
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
    args = build_parser(_command_of(argv)).parse_args(argv)
    try:
        with _one_line_errors(getattr(args, "command_name", args.command)):
            args.flags = _load_flags()
            return int(args.func(args) or 0)
    except SystemExit as exc:
        return int(exc.code or 0)
