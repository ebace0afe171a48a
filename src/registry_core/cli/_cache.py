"""``registry-core cache run | stats | gc | clear``: the build cache from the shell (docs/cache.md).

- ``run --input GLOB ... --output PATH ... [--env NAME ...] [--remote URL] -- COMMAND ...``:
  restore the outputs of an identical earlier run (and replay its stdout, stderr and exit
  status), or run the command and cache what it produced. The exit status is the command's;
  a hit prints the time saved on stderr. With INCREMENTAL_CACHE off the command just runs,
  and a note says how to turn the cache on (a kill switch must not break builds).
- ``stats``: what the local cache holds, hits, misses and time saved (all runs so far).
- ``gc --max-size SIZE``: evict least recently used entries down to SIZE (``500M``, ``2G``).
- ``clear``: remove everything (entries, stat cache, counters, locks).

The cache directory is ``--cache-dir``, else ``$REGISTRY_CORE_CACHE_DIR``, else
``$XDG_CACHE_HOME/registry-core/build`` (``~/.cache/registry-core/build``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["add_cache_parser", "default_cache_dir", "parse_size"]

_FLAG_OFF_NOTE = (
    "registry-core cache: INCREMENTAL_CACHE is off (it is experimental), so the command runs "
    "without the cache; turn it on with REGISTRY_CORE_FLAGS=INCREMENTAL_CACHE=on or "
    "[tool.registry-core.flags] INCREMENTAL_CACHE = true in pyproject.toml"
)
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from ``"123"``, ``"500K"``, ``"1.5G"``, ``"2GiB"`` (binary units: K = 1024)."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise InvalidArgumentError(f"bad size {text!r}: use a number with K, M, G or T")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise InvalidArgumentError(f"size {text!r} must be positive")
    return value


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def default_cache_dir() -> Path:
    """``$REGISTRY_CORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/registry-core/build``."""
    explicit = os.environ.get("REGISTRY_CORE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "registry-core" / "build"


def _cache_dir(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _remote_tier(url: str) -> Any:
    if url.startswith(("redis://", "rediss://", "unix://")):
        from ..cache import RedisActionTier, RedisStore

        return RedisActionTier(RedisStore(url, timeout=2.0, retries=1))
    if url.startswith(("http://", "https://")):
        import importlib

        try:
            bazel = importlib.import_module("registry_core.cache._bazel")
        except ImportError as exc:  # pragma: no cover - a build without the Bazel tier
            raise InvalidArgumentError(
                f"the Bazel HTTP remote tier is not available in this build: {exc}"
            ) from exc
        return bazel.BazelHTTPTier(url, env=os.environ)  # credentials: see docs/cache.md
    raise InvalidArgumentError(
        f"--remote {url!r}: use redis://HOST:PORT/DB or an http(s):// Bazel remote cache URL"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise InvalidArgumentError("no command given: registry-core cache run ... -- COMMAND")
    flags = args.flags
    if not flags.is_enabled("INCREMENTAL_CACHE"):
        from ..cache._run import execute

        print(_FLAG_OFF_NOTE, file=sys.stderr, flush=True)
        code, *_rest = execute(command, cwd=args.cwd or os.getcwd(), environ=os.environ, echo=True)
        return code

    from ..cache import BuildCache, LocalStore

    # No fsync: a cache is verified on every read (a torn object is a miss, dropped, rebuilt),
    # and two fsyncs per stored blob dominated small builds' overhead.
    opts: dict[str, Any] = {"fsync": False}
    if args.max_size is not None:
        opts["max_bytes"] = args.max_size
    local = LocalStore(_cache_dir(args), **opts)
    remote = _remote_tier(args.remote) if args.remote else None
    cache = BuildCache(local, remote, flags=flags)
    try:
        result = cache.run(
            command,
            inputs=args.inputs,
            outputs=args.outputs,
            env=args.env,
            cwd=args.cwd,
            cache_failures=args.cache_failures,
            echo=True,
        )
    finally:
        local.close()
        if remote is not None:
            remote.close()
    if not args.quiet:
        if result.hit:
            note = f"hit ({result.tier}), saved {result.saved_s:.3f} s"
        else:
            kept = "cached" if result.stored else "not cached"
            note = f"miss, ran in {result.duration_s:.3f} s, {kept}"
        print(f"registry-core cache: {note} [{result.key[:12]}]", file=sys.stderr, flush=True)
    return result.exit_code


def _open_existing(args: argparse.Namespace) -> Any:
    from ..cache import LocalStore

    root = _cache_dir(args)
    if not (root / "index.sqlite").exists():
        return None
    return LocalStore(root)


def _cmd_stats(args: argparse.Namespace) -> int:
    from ..cache import StatCache

    root = _cache_dir(args)
    store = _open_existing(args)
    if store is None:
        doc: dict[str, Any] = {"cache_dir": str(root), "exists": False}
    else:
        with store:
            keys = store.keys_lru()
            counters = StatCache(root / "stat.bin").counters()
            doc = {
                "cache_dir": str(root),
                "exists": True,
                "actions": sum(1 for k in keys if k.startswith("ac/")),
                "blobs": sum(1 for k in keys if k.startswith("cas/")),
                "other_keys": sum(1 for k in keys if not k.startswith(("ac/", "cas/"))),
                "bytes": store.total_bytes,
                "hits": counters.get("hits", 0),
                "misses": counters.get("misses", 0),
                "saved_s": counters.get("saved_ms", 0) / 1000,
                "stat_entries": len(StatCache(root / "stat.bin")),
            }
    if args.json:
        print(json.dumps(doc, indent=1))
    elif not doc["exists"]:
        print(f"no cache at {root}")
    else:
        runs = doc["hits"] + doc["misses"]
        rate = f" ({100 * doc['hits'] / runs:.0f}% hits)" if runs else ""
        print(
            f"cache directory  {root}\n"
            f"action results   {doc['actions']}\n"
            f"blobs            {doc['blobs']}\n"
            f"stored bytes     {_human(doc['bytes'])}\n"
            f"runs             {runs}: {doc['hits']} hits, {doc['misses']} misses{rate}\n"
            f"time saved       {doc['saved_s']:.3f} s\n"
            f"stat cache       {doc['stat_entries']} files"
        )
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    store = _open_existing(args)
    if store is None:
        print(f"no cache at {_cache_dir(args)}")
        return 0
    with store:
        removed = store.gc(args.max_size)
        locks = _prune_locks(store)
        print(
            f"removed {removed} object(s) and {locks} idle lock file(s); "
            f"{_human(store.total_bytes)} kept"
        )
    return 0


def _prune_locks(store: Any) -> int:
    """Unlink the lock files of actions no longer cached that nobody holds (a waiter that
    opened one just before sees its inode gone and takes the new file's lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return 0
    locks = store.root / "locks"
    if not locks.is_dir():
        return 0
    pruned = 0
    for entry in os.scandir(locks):
        if ("ac/" + entry.name) in store:
            continue
        try:
            fd = os.open(entry.path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry.path)
            pruned += 1
        except OSError:
            pass  # held: an action is running
        finally:
            os.close(fd)
    return pruned


def _cmd_clear(args: argparse.Namespace) -> int:
    from ..cache import StatCache

    root = _cache_dir(args)
    store = _open_existing(args)
    if store is None:
        print(f"no cache at {root}")
        return 0
    with store:
        keys = store.clear()
    files = StatCache(root / "stat.bin").forget()
    locks = root / "locks"
    if locks.is_dir():
        for entry in os.scandir(locks):
            with contextlib.suppress(OSError):  # a holder keeps its lock: it checks the inode
                os.unlink(entry.path)
    print(f"cleared {keys} key(s) and {files} stat cache entr(y/ies) from {root}")
    return 0


def add_cache_parser(sub: Any) -> None:
    """Add ``cache run | stats | gc | clear`` to the ``registry-core`` sub-parsers."""
    p = sub.add_parser("cache", help="cache build commands by the content of their inputs")
    p.set_defaults(command_name="cache")
    csub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")

    def common(q: Any) -> None:
        q.add_argument("--cache-dir", metavar="DIR", default=None, help="the local cache")

    r = csub.add_parser(
        "run",
        help="run a command, or restore its outputs from an identical earlier run",
        usage="%(prog)s [--input GLOB ...] [--output PATH ...] [--env NAME ...] "
        "[--remote URL] [--cache-dir DIR] -- COMMAND ...",
    )
    r.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="GLOB",
        help="input files (glob relative to the working directory; directories are walked)",
    )
    r.add_argument(
        "--output",
        dest="outputs",
        action="append",
        default=[],
        metavar="PATH",
        help="a file the command writes (restored on a hit)",
    )
    r.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME",
        help="an environment variable whose value counts (absent and empty differ)",
    )
    r.add_argument(
        "--remote",
        metavar="URL",
        default=None,
        help="redis://... or a Bazel http(s):// remote cache (token: "
        "REGISTRY_CORE_REMOTE_CACHE_TOKEN)",
    )
    r.add_argument(
        "--max-size",
        type=_size_arg,
        default=None,
        metavar="SIZE",
        help="the local cache's size bound (default 1G)",
    )
    r.add_argument("--cwd", metavar="DIR", default=None, help="run there (default: here)")
    r.add_argument(
        "--cache-failures",
        action="store_true",
        help="cache a failed run too (replayed with its exit status)",
    )
    r.add_argument("-q", "--quiet", action="store_true", help="no hit/miss line on stderr")
    common(r)
    r.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    r.set_defaults(func=_cmd_run, command_name="cache run")

    s = csub.add_parser("stats", help="entries, bytes, hits, misses and time saved")
    s.add_argument("--json", action="store_true", help="as JSON")
    common(s)
    s.set_defaults(func=_cmd_stats, command_name="cache stats")

    g = csub.add_parser("gc", help="evict least recently used entries down to a size")
    g.add_argument(
        "--max-size",
        type=_size_arg,
        required=True,
        metavar="SIZE",
        help="keep at most this much (500M, 2G ...)",
    )
    common(g)
    g.set_defaults(func=_cmd_gc, command_name="cache gc")

    c = csub.add_parser("clear", help="remove every entry, the stat cache and the counters")
    common(c)
    c.set_defaults(func=_cmd_clear, command_name="cache clear")
