"""Distribution filenames and the choice of one file for this interpreter, sans-IO.

:func:`dist_info` reads a wheel or sdist filename (packaging's grammar); :func:`choose_file`
picks what pip would install for one requirement from a project page's files: the highest
version the specifier allows (pre-releases only when the specifier names one or nothing else
matches), skipping yanked files unless pinned with ``==``/``===`` (PEP 592) and files whose
``requires-python`` excludes this Python, then the wheel whose tags rank first in this
interpreter's ``packaging.tags.sys_tags()`` order, else the sdist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packaging.version import Version

    from ..index._simple import SimpleFile

__all__ = ["DistInfo", "choose_file", "dist_info"]

_SDIST_SUFFIXES = (".tar.gz", ".zip")


@dataclass(frozen=True)
class DistInfo:
    """What a distribution filename says: normalized project, version, kind, wheel tags."""

    project: str
    version: Version
    kind: str  # "wheel" | "sdist"
    tags: frozenset[str]


def dist_info(filename: str) -> DistInfo | None:
    """Parse a wheel or sdist filename; None when it is neither (or malformed)."""
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )
    from packaging.version import InvalidVersion

    try:
        if filename.endswith(".whl"):
            name, version, _build, tags = parse_wheel_filename(filename)
            return DistInfo(str(name), version, "wheel", frozenset(str(t) for t in tags))
        if filename.endswith(_SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            return DistInfo(str(name), version, "sdist", frozenset())
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def _python_ok(requires_python: str | None, python_version: str) -> bool:
    if not requires_python:
        return True
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(requires_python).contains(python_version, prereleases=True)
    except InvalidSpecifier:
        return True  # pip ignores an unparsable requires-python too


def choose_file(
    files: Sequence[SimpleFile],
    specifier: Any,
    *,
    python_version: str,
    tags: Sequence[str],
) -> SimpleFile | None:
    """The file to install for ``specifier`` (a ``packaging.specifiers.SpecifierSet``).

    ``tags``: this interpreter's supported tags as strings, most preferred first.
    """
    rank = {t: i for i, t in enumerate(tags)}
    pinned = any(s.operator in ("==", "===") and "*" not in s.version for s in specifier)
    candidates: list[tuple[Version, int, SimpleFile]] = []
    for f in files:
        info = dist_info(f.filename)
        if info is None:
            continue
        if f.yanked is not False and not pinned:
            continue
        if not _python_ok(f.requires_python, python_version):
            continue
        if info.kind == "wheel":
            best = min((rank[t] for t in info.tags if t in rank), default=None)
            if best is None:
                continue
            order = best
        else:
            order = len(rank)  # an sdist comes after every compatible wheel
        candidates.append((info.version, order, f))
    for prereleases in (bool(specifier.prereleases), True):
        allowed = [c for c in candidates if specifier.contains(c[0], prereleases=prereleases)]
        if allowed:
            top = max(c[0] for c in allowed)
            return min((c for c in allowed if c[0] == top), key=lambda c: c[1])[2]
    return None
