"""Structured-field parsing: registry-core's ``wire._sf`` against the ``http-sf`` package.

The fields a client parses on every response (Content-Digest / Repr-Digest with one and two
members, one with a parameter), Available-Dictionary (an Item), Use-As-Dictionary (a
Dictionary with strings and an inner list) and A-IM (a List of Tokens). Best of 5 runs of N
parses each; microseconds per parse. ``http-sf`` rows are shown when it is importable
(``pip install http-sf``); it was not adopted because it measured slower (see docs/wire.md).

    .venv/bin/python benchmarks/bench_sf.py [--n 20000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import timeit

from registry_core.wire import _sf

SHA256 = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
SHA512 = base64.b64encode(hashlib.sha512(b"x").digest()).decode()
CASES = [
    ("Repr-Digest (1 member)", "dictionary", f"sha-256=:{SHA256}:"),
    (
        "Content-Digest (2 members, param)",
        "dictionary",
        f'sha-512=:{SHA512}:, sha-256=:{SHA256}:;note="a,b"',
    ),
    ("Available-Dictionary (item)", "item", f":{SHA256}:"),
    (
        "Use-As-Dictionary",
        "dictionary",
        'match="/simple/pkg/*", match-dest=("document" "frame"), id="pkg-1.0"',
    ),
    ("A-IM (list of tokens)", "list", "rcdelta, vcdiff;q=0.5"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    try:
        import http_sf
    except ImportError:
        http_sf = None
    ours = {"item": _sf.parse_item, "list": _sf.parse_list, "dictionary": _sf.parse_dictionary}
    print(f"{'field':38} {'wire._sf us':>12} {'http-sf us':>11} {'ratio':>6}")
    for name, kind, value in CASES:
        fn = ours[kind]
        t_ours = (
            min(timeit.repeat(lambda fn=fn, value=value: fn(value), number=args.n, repeat=5))
            / args.n
        )
        row = f"{name:38} {t_ours * 1e6:12.2f}"
        if http_sf is not None:
            raw = value.encode()
            t_sf = (
                min(
                    timeit.repeat(
                        lambda raw=raw, kind=kind: http_sf.parse(raw, tltype=kind),
                        number=args.n,
                        repeat=5,
                    )
                )
                / args.n
            )
            row += f" {t_sf * 1e6:11.2f} {t_sf / t_ours:6.2f}"
        else:
            row += f" {'-':>11} {'-':>6}"
        print(row)


if __name__ == "__main__":
    main()
