"""``registry-core index rebuild|yank|unyank``: maintain the index database."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError
from ._output import counts


def open_index(directory: str) -> Any:
    """``Index(directory)``; refuses a path that is not an existing directory (an index is
    never created by a typo)."""
    if not Path(directory).is_dir():
        raise InvalidArgumentError(f"{directory}: not a directory")
    from ..index import Index

    return Index(directory)


def _cmd_rebuild(args: argparse.Namespace) -> int:
    index = open_index(args.directory)
    try:
        report = index.rebuild()
        projects = len(index.projects())
    finally:
        index.close()
    print(f"{args.directory}: index rebuilt ({counts(report)}); {projects} projects")
    for path, reason in report.rejected:  # left out, say why (the files stay where they are)
        print(f"  rejected {path}: {reason}")
    return 0


def _cmd_yank(args: argparse.Namespace) -> int:
    index = open_index(args.directory)
    try:
        if args.index_command == "yank":
            index.yank(args.filename, args.reason)
            why = f" ({args.reason})" if args.reason else ""
            print(f"{args.filename}: yanked{why}; installers skip it unless it is pinned with ==")
        else:
            index.unyank(args.filename)
            print(f"{args.filename}: no longer yanked")
    finally:
        index.close()
    return 0


def add_index_parser(sub: Any) -> None:
    """Add ``index rebuild|yank|unyank`` to an ``argparse`` subparsers object."""
    index = sub.add_parser("index", help="maintain the index database")
    verbs = index.add_subparsers(
        dest="index_command", required=True, metavar="{rebuild,yank,unyank}"
    )
    p = verbs.add_parser(
        "rebuild",
        help="index files added to DIR by hand, drop rows of vanished files",
        description="Index every distribution file in DIR that the database does not know "
        "(core metadata extracted), drop rows whose file is gone and fix rows whose bytes "
        "changed; prints the counts. serve does this at every start.",
    )
    p.add_argument("directory", help="the index directory")
    p.set_defaults(func=_cmd_rebuild, command_name="index rebuild")
    p = verbs.add_parser(
        "yank",
        help="mark a file yanked (PEP 592): kept and downloadable, skipped unless pinned",
        description='Mark FILENAME yanked: its pages say so (data-yanked / "yanked"), pip and '
        "uv skip it unless a requirement pins its version with ==. The file is not removed.",
    )
    p.add_argument("directory", help="the index directory")
    p.add_argument("filename", help="the distribution's file name, e.g. demo-1.0-py3-none-any.whl")
    p.add_argument("--reason", default="", help="shown by installers (default: none)")
    p.set_defaults(func=_cmd_yank, command_name="index yank")
    p = verbs.add_parser("unyank", help="undo yank")
    p.add_argument("directory", help="the index directory")
    p.add_argument("filename", help="the distribution's file name")
    p.set_defaults(func=_cmd_yank, command_name="index unyank")
