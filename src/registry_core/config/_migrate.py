"""Version 1 -> 2: what ``registry-core serve DIR [options]`` means, as a schema v2 Config.

Version 1 is the serve command line itself: one index stored at DIR, served at ``/`` with
anonymous read, its tenant store in ``DIR/.registry-core/``. As v2 that is the tenant
"default" (``default_tenant``, public) whose storage directory is the ROOT itself and whose one
index "main" lives in that directory at path ``""`` -- no file moves, every URL stays.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any, NoReturn

from ..errors import ConfigError
from ._dump import dump
from ._parse import parse
from ._schema import (
    SCHEMA_VERSION,
    Config,
    IndexConfig,
    ServerConfig,
    StorageConfig,
    TenantConfig,
)

__all__ = ["DEFAULT_TENANT", "from_serve_args", "from_serve_namespace", "single_tenant"]

DEFAULT_TENANT = "default"
_SOURCE = "serve command line"

#: serve option dest -> ServerConfig field (the rest: directory, tls group, no_http3).
_OPTIONS = {
    "host": "host",
    "port": "port",
    "certfile": "certfile",
    "keyfile": "keyfile",
    "sign": "sign",
    "max_connections": "max_connections",
    "max_connections_per_ip": "max_connections_per_ip",
    "read_timeout": "read_timeout",
    "write_timeout": "write_timeout",
    "max_requests_per_ip": "max_requests_per_ip",
}
#: Every dest of the serve parser that from_serve_args understands (a test pins this list to
#: the parser, so a new serve option cannot be dropped silently).
SERVE_DESTS = frozenset({*_OPTIONS, "directory", "config", "self_signed", "plain_http", "no_http3"})
_IGNORED = frozenset({"func", "command"})


def _option(field: str) -> str:
    if field == "tls":
        return "--self-signed/--plain-http/--certfile"
    if field == "http3":
        return "--no-http3"
    return "--" + field.replace("_", "-")


def single_tenant(directory: str | os.PathLike[str], **server_options: Any) -> Config:
    """What ``serve DIR`` serves: the v1 single default tenant over ``directory``.
    ``server_options`` are :class:`ServerConfig` fields; they are validated as a file would be
    (ConfigError naming the serve option)."""
    unknown = sorted(set(server_options) - set(ServerConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"unknown server option(s): {', '.join(unknown)}", source=_SOURCE)
    tenant = TenantConfig(
        name=DEFAULT_TENANT,
        public=True,
        indexes=(IndexConfig("main", "", directory="."),),
        directory=".",
    )
    config = Config(
        version=SCHEMA_VERSION,
        server=ServerConfig(**server_options),
        storage=StorageConfig(os.fspath(directory)),
        tenants=MappingProxyType({DEFAULT_TENANT: tenant}),
        source=_SOURCE,
        default_tenant=DEFAULT_TENANT,
    )
    try:  # the one validation: exactly what a file saying the same would get
        checked = parse(dump(config), source=_SOURCE)
    except ConfigError as exc:
        field = exc.key.rsplit(".", 1)[-1]
        where = exc.source + (f":{exc.line}" if exc.line is not None else "")
        prefix = ": ".join(part for part in (where, exc.key) if part) + ": "
        text = str(exc).removeprefix(prefix)
        if exc.key.startswith("server."):
            raise ConfigError(text, source=_SOURCE, key=_option(field)) from None
        raise ConfigError(text, source=_SOURCE, key=exc.key) from None
    return checked


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message, source=_SOURCE)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ConfigError((message or "").strip() or "not a serve command line", source=_SOURCE)


def serve_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """(a parser of ``registry-core serve ...``, its ``serve`` sub-parser): the serve command's
    own option definitions (one copy), raising ConfigError instead of exiting."""
    from ..cli._serve import add_serve_parser

    parser = _Parser(prog="registry-core", add_help=False)
    sub = parser.add_subparsers(dest="command", required=True)
    return parser, add_serve_parser(sub)


def from_serve_args(argv: Sequence[str]) -> Config:
    """A serve command line (``["serve", "DIR", "--port", "8443", "--self-signed"]``; a leading
    ``registry-core`` is allowed) as a v2 Config. Paths become absolute, so the configuration
    file can live anywhere."""
    args = list(argv)
    if args[:1] == ["registry-core"]:
        args = args[1:]
    if args[:1] != ["serve"]:
        raise ConfigError(
            "expected a serve command line: serve DIR [options] (after --)", source=_SOURCE
        )
    if any(a in ("-h", "--help") for a in args):
        raise ConfigError("--help is not a serve option to migrate", source=_SOURCE)
    parser, serve = serve_parser()
    ns = parser.parse_args(args)
    for dest, value in vars(ns).items():
        if dest in SERVE_DESTS or dest in _IGNORED:
            continue
        if value != serve.get_default(dest):
            raise ConfigError(
                f"--{dest.replace('_', '-')} has no configuration-file equivalent yet",
                source=_SOURCE,
            )
    if getattr(ns, "config", None) is not None:
        raise ConfigError(
            "serve --config already reads a configuration file: nothing to migrate",
            source=_SOURCE,
        )
    if getattr(ns, "directory", None) is None:
        raise ConfigError("the serve command line names no DIR", source=_SOURCE)
    if not (ns.certfile or ns.self_signed or ns.plain_http):
        raise ConfigError(
            "one of --certfile, --self-signed or --plain-http is required (as serve says)",
            source=_SOURCE,
        )

    return from_serve_namespace(ns, absolute=True)


def from_serve_namespace(args: argparse.Namespace, *, absolute: bool = False) -> Config:
    """The parsed ``serve`` arguments (``args.directory``, ``args.port``, ...) as the v1
    single-tenant Config: the one mapping of serve options to ``[server]`` keys, used by
    :func:`from_serve_args` and available to ``serve`` itself. ``absolute``: make the paths
    absolute."""

    def path(value: str | None) -> str | None:
        return None if value is None or not absolute else os.path.abspath(value)

    options: dict[str, Any] = {
        field: getattr(args, dest) for dest, field in _OPTIONS.items() if hasattr(args, dest)
    }
    if absolute:
        options["certfile"] = path(options.get("certfile"))
        options["keyfile"] = path(options.get("keyfile"))
    if getattr(args, "plain_http", False):
        options["tls"] = "plain-http"
    elif options.get("certfile") is not None or options.get("keyfile") is not None:
        options["tls"] = "files"
    else:
        options["tls"] = "self-signed"
    options["http3"] = not getattr(args, "no_http3", False)
    directory = args.directory
    return single_tenant(os.path.abspath(directory) if absolute else directory, **options)
