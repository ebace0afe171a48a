"""``registry-core mcp``: the registry as Model Context Protocol tools, over stdio or HTTP.

``--registry URL`` (an index's base URL, its ``/simple/`` below) or ``--dir DIR`` (a local
index directory) names what the tools read; ``registry_core.mcp.create_server`` builds the
server (the ``mcp`` extra). Over ``--transport stdio`` (the default) the MCP client spawns this
command and talks on stdin/stdout: nothing else is ever written to stdout. Over
``--transport http`` the SDK's streamable HTTP app is served at ``/mcp`` by
``registry_core.server.start_server`` behind a bearer-token check (``mcp.BearerTokenApp``):
the token comes from ``$REGISTRY_CORE_MCP_TOKEN`` or ``--token-file``, the command refuses to
start without one, compares in constant time and never prints or logs it. Plain HTTP only on a
loopback ``--listen`` address; anywhere else needs ``--certfile``/``--keyfile``.

Write tools (``publish``) are off unless ``--allow-write``; they then need the index upload
token from ``$REGISTRY_CORE_PUBLISH_TOKEN`` or ``--publish-token-file``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, RegistryCoreError
from ._run import is_loopback

__all__ = [
    "MCP_EXTRA_HINT",
    "add_mcp_parser",
    "parse_listen",
    "run_mcp",
]

MCP_EXTRA_HINT = "registry-core mcp needs the mcp extra: pip install 'registry-core[mcp]'"
TOKEN_ENV = "REGISTRY_CORE_MCP_TOKEN"
PUBLISH_TOKEN_ENV = "REGISTRY_CORE_PUBLISH_TOKEN"
DEFAULT_PORT = 8765


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; a bare ``HOST`` takes the default port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else None)
        if not sep or port_text is None:
            raise argparse.ArgumentTypeError(f"expected [IPv6]:PORT, got {text!r}")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" not in text:
        host, port_text = text, ""
    else:
        raise argparse.ArgumentTypeError(f"IPv6 addresses go in brackets: [{text}]:PORT")
    if not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if not port_text:
        return host, DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535")
    return host, port


def _read_secret(env: str, path: str | None, what: str) -> str | None:
    """The secret from ``path`` (first line, stripped) if given, else from ``$env``."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgumentError(f"{what} file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"{what} file {path}: not UTF-8 text") from None
        lines = text.strip().splitlines()
        value = lines[0].strip() if lines else ""
        if not value:
            raise InvalidArgumentError(f"{what} file {path} is empty")
        return value
    value = os.environ.get(env, "").strip()
    return value or None


def _fail(message: object) -> int:
    print(f"registry-core mcp: error: {message}", file=sys.stderr, flush=True)
    return 2


def _build_server(args: argparse.Namespace, publish_token: str | None) -> Any:
    try:
        from ..mcp import create_server
    except ImportError as exc:  # the extra is missing (registry_core.mcp names it too)
        name = getattr(exc, "name", None) or ""
        if name == "mcp" or name.startswith("mcp.") or "registry-core[mcp]" in str(exc):
            raise RegistryCoreError(MCP_EXTRA_HINT) from None
        raise
    verify: bool | str = args.cafile if args.cafile else True
    local: dict[str, Any] = {}
    if args.registry is None:  # one tenant's index: the decision point of that index decides
        local = {"tenant": args.tenant or "default", "index_name": args.index or "main"}
    return create_server(
        registry=args.registry,
        directory=args.directory,
        config=args.config,
        **local,
        roots=tuple(args.root or ()),
        allow_write=args.allow_write,
        token=publish_token,
        verify=verify,
        flags=getattr(args, "flags", None),
        max_bytes=args.max_bytes,
    )


def run_mcp(args: argparse.Namespace) -> int:
    """Run the MCP server until the client goes away (stdio) or a signal (http)."""
    if args.directory is not None and not Path(args.directory).is_dir():
        return _fail(f"{args.directory}: not a directory")
    for root in args.root or ():
        if not Path(root).is_dir():
            return _fail(f"--root {root}: not a directory")
    if args.max_bytes <= 0:
        return _fail("--max-bytes must be positive")
    http = args.transport == "http"
    host, port = args.listen
    bearer = None
    if http:
        if bool(args.certfile) != bool(args.keyfile):
            return _fail("--certfile and --keyfile go together")
        if not args.certfile and not is_loopback(host):
            return _fail(
                f"plain HTTP is refused on {host}: listen on a loopback address (127.0.0.1, "
                "::1) or give --certfile/--keyfile"
            )
        bearer = _read_secret(TOKEN_ENV, args.token_file, "token")
        if bearer is None:
            return _fail(
                f"the http transport needs a bearer token: set ${TOKEN_ENV} or --token-file "
                "(refusing to serve MCP over HTTP without one)"
            )
    elif args.token_file or args.certfile or args.keyfile:
        return _fail("--token-file, --certfile and --keyfile are for --transport http")
    if (args.tenant or args.index) and args.registry is not None:
        return _fail("--tenant and --index are for --dir or --config (a URL names its tenant)")
    if args.config is not None and args.tenant is None:
        return _fail("--config needs --tenant NAME")
    publish_token = None
    if args.allow_write or args.registry is None:
        # a local index: the token is the tools' principal, for reads too (none: the local
        # operator); a remote one: the upload token, only with --allow-write
        publish_token = _read_secret(PUBLISH_TOKEN_ENV, args.publish_token_file, "publish token")
    elif args.publish_token_file:
        return _fail("--publish-token-file needs --allow-write")

    server = _build_server(args, publish_token)
    # The SDK logs every request at INFO (to stderr); keep the command quiet unless asked.
    # INFO at most: DEBUG loggers (httpcore, the SDK) dump request internals.
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not http:
        with contextlib.suppress(KeyboardInterrupt):
            server.run("stdio")
        return 0

    from ..mcp import http_app
    from ._run import run_foreground

    assert bearer is not None
    try:
        app = http_app(server, bearer, host=host)  # refuses a short (guessable) token
    except InvalidArgumentError as exc:
        return _fail(exc)
    tls = bool(args.certfile)

    def describe(handle: Any) -> str:
        return (
            f"registry-core: serving MCP (streamable HTTP) on {handle.url()}mcp"
            f"{'' if tls else ' (plain HTTP: loopback only)'}; bearer token required"
        )

    return run_foreground(
        app,
        describe,
        host=host,
        port=port,
        certfile=args.certfile,
        keyfile=args.keyfile,
        quic=False,
        tls=tls,
    )


def add_mcp_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``mcp`` to an ``argparse`` subparsers object (imports nothing of the SDK)."""
    p = sub.add_parser(
        "mcp",
        help="serve the registry as Model Context Protocol tools (stdio or streamable HTTP)",
        description="Run an MCP server whose tools search, inspect, plan upgrades of, diff, "
        "fetch and (with --allow-write) publish packages of one index. stdio by default "
        "(for a client that spawns it); --transport http serves /mcp behind a bearer token "
        f"(${TOKEN_ENV} or --token-file). Needs pip install 'registry-core[mcp]'. "
        "Docs: docs/mcp.md.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--registry", metavar="URL", help="the index's base URL (its /simple/)")
    what.add_argument("--dir", dest="directory", metavar="DIR", help="a local index directory")
    what.add_argument("--config", metavar="FILE", help="a v2 config file (with --tenant)")
    p.add_argument("--tenant", metavar="NAME", help="--dir/--config: the tenant (default: default)")
    p.add_argument("--index", metavar="NAME", help="--dir/--config: the index (default: main)")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio", help="default stdio")
    p.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", DEFAULT_PORT),
        metavar="HOST:PORT",
        help=f"http: address to bind (default 127.0.0.1:{DEFAULT_PORT}; port 0 = any)",
    )
    p.add_argument(
        "--root",
        action="append",
        metavar="DIR",
        help="a directory the file tools may read and write (repeatable; none: no file access)",
    )
    p.add_argument(
        "--allow-write",
        action="store_true",
        help="enable the write tools (publish); needs the upload token from "
        f"${PUBLISH_TOKEN_ENV} or --publish-token-file",
    )
    p.add_argument("--publish-token-file", metavar="FILE", help="file holding the upload token")
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"http: file holding the bearer token (or ${TOKEN_ENV})",
    )
    p.add_argument("--certfile", help="http: PEM certificate chain (with --keyfile) for HTTPS")
    p.add_argument("--keyfile", help="http: PEM private key of --certfile")
    p.add_argument("--cafile", help="CA bundle to verify an https --registry with")
    p.add_argument(
        "--max-bytes",
        type=int,
        default=64 << 20,
        metavar="N",
        help="largest file or patch a tool reads or returns (default 64 MiB)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.set_defaults(func=run_mcp)
    return p
