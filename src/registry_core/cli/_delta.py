"""``registry-core diff | apply | info``: patches between two files, offline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._output import size as _size
from ._output import timed as _timed


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


def add_delta_parsers(sub: Any) -> None:
    """Add ``diff``, ``apply`` and ``info`` to an ``argparse`` subparsers object."""
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
