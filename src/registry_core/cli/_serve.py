"""``registry-core serve``: the argument parser and runner the CLI hooks in.

``_main.py`` calls ``add_serve_parser(subparsers)`` while building its parser and dispatches the
``serve`` command to ``run_serve(args)`` (with ``args.flags`` resolved once by the CLI).

Every failure to start (missing extra, unusable certificate, port, bind) ends in one line on
stderr and exit status 2; "serving on" is printed only once every listener is up.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_serve_parser", "run_serve"]

#: ServerLimits' defaults for the options below (kept here so that building the CLI parser does
#: not import the server; a test pins them to ServerLimits).
DEFAULTS: dict[str, Any] = {
    "max_connections": 1000,
    "max_connections_per_ip": 64,
    "read_timeout": 30.0,
    "write_timeout": 30.0,
}


def _seconds_or_off(text: str) -> float | None:
    if text.strip().lower() in ("0", "off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'off', got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds > 0 or 'off', got {text!r}")
    return value


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    D = DEFAULTS
    p.add_argument("directory", help="directory of artifacts; each file is served at its path")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=8443,
        help="TCP (HTTP/1.1, HTTP/2) and UDP (HTTP/3) port (default 8443; 0 = any)",
    )
    tls = p.add_mutually_exclusive_group(required=True)
    tls.add_argument("--certfile", help="PEM certificate chain (with --keyfile)")
    tls.add_argument(
        "--self-signed",
        action="store_true",
        help="a self-signed certificate for --host/localhost, kept per host in "
        "$XDG_CACHE_HOME/registry-core/self-signed/ and reused",
    )
    p.add_argument("--keyfile", help="PEM private key of --certfile")
    p.add_argument("--no-http3", action="store_true", help="serve TCP only (no UDP, no Alt-Svc)")
    p.add_argument(
        "--max-connections",
        type=int,
        default=D["max_connections"],
        help="open TCP connections in total; more are reset " f"(default {D['max_connections']})",
    )
    p.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=D["max_connections_per_ip"],
        help="open TCP connections from one IP address; more are reset "
        f"(default {D['max_connections_per_ip']})",
    )
    p.add_argument(
        "--read-timeout",
        type=_seconds_or_off,
        default=D["read_timeout"],
        metavar="SECONDS",
        help="close a connection whose client sends nothing this long while the "
        f"server waits on it ('off' disables; default {D['read_timeout']:g})",
    )
    p.add_argument(
        "--write-timeout",
        type=_seconds_or_off,
        default=D["write_timeout"],
        metavar="SECONDS",
        help="abort a connection whose client reads nothing of its response this "
        f"long ('off' disables; default {D['write_timeout']:g})",
    )
    p.add_argument(
        "--max-requests-per-ip",
        type=int,
        default=None,
        metavar="N",
        help="requests from one IP address worked on at once; more wait their turn "
        "(default: no limit)",
    )
    p.set_defaults(func=run_serve)
    return p


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to an ``argparse`` subparsers object."""
    return _configure(
        subparsers.add_parser(
            "serve",
            help="serve a directory of artifacts over HTTP/1.1, HTTP/2 and HTTP/3",
            description="Serve DIR with ETags, RFC 9530 digests, compression, delta (226) and "
            "dcz responses; HTTP/3 on the same port, advertised with Alt-Svc while the "
            "QUIC_TRANSPORT flag is on. Limits: docs/security.md.",
        )
    )


def _fail(message: object) -> int:
    print(f"registry-core serve: error: {message}", file=sys.stderr, flush=True)
    return 2


def run_serve(args: argparse.Namespace) -> int:
    """Run the server in the foreground until interrupted; returns the exit status."""
    from ..errors import RegistryCoreError

    if args.certfile and not args.keyfile:
        return _fail("--certfile needs --keyfile")
    if args.keyfile and not args.certfile:
        return _fail("--keyfile needs --certfile")
    try:
        from ..server._serve import SERVER_EXTRA_HINT, ServerLimits, serve
    except ModuleNotFoundError as exc:  # the server package itself is light; be safe anyway
        return _fail(f"{exc}")
    try:
        limits = ServerLimits(
            max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip,
            read_timeout=args.read_timeout,
            write_timeout=args.write_timeout,
            max_requests_per_ip=args.max_requests_per_ip,
        )
        flags = getattr(args, "flags", None)
        if flags is None:
            from ..flags import FeatureFlags

            flags = FeatureFlags.load()
        serve(
            args.directory,
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            self_signed=args.self_signed,
            quic=not args.no_http3,
            limits=limits,
            flags=flags,
        )
    except ModuleNotFoundError as exc:
        if str(exc).startswith(SERVER_EXTRA_HINT):
            return _fail(exc)
        raise
    except (RegistryCoreError, OSError) as exc:
        return _fail(exc)
    return 0
