"""The benchmark corpus: pinned real PyPI artifacts, in release order.

Benchmarks run from the repository root (``python benchmarks/bench_x.py``) import this module
as ``_corpus`` (the script's directory is on ``sys.path``)::

    from _corpus import corpus_dir, pairs, series

    for s in series(kinds=["wheel-native"]):
        print(s.name, s.kind, [p.name for p in s.paths])
    for name, kind, old, new in pairs(kinds=["sdist"]):
        ...

- ``corpus_dir() -> Path``: ``--dir`` is not known here, so the location is
  ``$REGISTRY_CORE_CORPUS`` if set, else ``~/.cache/registry-core/corpus``. Each series lives in
  its own sub-directory named after the series (``<corpus>/<series name>/<artifact>``).
- ``SERIES``: the pinned manifest (``SeriesSpec(name, kind, project, versions)``), consecutive
  releases of each series in release order. ``benchmarks/fetch_corpus.py`` downloads it.
- ``series(kinds=None) -> list[Series]``: ``Series(name, kind, paths)`` with ``kind`` one of
  ``"wheel-pure"``, ``"wheel-native"``, ``"sdist"``; ``paths`` holds only the artifacts present
  on disk, in release order. Series with no artifact present are left out.
- ``pairs(kinds=None)``: yields ``(series_name, kind, old_path, new_path)`` for each two
  consecutive releases present in a series (a gap in the download shortens the chain, it does
  not pair releases across it).

Only the standard library is imported, so any benchmark can use it cheaply.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "KINDS",
    "SERIES",
    "Series",
    "SeriesSpec",
    "corpus_dir",
    "find_artifact",
    "pairs",
    "series",
]

KINDS = ("wheel-pure", "wheel-native", "sdist")


class SeriesSpec(NamedTuple):
    """One pinned series: ``versions`` are consecutive releases, oldest first."""

    name: str
    kind: str
    project: str
    versions: tuple[str, ...]


class Series(NamedTuple):
    """A series as present on disk: ``paths`` in release order (missing releases skipped)."""

    name: str
    kind: str
    paths: list[Path]


# Native wheels are fetched for CPython 3.11 on manylinux2014 x86_64 (see fetch_corpus.py).
SERIES: tuple[SeriesSpec, ...] = (
    # pure-Python wheels
    SeriesSpec(
        "boto3-wheel", "wheel-pure", "boto3", tuple(f"1.34.{i}" for i in range(0, 12))
    ),  # 12 consecutive releases
    SeriesSpec(
        "requests-wheel",
        "wheel-pure",
        "requests",
        ("2.31.0", "2.32.0", "2.32.1", "2.32.2", "2.32.3"),
    ),
    SeriesSpec("attrs-wheel", "wheel-pure", "attrs", ("23.1.0", "23.2.0", "24.1.0", "24.2.0")),
    SeriesSpec(
        "packaging-wheel", "wheel-pure", "packaging", ("23.0", "23.1", "23.2", "24.0", "24.1")
    ),
    SeriesSpec(
        "botocore-wheel",
        "wheel-pure",
        "botocore",  # ~11 MB, many .json.gz
        ("1.34.0", "1.34.1", "1.34.2", "1.34.3"),
    ),
    # wheels with native code
    SeriesSpec("orjson-wheel", "wheel-native", "orjson", ("3.9.10", "3.9.11", "3.9.12", "3.9.13")),
    SeriesSpec("markupsafe-wheel", "wheel-native", "markupsafe", ("2.1.3", "2.1.4", "2.1.5")),
    SeriesSpec("zstandard-wheel", "wheel-native", "zstandard", ("0.21.0", "0.22.0", "0.23.0")),
    SeriesSpec(
        "pydantic-core-wheel", "wheel-native", "pydantic-core", ("2.14.4", "2.14.5", "2.14.6")
    ),
    # source distributions (.tar.gz)
    SeriesSpec("requests-sdist", "sdist", "requests", ("2.31.0", "2.32.2", "2.32.3")),
    SeriesSpec("attrs-sdist", "sdist", "attrs", ("23.1.0", "23.2.0", "24.1.0", "24.2.0")),
    SeriesSpec("six-sdist", "sdist", "six", ("1.15.0", "1.16.0", "1.17.0")),
)


def corpus_dir() -> Path:
    """Where the corpus lives: ``$REGISTRY_CORE_CORPUS`` or ``~/.cache/registry-core/corpus``."""
    env = os.environ.get("REGISTRY_CORE_CORPUS")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "registry-core" / "corpus"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def find_artifact(spec: SeriesSpec, version: str, root: Path | None = None) -> Path | None:
    """The downloaded artifact of ``spec`` at ``version``, or None if it is not on disk."""
    folder = (root or corpus_dir()) / spec.name
    if not folder.is_dir():
        return None
    want = f"{_norm(spec.project)}-{version}"
    suffixes = (".whl",) if spec.kind.startswith("wheel") else (".tar.gz",)
    for path in sorted(folder.iterdir()):
        name = path.name
        if not name.endswith(suffixes):
            continue
        stem = name[: -len(".whl")] if name.endswith(".whl") else name[: -len(".tar.gz")]
        head = stem.split("-")
        # wheel: name-version-tags...; sdist: name-version (name normalised or not)
        if len(head) >= 2 and f"{_norm(head[0])}-{head[1]}" == want:
            return path
    return None


def _wanted(kinds: Iterable[str] | None) -> set[str]:
    if kinds is None:
        return set(KINDS)
    if isinstance(kinds, str):
        kinds = [kinds]
    wanted = set(kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown corpus kind(s) {sorted(unknown)}; known: {list(KINDS)}")
    return wanted


def series(kinds: Iterable[str] | None = None) -> list[Series]:
    """Series present on disk (optionally only those of ``kinds``), files in release order."""
    wanted = _wanted(kinds)
    root = corpus_dir()
    out: list[Series] = []
    for spec in SERIES:
        if spec.kind not in wanted:
            continue
        paths = [p for v in spec.versions if (p := find_artifact(spec, v, root)) is not None]
        if paths:
            out.append(Series(spec.name, spec.kind, paths))
    return out


def pairs(kinds: Iterable[str] | None = None) -> Iterator[tuple[str, str, Path, Path]]:
    """``(series_name, kind, old_path, new_path)`` for consecutive releases present on disk."""
    wanted = _wanted(kinds)
    root = corpus_dir()
    for spec in SERIES:
        if spec.kind not in wanted:
            continue
        found = [find_artifact(spec, v, root) for v in spec.versions]
        for old, new in itertools.pairwise(found):
            if old is not None and new is not None:
                yield spec.name, spec.kind, old, new
