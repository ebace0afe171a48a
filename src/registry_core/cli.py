"""The ``registry-core`` command: diff, apply, info, serve. Nothing imports this module.

Each command prints one summary line (sizes, percent saved, time) and exits non-zero with a
one-line message on a registry-core error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import RegistryCoreError


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _cmd_diff(args: argparse.Namespace) -> int:
    from .delta import DeltaAggregator

    agg = DeltaAggregator(**({"archive_aware": False} if args.no_archive else {}), level=args.level)
    t0 = time.perf_counter()
    info = agg.diff_file(args.old, args.new, args.output)
    dt = time.perf_counter() - t0
    print(
        f"{args.output}: {info.method} patch {_size(info.patch_size)} for a "
        f"{_size(info.target_size)} target ({100 * info.saved:.2f}% saved) in {dt:.2f}s"
    )
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from .delta import DeltaAggregator

    agg = DeltaAggregator(max_output_size=args.max_output_size)
    t0 = time.perf_counter()
    info = agg.apply_file(args.old, args.patch, args.output)
    dt = time.perf_counter() - t0
    print(
        f"{args.output}: {_size(info.target_size)} rebuilt and verified (sha256 "
        f"{info.target_sha256[:16]}...) from a {_size(info.patch_size)} {info.method} patch "
        f"({100 * info.saved:.2f}% saved) in {dt:.2f}s"
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .delta import DeltaAggregator

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

    from .cli_serve import add_serve_parser  # light: hypercorn loads only when serving

    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RegistryCoreError as exc:
        print(f"registry-core {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"registry-core {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
