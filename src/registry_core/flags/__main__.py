"""``python -m registry_core.flags``: show the flags in force and where each value comes from.

    python -m registry_core.flags                       # table: flag, stage, value, source
    python -m registry_core.flags --json                # the same as JSON
    python -m registry_core.flags --config flags.toml   # read this file instead of pyproject
    python -m registry_core.flags --tenant acme --key client-42 --attr region=eu

With a context (``--tenant``, ``--key``, ``--attr``) the table also shows each flag's decision
for it. A malformed source exits with status 2 and the error, so this doubles as a config check.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import FlagError
from ._flags import FeatureFlags


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m registry_core.flags", description=__doc__)
    ap.add_argument("--config", help="a TOML file with a [flags] table (or a pyproject.toml)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--tenant")
    ap.add_argument("--key")
    ap.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    try:
        flags = FeatureFlags.load(config=args.config)
        context: dict[str, Any] | None = None
        if args.tenant or args.key or args.attr:
            attrs = {}
            for item in args.attr:
                name, sep, value = item.partition("=")
                if not sep or not name:
                    ap.error(f"--attr takes NAME=VALUE, got {item!r}")
                attrs[name] = value
            context = {"tenant": args.tenant, "key": args.key, "attributes": attrs}
        states = flags.describe()
        rows = [
            {
                "flag": s.name,
                "stage": str(s.stage),
                "component": s.component,
                "value": s.value if isinstance(s.value, bool) else str(s.value),
                "source": s.source,
                **({"for_context": flags.is_enabled(s.name, context)} if context else {}),
            }
            for s in states.values()
        ]
    except FlagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the working directory was removed: no pyproject to find
        print(f"error: cannot look for the flags file: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        value = row["value"]
        shown = ("on" if value else "off") if isinstance(value, bool) else value
        decided = f"  -> {'on' if row['for_context'] else 'off'}" if context else ""
        print(f"{row['flag']:<20} {row['stage']:<13} {shown:<8} {row['source']}{decided}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
