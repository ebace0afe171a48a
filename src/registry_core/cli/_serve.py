"""``registry-core serve DIR``: a package index over DIR (the Simple API, uploads, files).

``_main.py`` calls ``add_serve_parser(subparsers)`` while building its parser and dispatches
the ``serve`` command to ``run_serve(args)`` (with ``args.flags`` resolved once by the CLI).
The directory is indexed first (``Index.rebuild``: files added or removed while the server was
down), then ``IndexApp`` serves the index and hands every other path to a ``RegistryApp``
over the same storage (ETags, digests, Range, 226 deltas).

Every failure to start (missing extra, unusable certificate, port, bind, a non-loopback host
with ``--plain-http``) ends in one line on stderr and exit status 2; "serving on" is printed
only once every listener is up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._output import counts
from ._run import is_loopback, run_foreground

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
    p.add_argument(
        "directory",
        help="the index directory: distributions under <project>/, every file served at its "
        "path; the database and computed patches live in DIR/.registry-core/ (never served)",
    )
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
    tls.add_argument(
        "--plain-http",
        action="store_true",
        help="plain HTTP/1.1 without TLS; only with a loopback --host (pip and uv treat "
        "http://127.0.0.1 as secure)",
    )
    p.add_argument("--keyfile", help="PEM private key of --certfile")
    p.add_argument(
        "--sign",
        action="store_true",
        help="publish TUF metadata signed with hybrid Ed25519 + ML-DSA-65 keys under /tuf/ and "
        "sign every delta patch (keys in DIR/.registry-core/keys/, passphrase from "
        "$REGISTRY_CORE_KEY_PASSPHRASE; created on first use); on by default once DIR has "
        "TUF metadata",
    )
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
            help="serve a package index (Simple API, uploads, files) over HTTP/1.1, HTTP/2, HTTP/3",
            description="Serve DIR as a package index: PEP 503/691 pages under /simple/, "
            "twine/uv uploads at /legacy/ (API tokens: registry-core token create DIR), every "
            "file with ETags, RFC 9530 digests, Range, compression, delta (226) and dcz "
            "responses; HTTP/3 on the same port, advertised with Alt-Svc while the "
            "QUIC_TRANSPORT flag is on. Limits: docs/security.md.",
        )
    )


def _fail(message: object) -> int:
    print(f"registry-core serve: error: {message}", file=sys.stderr, flush=True)
    return 2


def _signing(args: argparse.Namespace, index: Any) -> tuple[Any, Any]:
    """(TufRepository, PatchEnvelopes) for a signed registry, else (None, None): with
    ``--sign``, or when DIR already publishes TUF metadata (a signed registry never silently
    starts unsigned). The repository is created on first use and synced with the index."""
    from ..storage import STATE_DIR

    published = (Path(args.directory) / STATE_DIR / "tuf" / "timestamp.json").is_file()
    if not (args.sign or published):
        return None, None
    from ..signing import PatchEnvelopes, TufRepository  # SigningError names the extra

    tuf = TufRepository.for_registry(args.directory)
    tuf.init()
    tuf.attach(index)  # sync now (files added while down), then follow uploads
    return tuf, PatchEnvelopes(tuf.keyring)


def run_serve(args: argparse.Namespace) -> int:
    """Run the index server in the foreground until interrupted; returns the exit status."""
    from ..errors import RegistryCoreError

    if args.certfile and not args.keyfile:
        return _fail("--certfile needs --keyfile")
    if args.keyfile and not args.certfile:
        return _fail("--keyfile needs --certfile")
    if args.plain_http and not is_loopback(args.host):
        return _fail(
            f"--plain-http serves without TLS and is refused on {args.host}: use a loopback "
            "--host (127.0.0.1, ::1) or a certificate"
        )
    if not Path(args.directory).is_dir():
        return _fail(f"{args.directory}: not a directory")
    try:
        from ..server._serve import SERVER_EXTRA_HINT, ServerLimits, _require_server_extra
    except ModuleNotFoundError as exc:  # the server package itself is light; be safe anyway
        return _fail(f"{exc}")
    index = None
    try:
        _require_server_extra()  # before the index is opened: nothing to undo then
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
        from ..index import Index
        from ..server import IndexApp, RegistryApp

        index = Index(args.directory)
        rebuilt = counts(index.rebuild())
        tuf, envelopes = _signing(args, index)
        files = RegistryApp(index.storage, flags=flags, envelopes=envelopes)
        app = IndexApp(index, files=files, tuf=tuf)
        tls = not args.plain_http
        quic = tls and not args.no_http3

        def describe(handle: Any) -> str:
            if quic and files.quic and files.alt_svc is None:
                files.alt_svc = f'h3=":{handle.port}"; ma=3600'
            url = handle.url()
            where = (
                f"(TCP h1/h2{' + UDP h3' if quic else ''})"
                if tls
                else "(TCP h1, plain HTTP: no TLS)"
            )
            line = (
                f"registry-core: serving on {url} {where}; index {url}simple/ "
                f"({len(index.projects())} projects; rebuilt: {rebuilt}); uploads {url}legacy/"
            )
            if tuf is not None:
                line += f"; signed: TUF metadata {url}tuf/ (trusted root {url}tuf/1.root.json)"
            return f"{line}; certificate {handle.certfile}" if tls else line

        return run_foreground(
            app,
            describe,
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            quic=quic,
            limits=limits,
            tls=tls,
            pq_key_exchange=flags.is_enabled("PQ_KEY_EXCHANGE"),
        )
    except ModuleNotFoundError as exc:
        if str(exc).startswith(SERVER_EXTRA_HINT):
            return _fail(exc)
        raise
    except (RegistryCoreError, OSError) as exc:
        return _fail(exc)
    finally:
        if index is not None:
            index.close()
