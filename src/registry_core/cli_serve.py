"""``registry-core serve``: the argument parser and runner the CLI hooks in.

``cli.py`` calls ``add_serve_parser(subparsers)`` while building its parser and dispatches the
``serve`` command to ``run_serve(args)``. ``python -m registry_core.cli_serve DIR ...`` runs it
standalone.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_serve_parser", "run_serve"]


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("directory", help="directory of artifacts; each file is served at its path")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8443,
                   help="TCP (HTTP/1.1, HTTP/2) and UDP (HTTP/3) port (default 8443; 0 = any)")
    tls = p.add_mutually_exclusive_group(required=True)
    tls.add_argument("--certfile", help="PEM certificate chain (with --keyfile)")
    tls.add_argument("--self-signed", action="store_true",
                     help="generate a throwaway self-signed certificate for --host/localhost")
    p.add_argument("--keyfile", help="PEM private key of --certfile")
    p.add_argument("--no-http3", action="store_true", help="serve TCP only (no UDP, no Alt-Svc)")
    p.set_defaults(func=run_serve)
    return p


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to an ``argparse`` subparsers object."""
    return _configure(subparsers.add_parser(
        "serve", help="serve a directory of artifacts over HTTP/1.1, HTTP/2 and HTTP/3",
        description="Serve DIR with ETags, RFC 9530 digests, compression, delta (226) and "
                    "dcz responses; HTTP/3 on the same port, advertised with Alt-Svc."))


def run_serve(args: argparse.Namespace) -> int:
    """Run the server in the foreground until interrupted; returns the exit status."""
    from .errors import RegistryCoreError
    from .server import serve

    if args.certfile and not args.keyfile:
        print("registry-core serve: --certfile needs --keyfile", file=sys.stderr)
        return 2
    try:
        serve(args.directory, host=args.host, port=args.port, certfile=args.certfile,
              keyfile=args.keyfile, self_signed=args.self_signed, quic=not args.no_http3)
    except (RegistryCoreError, OSError) as exc:
        print(f"registry-core serve: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _configure(argparse.ArgumentParser(prog="registry-core serve"))
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
