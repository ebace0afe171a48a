"""``registry-core serve DIR`` / ``serve --config FILE``: package indexes over HTTP.

``_main.py`` calls ``add_serve_parser(subparsers)`` while building its parser and dispatches
the ``serve`` command to ``run_serve(args)`` (with ``args.flags`` resolved once by the CLI).
``serve DIR`` is the single default tenant (``config.single_tenant``: DIR's one index at
``/``, anonymous read, exactly the URLs of before); ``serve --config FILE`` serves every
tenant of a schema-v2 file. Either way a :class:`MultiTenantApp` serves it: each index is
reconciled with its directory first (``Index.rebuild``: files added or removed while the
server was down), then ``IndexApp`` serves it and hands every other path to a ``RegistryApp``
over the same storage (ETags, digests, Range, 226 deltas).

Every failure to start (missing extra, unusable certificate, port, bind, a non-loopback host
with ``--plain-http``) ends in one line on stderr and exit status 2; "serving on" is printed
only once every listener is up.
"""

from __future__ import annotations

import argparse
import sys
import threading
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
        nargs="?",
        help="the index directory: distributions under <project>/, every file served at its "
        "path; the database and computed patches live in DIR/.registry-core/ (never served)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="serve every tenant of a schema-v2 configuration file instead of DIR (the server "
        "options then come from its [server] table; docs/configuration.md, docs/tenancy.md)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=8443,
        help="TCP (HTTP/1.1, HTTP/2) and UDP (HTTP/3) port (default 8443; 0 = any)",
    )
    tls = p.add_mutually_exclusive_group()
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


#: serve options that --config takes from the file instead (dest -> option).
_SERVER_OPTIONS = {
    "host": "--host",
    "port": "--port",
    "certfile": "--certfile",
    "keyfile": "--keyfile",
    "self_signed": "--self-signed",
    "plain_http": "--plain-http",
    "sign": "--sign",
    "no_http3": "--no-http3",
    "max_connections": "--max-connections",
    "max_connections_per_ip": "--max-connections-per-ip",
    "read_timeout": "--read-timeout",
    "write_timeout": "--write-timeout",
    "max_requests_per_ip": "--max-requests-per-ip",
}


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


def _v1_config(args: argparse.Namespace) -> Any:
    """``serve DIR [options]`` as the single-tenant configuration."""
    from ..config import single_tenant

    if args.plain_http:
        tls = "plain-http"
    elif args.certfile:
        tls = "files"
    else:
        tls = "self-signed"
    return single_tenant(
        args.directory,
        host=args.host,
        port=args.port,
        tls=tls,
        certfile=args.certfile,
        keyfile=args.keyfile,
        sign=args.sign,
        http3=not args.no_http3,
        max_connections=args.max_connections,
        max_connections_per_ip=args.max_connections_per_ip,
        read_timeout=args.read_timeout,
        write_timeout=args.write_timeout,
        max_requests_per_ip=args.max_requests_per_ip,
    )


def _check_args(args: argparse.Namespace) -> str | None:
    """The one-line complaint about the command line, or None."""
    if getattr(args, "config", None) is not None:
        if args.directory is not None:
            return "give DIR or --config FILE, not both"
        given = [
            opt
            for dest, opt in _SERVER_OPTIONS.items()
            if getattr(args, dest) != _DEFAULTS.get(dest, getattr(args, dest))
        ]
        if given:
            return f"{given[0]} is set in the configuration file's [server] table with --config"
        return None
    if args.directory is None:
        return "DIR or --config FILE is required"
    if not (args.certfile or args.self_signed or args.plain_http):
        return "one of --certfile, --self-signed or --plain-http is required"
    if args.certfile and not args.keyfile:
        return "--certfile needs --keyfile"
    if args.keyfile and not args.certfile:
        return "--keyfile needs --certfile"
    if args.plain_http and not is_loopback(args.host):
        return (
            f"--plain-http serves without TLS and is refused on {args.host}: use a loopback "
            "--host (127.0.0.1, ::1) or a certificate"
        )
    if not 0 <= args.port <= 65535:  # the server's own wording (it checks again)
        return f"port must be an integer in 0..65535 (0: any free port), got {args.port!r}"
    if not Path(args.directory).is_dir():
        return f"{args.directory}: not a directory"
    return None


_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8443,
    "certfile": None,
    "keyfile": None,
    "self_signed": False,
    "plain_http": False,
    "sign": False,
    "no_http3": False,
    "max_requests_per_ip": None,
    **DEFAULTS,
}


def _describe_v1(app: Any, handle: Any, url: str) -> str:
    runtime = next(iter(app.tenants.values()))
    entry = next(iter(runtime.entries.values()))
    rebuilt = counts(entry.rebuilt) if entry.rebuilt is not None else "-"
    line = (
        f"index {url}simple/ ({len(entry.index.projects())} projects; rebuilt: {rebuilt}); "
        f"uploads {url}legacy/"
    )
    if entry.tuf is not None:
        line += f"; signed: TUF metadata {url}tuf/ (trusted root {url}tuf/1.root.json)"
    return line


def _describe_v2(app: Any, handle: Any, url: str) -> str:
    parts = []
    for runtime in app.tenants.values():
        names = ", ".join(
            f"{n} {url.rstrip('/')}{runtime.base}{e.path}/simple/"
            for n, e in runtime.entries.items()
        )
        hosts = f" (hosts {', '.join(runtime.config.domains)})" if runtime.config.domains else ""
        parts.append(f"{runtime.name}{hosts}: {names}")
    return f"{len(parts)} tenant(s): " + "; ".join(parts)


def _telemetry(config: Any) -> Any:
    """The :class:`Telemetry` of ``[telemetry]`` and ``[logging]``. Metrics are on by default;
    without prometheus-client (the ``otel`` extra) they are dropped only when the file does not
    ask for anything of telemetry (the built-in default), else the missing extra is the error."""
    from ..config import TelemetryConfig
    from ..telemetry import Telemetry

    t = config.telemetry
    access: Any = False
    if config.logging.access_log == "json":

        def access(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

    options = {
        "service_name": t.service_name,
        "otlp_endpoint": t.otlp_endpoint,
        "sample_ratio": t.sample_ratio,
        "metrics": t.metrics,
        "access_log": access,
        "metrics_token": t.read_metrics_token(),
    }
    try:
        return Telemetry(**options)
    except ImportError:
        if t != TelemetryConfig() or not t.metrics:
            raise
        print(
            "registry-core serve: /metrics is off: pip install 'registry-core[otel]' for it",
            file=sys.stderr,
            flush=True,
        )
        return Telemetry(**{**options, "metrics": False})


def _certificates(config: Any) -> tuple[Any, Any]:
    """(CertificateStore, AcmeManager) for ``[server] certificates`` / ``[server.acme]``:
    the store the TLS listener picks a certificate from by SNI (the tenants' domains), and
    the manager that fills it from the ACME CA (Nones when not configured)."""
    server = config.server
    if server.certificates is None and server.acme is None:
        return None, None
    from ..certs import CertificateStore
    from ..storage import STATE_DIR

    where = server.certificates or str(Path(config.storage.directory) / STATE_DIR / "certs")
    store = CertificateStore(where)
    if server.acme is None:
        return store, None
    from ..certs import AcmeManager

    a = server.acme
    domains = [d for tenant in config.tenants.values() for d in tenant.domains]
    manager = AcmeManager(
        store,
        directory_url=a.directory_url,
        email=a.email,
        domains=domains,
        ca_bundle=a.ca_bundle,
        challenge=a.challenge,
        allow_http=a.allow_http,
    )
    return store, manager


#: How often the ACME renewal thread looks for certificates due (renewal itself starts when
#: less than a third of a certificate's lifetime is left).
ACME_CHECK_S = 6 * 3600.0


def _start_acme(manager: Any, host: str, http_port: int) -> Any:
    """The HTTP-01 listener (plain HTTP answering only ``/.well-known/acme-challenge/``) and
    a thread issuing what is due now, then checking every ACME_CHECK_S; returns the stop
    function. A failed issuance is logged on stderr and retried at the next check: the
    server keeps serving its default certificate meanwhile."""
    from ..server import start_server

    challenge = start_server(manager.challenge_app, host=host, port=http_port, tls=False)
    stop = threading.Event()

    def renew() -> None:
        while not stop.is_set():
            try:
                got = manager.ensure_sync()
                if got:
                    print(
                        f"registry-core serve: certificates issued: {', '.join(got)}",
                        file=sys.stderr,
                        flush=True,
                    )
            except Exception as exc:
                print(f"registry-core serve: ACME: {exc}", file=sys.stderr, flush=True)
            stop.wait(ACME_CHECK_S)

    thread = threading.Thread(target=renew, name="registry-core-acme", daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        challenge.stop()

    return close


def run_serve(args: argparse.Namespace) -> int:
    """Run the index server in the foreground until interrupted; returns the exit status."""
    from ..errors import RegistryCoreError

    problem = _check_args(args)
    if problem is not None:
        return _fail(problem)
    try:
        from ..server._serve import SERVER_EXTRA_HINT, ServerLimits, _require_server_extra
    except ModuleNotFoundError as exc:  # the server package itself is light; be safe anyway
        return _fail(f"{exc}")
    app = None
    telemetry = None
    try:
        _require_server_extra()  # before any index is opened: nothing to undo then
        if args.config is not None:
            from ..config import load

            config = load(args.config)
        else:
            config = _v1_config(args)
        server = config.server
        if server.tls == "plain-http" and not is_loopback(server.host):
            return _fail(
                f'{args.config}: server.tls = "plain-http" serves without TLS and is refused '
                f"on {server.host}: use a loopback host (127.0.0.1, ::1) or a certificate"
            )
        limits = ServerLimits(
            max_connections=server.max_connections,
            max_connections_per_ip=server.max_connections_per_ip,
            read_timeout=server.read_timeout,
            write_timeout=server.write_timeout,
            max_requests_per_ip=server.max_requests_per_ip,
        )
        flags = getattr(args, "flags", None)
        if (args.config is not None and config.flags) or flags is None:
            from ..flags import FeatureFlags

            # the file's [flags] table in place of pyproject.toml's; the environment still wins
            flags = FeatureFlags.load(config=args.config if config.flags else None)
        from ..server import MultiTenantApp

        app = MultiTenantApp(config, flags=flags)
        telemetry = _telemetry(config)
        app.attach_telemetry(telemetry)
        started: list[Any] = []

        def ready() -> bool:
            # false until the listener is up and from the moment a SIGTERM drain begins
            return bool(started) and not started[0].draining and app.ready()

        served = telemetry.wrap(app, ready=ready)
        certificates, acme = _certificates(config)
        if acme is not None:
            served = acme.wrap(served)
        tls = server.tls != "plain-http"
        quic = tls and server.http3
        v1 = config.default_tenant is not None and args.config is None

        def describe(handle: Any) -> str:
            if quic:
                for files in app.file_servers():
                    if files.quic and files.alt_svc is None:
                        files.alt_svc = f'h3=":{handle.port}"; ma=3600'
            url = handle.url()
            where = (
                f"(TCP h1/h2{' + UDP h3' if quic else ''})"
                if tls
                else "(TCP h1, plain HTTP: no TLS)"
            )
            what = _describe_v1(app, handle, url) if v1 else _describe_v2(app, handle, url)
            line = f"registry-core: serving on {url} {where}; {what}"
            return f"{line}; certificate {handle.certfile}" if tls else line

        def on_start(handle: Any) -> None:
            started.append(handle)
            if acme is not None:
                assert server.acme is not None
                extra.append(_start_acme(acme, server.host, server.acme.http_port))

        extra: list[Any] = []
        try:
            return run_foreground(
                served,
                describe,
                drain_timeout_s=server.drain_timeout_s,
                on_start=on_start,
                certificates=certificates,
                host=server.host,
                port=server.port,
                certfile=server.certfile if server.tls == "files" else None,
                keyfile=server.keyfile if server.tls == "files" else None,
                quic=quic,
                limits=limits,
                tls=tls,
                pq_key_exchange=flags.is_enabled("PQ_KEY_EXCHANGE"),
            )
        finally:
            for stop in extra:
                stop()
    except ModuleNotFoundError as exc:
        if str(exc).startswith(SERVER_EXTRA_HINT):
            return _fail(exc)
        raise
    except (RegistryCoreError, OSError) as exc:
        return _fail(exc)
    finally:
        if telemetry is not None:
            telemetry.shutdown()
        if app is not None:
            app.close()
