"""Training workload for profile-guided optimisation of the C core.

Exercises the hot loops the way registries do, offline and deterministic (seeded, no corpus):
FastCDC chunking (one buffer and streamed), match finding and patch apply on text-like and
binary-like pairs, archive deltas over generated wheels (what ``DeltaAggregator`` does with real
releases: members inflated, diffed, deflate streams rebuilt), and the deflate tokenizer /
reference-model reconstruction when the core has them (probed with ``hasattr``, so the script
runs on cores built before and after they were added). ``--quick`` trains on smaller inputs;
``--print-deps`` prints the runtime requirements from pyproject.toml (stdlib only, so a bare
build environment can install what the training run imports).

Run with the instrumented core importable (``PYTHONPATH=src`` after an in-place
``REGISTRY_CORE_PGO=generate`` build); prints what it exercised.
"""

from __future__ import annotations

import argparse
import io
import random
import re
import zipfile
import zlib


def _text(rnd: random.Random, n_words: int) -> bytes:
    words = [
        bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rnd.randrange(2, 12)))
        for _ in range(2000)
    ]
    return b" ".join(rnd.choice(words) for _ in range(n_words))


def _source_like(rnd: random.Random, n_lines: int) -> bytes:
    """Python-looking lines: repetitive enough for long matches, varied enough for literals."""
    names = [f"name_{i}" for i in range(300)]
    lines = []
    for i in range(n_lines):
        a, b = rnd.choice(names), rnd.choice(names)
        kind = rnd.randrange(4)
        if kind == 0:
            lines.append(f"def {a}_{i}({b}, value={rnd.randrange(1000)}):")
        elif kind == 1:
            lines.append(f"    return {a}.{b}(value) + {rnd.random():.6f}")
        elif kind == 2:
            lines.append(f"    # {a} then {b}: see issue {rnd.randrange(99)}")
        else:
            lines.append(f'    {a} = {{"{b}": {rnd.randrange(1 << 20)}, "n": {i}}}')
    return ("\n".join(lines) + "\n").encode()


def _edit(rnd: random.Random, data: bytes, n_edits: int) -> bytes:
    new = bytearray(data)
    for _ in range(n_edits):
        i = rnd.randrange(len(new))
        new[i : i + rnd.randrange(0, 40)] = rnd.randbytes(rnd.randrange(0, 40))
    return bytes(new)


def _wheel(members: dict[str, bytes], level: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def chunking(text: bytes, binary: bytes) -> None:
    from registry_core.chunking import Chunker, chunks

    for data in (text, binary):
        chunks(data)
        c = Chunker()
        for i in range(0, len(data), 65536):
            c.feed(data[i : i + 65536])
        c.finish()


def match_and_apply(rnd: random.Random, text: bytes, binary: bytes) -> None:
    from registry_core.delta import _binary

    for old in (text, binary):
        new = _edit(rnd, old, 300)
        streams = _binary.encode(old, new)
        assert _binary.apply(old, streams, len(new)) == new


def archives(rnd: random.Random, n_members: int, lines: int) -> None:
    from registry_core import DeltaAggregator

    base = {f"pkg/mod_{i}.py": _source_like(rnd, lines) for i in range(n_members)}
    base["pkg/data.bin"] = rnd.randbytes(lines * 20)
    agg = DeltaAggregator()
    old = _wheel(base, 6)
    for step in range(3):
        changed = dict(base)
        for name in rnd.sample(sorted(base), max(1, n_members // 3)):
            changed[name] = _edit(rnd, base[name], 20)
        changed[f"pkg/new_{step}.py"] = _source_like(rnd, lines // 4)
        new = _wheel(changed, 6 if step != 2 else 9)
        patch = agg.diff(old, new)
        assert agg.apply(old, patch) == new
        old, base = new, changed


def deflate(rnd: random.Random, lines: int) -> bool:
    """Tokenize / re-encode and record / rebuild streams of several encoders' settings; False
    when this core predates the deflate functions."""
    from registry_core._native import lib

    if not (hasattr(lib, "rc_deflate_tokenize") and hasattr(lib, "rc_deflate_record")):
        return False
    from registry_core.delta import _reconstruct

    content = _source_like(rnd, lines)
    settings = [(1, 8, 0), (6, 8, 0), (9, 8, 0), (6, 9, 0), (9, 7, 0), (6, 8, zlib.Z_FILTERED)]
    for level, mem, strategy in settings:
        co = zlib.compressobj(level, zlib.DEFLATED, -15, mem, strategy)
        stream = co.compress(content) + co.flush()
        limit = len(content) + 1024
        t = _reconstruct.tokenize(stream, max_content=limit)
        assert _reconstruct.encode(t.content, t.tokens, t.blocks, max_output=len(stream)) == stream
        record, _ = _reconstruct.correction_record(stream, max_content=limit)
        assert _reconstruct.rebuild_stream(content, record, len(stream)) == stream
    return True


def runtime_requirements(pyproject: str) -> list[str]:
    """``[project] dependencies`` of a pyproject.toml text (no tomllib on Python 3.10)."""
    match = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", pyproject, re.S | re.M)
    if not match:
        raise SystemExit("pyproject.toml: [project] dependencies not found")
    body = "\n".join(line.split("#", 1)[0] for line in match.group(1).splitlines())
    return re.findall(r'"([^"]+)"', body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs (tests)")
    parser.add_argument(
        "--print-deps", action="store_true", help="runtime requirements, one a line"
    )
    args = parser.parse_args()
    if args.print_deps:
        from pathlib import Path

        pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
        print("\n".join(runtime_requirements(pyproject)))
        return
    scale = 8 if args.quick else 1
    rnd = random.Random(2026)
    text = _text(rnd, 1_500_000 // scale)
    binary = rnd.randbytes((4 << 20) // scale)
    chunking(text, binary)
    match_and_apply(rnd, text[: (3 << 20) // scale], binary)
    archives(rnd, 12, 2000 // scale)
    trained = ["chunking", "match finding + apply", "archive deltas"]
    if deflate(rnd, 6000 // scale):
        trained.append("deflate tokenize/record/rebuild")
    print("PGO training:", ", ".join(trained))


if __name__ == "__main__":
    main()
