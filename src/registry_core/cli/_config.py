"""``registry-core config validate | show | migrate``: configuration files (schema v2).

``validate FILE`` checks everything a server would (the schema, cross references and the
``[flags]`` table against the flag catalogue) and prints one summary line; ``show FILE`` prints
the normalized v2 TOML (defaults written out; a Config holds no secret, so none can be shown);
``migrate [-o OUT [--force]] -- serve DIR [serve options]`` turns a serve command line (version
1) into a v2 file, written atomically, never over an existing file without ``--force``.
``_main.py`` calls ``add_config_parser(subparsers)``; ``run_config(args)`` returns the exit
status: 0, or 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

__all__ = ["add_config_parser", "run_config"]


def add_config_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``config`` command (validate, show, migrate) to an argparse subparsers object."""
    p = subparsers.add_parser(
        "config",
        help="validate, show or migrate a configuration file (schema v2)",
        description="Configuration files, schema v2 (docs/configuration.md): validate one, "
        "show it normalized, or migrate a serve command line (version 1) to one.",
    )
    sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    v = sub.add_parser(
        "validate",
        help="check a configuration file; one line naming the key and line of a problem",
    )
    v.add_argument("file", help="the configuration file (TOML, version = 2)")
    s = sub.add_parser("show", help="print the normalized configuration (defaults written out)")
    s.add_argument("file", help="the configuration file (TOML, version = 2)")
    m = sub.add_parser(
        "migrate",
        help="write the v2 configuration of a serve command line",
        description="Turn `registry-core serve DIR [options]` into a v2 configuration file: "
        "the tenant 'default' over DIR, served at / with anonymous read, exactly as serve does "
        "(no file moves). Example: registry-core config migrate -o registry.toml -- serve "
        "/srv/index --port 8443 --self-signed",
    )
    m.add_argument("-o", "--output", help="write here (atomically) instead of stdout")
    m.add_argument(
        "--force", action="store_true", help="replace OUTPUT if it exists (refused otherwise)"
    )
    m.add_argument(
        "serve_argv",
        nargs=argparse.REMAINDER,
        metavar="-- serve DIR ...",
        help="the serve command line after --",
    )
    for parser in (v, s, m):
        parser.set_defaults(func=run_config, command_name=f"config {parser.prog.split()[-1]}")
    p.set_defaults(func=run_config, command_name="config")
    return p


def _fail(args: argparse.Namespace, message: object) -> int:
    name = getattr(args, "command_name", "config")
    print(f"registry-core {name}: error: {message}", file=sys.stderr, flush=True)
    return 2


def _check_flags(config: Any, text: str) -> None:
    """The [flags] table against the catalogue (config itself is a leaf and cannot)."""
    from ..config._locate import key_lines, line_of
    from ..config._parse import dotted
    from ..errors import ConfigError, FlagConfigError, UnknownFlagError
    from ..flags import CATALOGUE
    from ..flags._sources import parse_mapping

    for name, value in config.flags.items():
        try:
            parse_mapping({name: value}, CATALOGUE, "flags")
        except (FlagConfigError, UnknownFlagError) as exc:
            message = str(exc).removeprefix("flags: ")
            raise ConfigError(
                message,
                source=config.source,
                line=line_of(key_lines(text), ("flags", name)),
                key=dotted(("flags", name)),
            ) from None


def _summary(config: Any) -> str:
    parts = []
    for tenant in config.tenants.values():
        n = len(tenant.indexes)
        extras = [f"{n} {'index' if n == 1 else 'indexes'}", f"plan {tenant.plan}"]
        if tenant.oidc is not None:
            extras.append("OIDC")
        if tenant.saml is not None:
            extras.append("SAML")
        if tenant.publishers:
            extras.append(f"{len(tenant.publishers)} trusted publisher(s)")
        parts.append(f"{tenant.name} ({', '.join(extras)})")
    n = len(config.tenants)
    return f"version {config.version}; {n} tenant{'s' if n != 1 else ''}: " + "; ".join(parts)


def _load(path: str) -> tuple[Any, str]:
    """(Config, its text): the file read once."""
    from ..config import parse
    from ..config._parse import read_text

    text = read_text(path)
    return parse(text, source=path, base_dir=os.path.dirname(os.path.abspath(path))), text


def run_config(args: argparse.Namespace) -> int:
    """Run one ``config`` action; 0 on success, 2 with one line on stderr otherwise."""
    from ..errors import RegistryCoreError

    try:
        action = getattr(args, "config_command", None)
        if action == "validate":
            config, text = _load(args.file)
            _check_flags(config, text)
            print(f"{args.file}: valid: {_summary(config)}")
            return 0
        if action == "show":
            from ..config import dump

            config, _ = _load(args.file)
            sys.stdout.write(dump(config))
            return 0
        if action == "migrate":
            return _migrate(args)
        return _fail(args, "expected validate, show or migrate")
    except (RegistryCoreError, OSError) as exc:
        return _fail(args, exc)


def _migrate(args: argparse.Namespace) -> int:
    from .._util import AtomicFile
    from ..config import dump, from_serve_args

    argv = list(args.serve_argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        return _fail(args, "give the serve command line after --: -- serve DIR [options]")
    config = from_serve_args(argv)
    directory = config.storage.directory
    if not os.path.isdir(directory):
        return _fail(args, f"{directory}: not a directory (serve would refuse it)")
    text = (
        f"# registry-core config migrate -- {shlex.join(argv)}\n"
        "# version 1 (the serve command line) as schema v2: docs/configuration.md\n" + dump(config)
    )
    if args.output is None:
        sys.stdout.write(text)
        return 0
    if not args.force and os.path.lexists(args.output):
        return _fail(args, f"{args.output} exists; give --force to replace it")
    try:
        with AtomicFile(args.output, overwrite=args.force) as f:
            f.write(text.encode("utf-8"))
    except FileExistsError:
        return _fail(args, f"{args.output} exists; give --force to replace it")
    print(f"{args.output}: written: {_summary(config)}")
    return 0
