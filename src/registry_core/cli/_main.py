"""The ``registry-core`` command: diff, apply, info, serve. Nothing imports this module.

Each command prints one summary line (sizes, percent saved, time) and exits non-zero with a
one-line message on a registry-core error. Flags are resolved here, once, where the process
starts (``FeatureFlags.load()``: ``REGISTRY_CORE_FLAGS`` and the nearest ``pyproject.toml``), and
passed down; the library itself never looks them up. When stderr is a terminal, work that takes
longer than a second shows a progress line there.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from .._version import __version__
from ..errors import RegistryCoreError

T = TypeVar("T")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


class Progress:
    """A one-line ``what... 3s`` ticker on a terminal, shown once work has taken ``delay``
    seconds, redrawn every ``interval``, erased when the work ends. Silent when ``stream`` is
    not a terminal (pipes, CI logs), so output stays one summary line."""

    def __init__(
        self,
        what: str,
        stream: IO[str] | None = None,
        *,
        delay: float = 1.0,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.stream = sys.stderr if stream is None else stream
        self.delay = delay
        self.interval = interval
        self.clock = clock
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.shown = False

    def __enter__(self) -> Progress:
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            self._start = self.clock()
            self._thread = threading.Thread(
                target=self._run, name="registry-core-progress", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        if self._done.wait(self.delay):
            return
        while True:
            self.shown = True
            self.stream.write(f"\r{self.what}... {self.clock() - self._start:.0f}s")
            self.stream.flush()
            if self._done.wait(self.interval):
                return

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            if self.shown:
                self.stream.write("\r\033[K")  # erase the line: the summary follows
                self.stream.flush()


def _timed(what: str, fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    with Progress(what):
        result = fn()
    return result, time.perf_counter() - t0


def _cmd_diff(args: argparse.Namespace) -> int:
    from ..delta import DeltaAggregator

    agg = DeltaAggregator(
        **({"archive_aware": False} if args.no_archive else {}),
        level=args.level,
        flags=args.flags,
    )
    info, dt = _timed(
        f"diffing {args.old} -> {args.new}", lambda: agg.diff_file(args.old, args.new, args.output)
    )
    print(
        f"{args.output}: {info.method} patch {_size(info.patch_size)} for a "
        f"{_size(info.target_size)} target ({100 * info.saved:.2f}% saved) in {dt:.2f}s"
    )
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from ..delta import DeltaAggregator

    agg = DeltaAggregator(max_output_size=args.max_output_size, flags=args.flags)
    info, dt = _timed(
        f"applying {args.patch} to {args.old}",
        lambda: agg.apply_file(args.old, args.patch, args.output),
    )
    print(
        f"{args.output}: {_size(info.target_size)} rebuilt and verified (sha256 "
        f"{info.target_sha256[:16]}...) from a {_size(info.patch_size)} {info.method} patch "
        f"({100 * info.saved:.2f}% saved) in {dt:.2f}s"
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ..delta import DeltaAggregator

    info = DeltaAggregator.inspect(Path(args.patch).read_bytes())
    sections = ", ".join(f"{k} {raw}->{stored}" for k, (raw, stored) in info.sections.items())
    print(
        f"{args.patch}: {info.method} patch {_size(info.patch_size)}, base {_size(info.base_size)} "
        f"sha256 {info.base_sha256[:16]}..., target {_size(info.target_size)} sha256 "
        f"{info.target_sha256[:16]}...; sections: {sections}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry-core", description="Bandwidth-saving package updates for registries."
    )
    parser.add_argument("--version", action="version", version=f"registry-core {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("diff", help="make a patch from OLD to NEW")
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="patch file to write")
    p.add_argument("--level", type=int, default=19, help="zstd level of the patch streams")
    p.add_argument("--no-archive", action="store_true", help="plain binary delta only")
    p.set_defaults(func=_cmd_diff)

    p = sub.add_parser("apply", help="rebuild NEW from OLD and a patch (verified)")
    p.add_argument("old", type=Path)
    p.add_argument("patch", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    p.add_argument("--max-output-size", type=int, default=2 << 30)
    p.set_defaults(func=_cmd_apply)

    p = sub.add_parser("info", help="describe a patch")
    p.add_argument("patch", type=Path)
    p.set_defaults(func=_cmd_info)

    from ._serve import add_serve_parser  # light: hypercorn loads only when serving

    add_serve_parser(sub)
    return parser


def _load_flags() -> Any:
    """The process's flags, resolved once here at the edge (env + nearest pyproject.toml)."""
    from ..flags import FeatureFlags

    return FeatureFlags.load()


@contextmanager
def _one_line_errors(command: str) -> Iterator[None]:
    try:
        yield
    except (RegistryCoreError, OSError) as exc:
        print(f"registry-core {command}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except MemoryError:
        print(
            f"registry-core {command}: error: out of memory (the input needs more memory "
            "than this machine has; the limits in docs/security.md bound untrusted input)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _one_line_errors(args.command):
            args.flags = _load_flags()
            return int(args.func(args) or 0)
    except SystemExit as exc:
        return int(exc.code or 0)
