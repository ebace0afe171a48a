"""``registry-core proxy``: the pull-through delta proxy, and ``proxy warm`` to fill its cache.

``proxy --upstream URL --cache-dir DIR`` serves a local index (point ``PIP_INDEX_URL`` /
``UV_INDEX_URL`` at ``http://127.0.0.1:3141/simple/``) whose files come from the upstream,
as deltas against older releases already in the cache when the upstream offers them, and
first downloads as EXPANDED patches (rebuilt and verified locally) from a registry-core
upstream (``--no-first-downloads``: plain files).
``proxy warm -r requirements.txt`` fetches the files a requirements file names into the same
cache without serving, and prints the bytes moved against full downloads.
"""

from __future__ import annotations

import argparse
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, UpstreamError
from ._output import size
from ._run import is_loopback, run_foreground

DEFAULT_LISTEN = "127.0.0.1:3141"
DEFAULT_MAX_CACHE = "10GiB"
#: ``--eviction`` choices: the simple policies (registry_core.eviction) and the learned one.
EVICTIONS = ("lru", "sieve", "s3fifo", "learned")

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2}
_UNITS |= {"mib": 1 << 20, "g": 1000**3, "gb": 1000**3, "gib": 1 << 30}
_UNITS |= {"t": 1000**4, "tb": 1000**4, "tib": 1 << 40}


def parse_size(text: str) -> int:
    """``"10GiB"``, ``"500MB"``, ``"1048576"`` -> bytes (argparse type; > 0)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 500MiB or 10GB, got {text!r}")
    value = int(Fraction(m.group(1)) * _UNITS[unit])  # exact: no float rounding
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a size > 0, got {text!r}")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:3141`` for IPv6) -> ``(host, port)``."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {port}")
    return host, port


def _verify(args: argparse.Namespace) -> bool | str:
    return args.cafile if getattr(args, "cafile", None) else True


def _trust(args: argparse.Namespace) -> dict[str, Any]:
    """``{"trust": TrustedIndex}`` when ``--tuf-root`` is given: every file is then checked
    against the upstream's TUF metadata (and every patch against its signed envelope) before it
    is stored or served; ngclient's metadata cache lives in CACHE_DIR/.tuf/."""
    root = getattr(args, "tuf_root", None)
    if not root:
        if getattr(args, "tuf_url", None):
            raise InvalidArgumentError("--tuf-url needs --tuf-root (the trusted root metadata)")
        return {}
    if not Path(root).is_file():
        raise InvalidArgumentError(f"--tuf-root {root}: no such file")
    from ..signing import TrustedIndex  # SigningError names the extra when it is missing

    url = args.tuf_url or args.upstream.rstrip("/") + "/tuf/"
    return {
        "trust": TrustedIndex(
            Path(root).read_bytes(), url, Path(args.cache_dir) / ".tuf", verify=_verify(args)
        )
    }


def _eviction(args: argparse.Namespace) -> dict[str, Any]:
    """``{"eviction": policy}`` from ``--eviction`` (nothing for the default, LRU).

    ``learned`` is experimental: refused unless the ML_LEARNED_EVICTION flag is on; it loads
    ``--eviction-model`` (a model artifact from ``registry_core.ml``'s training) when given,
    else starts as sampled LRU and retrains online (needs lightgbm: the ml-train extra)."""
    name = getattr(args, "eviction", None) or "lru"
    model = getattr(args, "eviction_model", None)
    if name != "learned":
        if model:
            raise InvalidArgumentError("--eviction-model goes with --eviction learned")
        if name == "lru":
            return {}
        from ..eviction import make_policy

        return {"eviction": make_policy(name, capacity_bytes=args.max_cache_bytes)}
    flags = getattr(args, "flags", None)
    if flags is None or not flags.is_enabled("ML_LEARNED_EVICTION"):
        raise InvalidArgumentError(
            "--eviction learned is experimental and the ML_LEARNED_EVICTION flag is off: turn "
            "it on (REGISTRY_CORE_FLAGS=ML_LEARNED_EVICTION=on) or choose lru, sieve or s3fifo"
        )
    try:
        from ..ml._learned_cache import LearnedEviction
    except ImportError as exc:
        raise InvalidArgumentError(
            f"--eviction learned needs the ml extra (pip install 'registry-core[ml]'): {exc}"
        ) from exc
    if not model:
        return {"eviction": LearnedEviction(retrain_every=20_000, background=True)}
    path = Path(model)
    if not path.is_file():
        raise InvalidArgumentError(f"--eviction-model {model}: no such file")
    from ..ml._artifact import MAX_ARTIFACT_BYTES, ModelArtifact

    if path.stat().st_size > MAX_ARTIFACT_BYTES:
        raise InvalidArgumentError(f"--eviction-model {model}: larger than any model artifact")
    art = ModelArtifact.from_bytes(path.read_bytes())  # ModelError when corrupt: nothing loaded
    return {"eviction": LearnedEviction.from_artifact(art)}


def _require(args: argparse.Namespace, command: str) -> None:
    missing = [
        f"--{n.replace('_', '-')}" for n in ("upstream", "cache_dir") if not getattr(args, n, None)
    ]
    if missing:
        raise InvalidArgumentError(f"{command} needs {' and '.join(missing)}")
    if not re.match(r"(?i)https?://", args.upstream):
        raise InvalidArgumentError(
            f"--upstream must be an http:// or https:// URL, got {args.upstream!r}"
        )


def _cmd_proxy(args: argparse.Namespace) -> int:
    _require(args, "proxy")
    host, port = args.listen
    if bool(args.certfile) != bool(args.keyfile):
        raise InvalidArgumentError("--certfile and --keyfile go together")
    tls = bool(args.certfile)
    if not tls and not is_loopback(host):
        raise InvalidArgumentError(
            f"plain HTTP is refused on {host}: listen on a loopback address (127.0.0.1, ::1) "
            "or give --certfile/--keyfile"
        )
    from ..server._serve import _require_server_extra

    _require_server_extra()
    from ..proxy import ProxyApp

    app = ProxyApp(
        args.upstream,
        args.cache_dir,
        max_cache_bytes=args.max_cache_bytes,
        page_ttl=args.page_ttl,
        verify=_verify(args),
        flags=args.flags,
        first_downloads=getattr(args, "first_downloads", "auto"),
        **_eviction(args),
        **_trust(args),
    )
    policy = getattr(args, "eviction", None) or "lru"

    def describe(handle: Any) -> str:
        url = handle.url()
        return (
            f"registry-core: proxy serving on {url} for {args.upstream} "
            f"({'TLS' if tls else 'plain HTTP: loopback only'}); index {url}simple/; "
            f"cache {args.cache_dir} (at most {size(args.max_cache_bytes)}, {policy} eviction)"
        )

    # The proxy's upstream connections close with the server (ASGI lifespan shutdown).
    # The summary is taken before the server stops: the upstream client closes with it.
    return run_foreground(
        app,
        describe,
        before_stop=lambda: print(stats_summary(app.stats), flush=True),
        host=host,
        port=port,
        certfile=args.certfile,
        keyfile=args.keyfile,
        quic=False,
        tls=tls,
    )


def stats_summary(stats: Any) -> str:
    """The line printed when the proxy stops: what it moved over the upstream link."""
    full = stats.full_equivalent_bytes
    saved = f" ({100 * (1 - stats.upstream_bytes / full):.1f}% saved)" if full else ""
    return (
        f"registry-core: proxy stopped; {size(stats.upstream_bytes)} from upstream for "
        f"{size(full)} of files{saved}; {stats.deltas} deltas, {stats.fulls} full "
        f"({getattr(stats, 'expanded', 0)} as EXPANDED patches), "
        f"{stats.cache_hits} cache hits, {stats.stale_pages} stale pages, "
        f"{stats.corrupt_refused} corrupt refused"
    )


def _cmd_warm(args: argparse.Namespace) -> int:
    _require(args, "proxy warm")
    from ..proxy import warm

    predict_kw: dict[str, Any] = {}
    if args.predict:
        if not args.flags.is_enabled("ML_PREDICTIVE_PREFETCH"):
            raise InvalidArgumentError(
                "--predict is experimental and the ML_PREDICTIVE_PREFETCH flag is off: turn it "
                "on (REGISTRY_CORE_FLAGS=ML_PREDICTIVE_PREFETCH=on, or [tool.registry-core.flags] "
                "in pyproject.toml)"
            )
        if not 0.0 < args.predict_threshold <= 1.0:
            raise InvalidArgumentError(
                f"--predict-threshold must be in (0, 1], not {args.predict_threshold}"
            )
        from ..proxy._warm import load_predictor_for_warm

        predict_kw = {
            "predict": load_predictor_for_warm(args.predict, args.predict_log),
            "predict_threshold": args.predict_threshold,
        }
    report = warm(
        args.requirement,
        upstream=args.upstream,
        cache_dir=args.cache_dir,
        max_cache_bytes=args.max_cache_bytes,
        verify=_verify(args),
        flags=args.flags,
        first_downloads=getattr(args, "first_downloads", "auto"),
        **_eviction(args),
        **_trust(args),
        **predict_kw,
    )
    print(warm_summary(report, args.cache_dir), flush=True)
    if report.failed:
        shown = "; ".join(f"{req}: {why}" for req, why in report.failed[:5])
        more = f" (and {len(report.failed) - 5} more)" if len(report.failed) > 5 else ""
        raise UpstreamError(f"{len(report.failed)} requirements not warmed: {shown}{more}")
    return 0


def warm_summary(report: Any, cache_dir: str) -> str:
    """One line: files by how they came, bytes over the upstream link against full downloads."""
    kinds: dict[str, int] = {}
    for _name, _moved, _full, how in report.fetched:
        kinds[how] = kinds.get(how, 0) + 1
    how = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing fetched"
    moved, full = report.upstream_bytes, report.full_bytes
    saved = f", {100 * (1 - moved / full):.1f}% saved" if full else ""
    skipped = f"; {len(report.skipped)} skipped (markers)" if report.skipped else ""
    return (
        f"{cache_dir}: warmed {len(report.fetched)} files ({how}); {size(moved)} from upstream "
        f"for {size(full)} of files{saved}{skipped}"
    )


def _common(p: argparse.ArgumentParser, default: Any) -> None:
    """The options ``proxy`` and ``proxy warm`` share. ``default`` is argparse.SUPPRESS on
    ``warm`` so that options given before the word ``warm`` are kept."""

    def d(value: Any) -> Any:
        return value if default is None else default

    p.add_argument(
        "--upstream",
        metavar="URL",
        default=d(None),
        help="the index to pull from, e.g. https://pypi.org (its /simple/ is used)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=d(None),
        help="where pages and files are kept (reuse it across CI runs)",
    )
    p.add_argument(
        "--max-cache-bytes",
        metavar="SIZE",
        type=parse_size,
        default=d(parse_size(DEFAULT_MAX_CACHE)),
        help=f"bound of the file cache; --eviction picks what goes (default {DEFAULT_MAX_CACHE})",
    )
    p.add_argument(
        "--eviction",
        choices=EVICTIONS,
        default=d("lru"),
        help="which files leave a full cache: lru (default), sieve, s3fifo, or learned "
        "(experimental: needs the ML_LEARNED_EVICTION flag and the ml extra)",
    )
    p.add_argument(
        "--eviction-model",
        metavar="FILE",
        default=d(None),
        help="a learned-eviction model artifact for --eviction learned (default: start "
        "untrained and retrain online)",
    )
    p.add_argument(
        "--cafile",
        metavar="PEM",
        default=d(None),
        help="CA bundle to verify an https upstream with (default: system CAs)",
    )
    p.add_argument(
        "--tuf-root",
        metavar="FILE",
        default=d(None),
        help="the upstream's trusted TUF root (e.g. its /tuf/1.root.json, obtained out of "
        "band): verify every file and patch against its signed metadata",
    )
    p.add_argument(
        "--tuf-url",
        metavar="URL",
        default=d(None),
        help="where the upstream's TUF metadata is (default: UPSTREAM/tuf/)",
    )
    p.add_argument(
        "--first-downloads",
        dest="first_downloads",
        choices=("auto", "always", "never"),
        default=d("auto"),
        help="fetch files no older release of is cached as EXPANDED patches (asked for only "
        "from upstreams that send digests, i.e. registry-core): 'auto' (default) only while "
        "plain downloads from that host measure slower than about 32 Mbit/s (rebuilding costs "
        "more than the halved transfer saves on faster links), 'always', or 'never'",
    )
    p.add_argument(
        "--no-first-downloads",
        dest="first_downloads",
        action="store_const",
        const="never",
        default=d("auto"),
        help="same as --first-downloads never",
    )


def add_proxy_parser(sub: Any) -> None:
    """Add ``proxy`` and ``proxy warm`` to an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "proxy",
        help="a local pull-through index that fetches updates as deltas",
        description="Serve a local index in front of --upstream: pages cached and revalidated "
        "(served stale when the upstream is down), files verified against the upstream's "
        "sha256 before they are cached or served, updates fetched as deltas against the "
        "cached older release when the upstream offers them. Point pip at "
        "PIP_INDEX_URL=http://127.0.0.1:3141/simple/ (uv: UV_INDEX_URL).",
    )
    _common(p, None)
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        help=f"address to serve on (default {DEFAULT_LISTEN}; plain HTTP only on " "loopback)",
    )
    p.add_argument(
        "--page-ttl",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="serve a cached project page this long before revalidating (default 60)",
    )
    p.add_argument("--certfile", help="PEM certificate chain: serve HTTPS (with --keyfile)")
    p.add_argument("--keyfile", help="PEM private key of --certfile")
    p.set_defaults(func=_cmd_proxy, command_name="proxy")
    verbs = p.add_subparsers(dest="proxy_command", required=False, metavar="{warm}")
    w = verbs.add_parser(
        "warm",
        help="fetch the files of a requirements file into the cache",
        description="For each requirement (name==version, name>=x, name), fetch the best file "
        "for this interpreter into the cache through the same verified, delta-aware path, and "
        "print bytes moved against full downloads. No dependency resolution: give a complete "
        "requirements file (pip freeze, pip-compile, uv pip compile).",
    )
    w.add_argument("-r", "--requirement", metavar="FILE", required=True, help="requirements file")
    w.add_argument(
        "--predict",
        metavar="MODEL",
        help="also prefetch the newer files this next-download model (.rcml, from `registry-core "
        "ml train`) expects the proxy's clients to ask for (experimental: ML_PREDICTIVE_PREFETCH)",
    )
    w.add_argument(
        "--predict-log",
        metavar="LOG",
        help="the proxy's JSON access log the model's features are computed from",
    )
    w.add_argument(
        "--predict-threshold",
        metavar="P",
        type=float,
        default=0.5,
        help="prefetch files predicted at this probability or more (default 0.5)",
    )
    _common(w, argparse.SUPPRESS)
    w.set_defaults(func=_cmd_warm, command_name="proxy warm")
