"""Project names, versions and distribution filenames (sans-IO).

The grammar is the packaging specifications', parsed with ``packaging.utils`` (the library
pip and PyPI use), wrapped so every refusal is an :class:`~registry_core.errors.
UploadRejectedError` that says what was wrong:

- names: PEP 503 normalization, PEP 508 validity;
- wheels: ``{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`` (PEP 427 / the binary
  distribution format), the name part escaped with ``_``, compressed tag sets expanded;
- sdists: ``{name}-{version}.tar.gz`` (PEP 625) and legacy ``.zip``.

Versions are kept in PEP 440 normalized form (``str(Version(v))``: ``1.0.0`` stays ``1.0.0``,
``1.0-RC1`` becomes ``1.0rc1``); comparisons use :class:`packaging.version.Version`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..errors import UploadRejectedError

__all__ = [
    "MAX_FILENAME_LENGTH",
    "ParsedFilename",
    "canonical_version",
    "is_valid_name",
    "normalize",
    "parse_filename",
    "sdist_filename",
    "version_key",
    "wheel_filename",
]

MAX_FILENAME_LENGTH = 255  # one path component on every common file system

_NORMALIZE = re.compile(r"[-_.]+")
_VALID_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_TAG_PART = re.compile(r"^[A-Za-z0-9_.]+$")


def normalize(name: str) -> str:
    """The PEP 503 normalized form of a project name (runs of ``-_.`` to ``-``, lower case)."""
    return _NORMALIZE.sub("-", name).lower()


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is a valid project name (PEP 508: ASCII letters, digits, ``-_.``,
    starting and ending with a letter or digit)."""
    return _VALID_NAME.match(name) is not None


def canonical_version(version: str) -> str:
    """The PEP 440 normalized form of ``version``; UploadRejectedError when it is not one."""
    try:
        return str(Version(version))
    except InvalidVersion:
        raise UploadRejectedError(f"{version!r} is not a valid PEP 440 version") from None


def version_key(version: str) -> tuple[int, Version | str]:
    """A sort key for stored versions: valid versions in PEP 440 order, after any invalid ones
    (which only a database written by something else could hold)."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


@dataclass(frozen=True)
class ParsedFilename:
    """What a distribution's filename says.

    ``project``: normalized name; ``version``: PEP 440 normalized; ``tags``: a wheel's expanded
    ``python-abi-platform`` tags (empty for an sdist); ``build``: a wheel's build tag or None.
    """

    project: str
    version: str
    kind: Literal["wheel", "sdist"]
    tags: frozenset[str] = field(default_factory=frozenset)
    build: str | None = None


def _check_basic(filename: object) -> str:
    if not isinstance(filename, str):
        raise UploadRejectedError(f"a filename must be a str, not {type(filename).__name__}")
    if not filename:
        raise UploadRejectedError("the filename is empty")
    if len(filename) > MAX_FILENAME_LENGTH:
        raise UploadRejectedError(f"the filename is longer than {MAX_FILENAME_LENGTH} characters")
    if not filename.isascii() or not filename.isprintable():
        raise UploadRejectedError(
            f"{filename!r} is not a distribution filename: only printable ASCII is allowed"
        )
    if "/" in filename or "\\" in filename or filename.startswith(".") or " " in filename:
        raise UploadRejectedError(
            f"{filename!r} is not a distribution filename: no path separators, spaces or "
            "leading dot"
        )
    return filename


def parse_filename(filename: str) -> ParsedFilename:
    """Parse a wheel or sdist filename; UploadRejectedError on anything else."""
    filename = _check_basic(filename)
    if filename.endswith(".whl"):
        return _parse_wheel(filename)
    if filename.endswith((".tar.gz", ".zip")):
        return _parse_sdist(filename)
    raise UploadRejectedError(
        f"{filename!r} is not a distribution filename: a wheel ends in .whl, an sdist in "
        ".tar.gz (or legacy .zip)"
    )


def _parse_wheel(filename: str) -> ParsedFilename:
    stem = filename[: -len(".whl")]
    parts = stem.split("-")
    if len(parts) not in (5, 6):
        raise UploadRejectedError(
            f"{filename!r} is not a valid wheel filename: expected "
            "name-version(-build)-python-abi-platform.whl"
        )
    if not is_valid_name(parts[0]) or "-" in parts[0]:
        raise UploadRejectedError(f"{filename!r} is not a valid wheel filename: bad project name")
    for part in parts[-3:]:
        if any(not p or not _TAG_PART.match(p) for p in part.split(".")):
            raise UploadRejectedError(
                f"{filename!r} is not a valid wheel filename: bad compatibility tag {part!r}"
            )
    try:
        name, version, _build, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion, ValueError) as e:
        raise UploadRejectedError(f"{filename!r} is not a valid wheel filename: {e}") from None
    return ParsedFilename(
        project=normalize(name),
        version=str(version),
        kind="wheel",
        tags=frozenset(str(t) for t in tags),
        build=parts[2] if len(parts) == 6 else None,
    )


def _parse_sdist(filename: str) -> ParsedFilename:
    try:
        name, version = parse_sdist_filename(filename)
    except (InvalidSdistFilename, InvalidVersion, ValueError) as e:
        raise UploadRejectedError(f"{filename!r} is not a valid sdist filename: {e}") from None
    stem = filename[: -len(".tar.gz")] if filename.endswith(".tar.gz") else filename[: -len(".zip")]
    name_part = stem.rpartition("-")[0]
    if not is_valid_name(name_part):
        raise UploadRejectedError(f"{filename!r} is not a valid sdist filename: bad project name")
    return ParsedFilename(project=normalize(name), version=str(version), kind="sdist")


def wheel_filename(
    name: str,
    version: str,
    python_tag: str = "py3",
    abi_tag: str = "none",
    platform_tag: str = "any",
    build: str | None = None,
) -> str:
    """The wheel filename for these parts (name escaped to ``_`` runs, version normalized)."""
    escaped = re.sub(r"[-_.]+", "_", name)
    middle = f"-{build}" if build else ""
    return (
        f"{escaped}-{canonical_version(version)}{middle}-{python_tag}-{abi_tag}-{platform_tag}.whl"
    )


def sdist_filename(name: str, version: str, extension: str = ".tar.gz") -> str:
    """The PEP 625 sdist filename (name normalized with ``_``, version normalized)."""
    escaped = re.sub(r"[-_.]+", "_", name).lower()
    return f"{escaped}-{canonical_version(version)}{extension}"
