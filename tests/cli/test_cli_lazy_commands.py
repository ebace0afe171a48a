"""The command table of ``registry-core``: complete, and each command loads its module alone."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from registry_core.cli._main import COMMANDS, build_parser


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_table_names_exactly_what_each_module_registers() -> None:
    registered: dict[str, tuple[str, str]] = {}
    for module, function in dict.fromkeys(COMMANDS.values()):
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        getattr(importlib.import_module(f"registry_core.cli.{module}"), function)(sub)
        for name in sub.choices:
            registered[name] = (module, function)
    assert registered == COMMANDS


def test_full_parser_has_every_command_in_table_order() -> None:
    assert _choices(build_parser()) == list(COMMANDS)


def test_one_command_parser_imports_only_its_module() -> None:
    others = sorted({m for m, _ in COMMANDS.values()} - {"_cache"})
    code = (
        "import sys; from registry_core.cli._main import build_parser; "
        "build_parser('cache').parse_args(['cache', 'stats']); "
        f"loaded = [m for m in {others!r} if 'registry_core.cli.' + m in sys.modules]; "
        "print(','.join(loaded))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_unknown_first_argument_gets_the_full_parser_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "registry_core.cli", "no-such-command"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr and "cache" in proc.stderr
