"""Catalogues: project names for generated traces, and a catalogue inferred from a real log.

A real log shows only what clients asked for, so :func:`infer_catalogue` reconstructs what it
can: each (project, version) seen in a file download, metadata fetch or upload becomes a
:class:`Release` whose time is the first time the log shows it (its upload when the log has the
upload, else its first download: an upper bound on the real upload time), with the files seen
and their largest size sent. Dependents are unknown in a log (left empty).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from ._record import Catalogue, Release, Request

__all__ = [
    "TOP_NAMES",
    "infer_catalogue",
    "normalize",
    "parse_dist",
    "project_names",
    "sdist_name",
    "wheel_name",
]

_NORMALIZE = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """PEP 503 normalized name (the same rule as ``registry_core.index``, without importing the
    index package: this module stays cheap)."""
    return _NORMALIZE.sub("-", name).lower()


def wheel_name(
    project: str, version: str, python: str = "py3", abi: str = "none", platform: str = "any"
) -> str:
    """The wheel file name (name escaped to ``_``, as the binary distribution format says)."""
    return f"{_NORMALIZE.sub('_', project)}-{version}-{python}-{abi}-{platform}.whl"


def sdist_name(project: str, version: str) -> str:
    """The PEP 625 sdist file name."""
    return f"{_NORMALIZE.sub('_', project).lower()}-{version}.tar.gz"


def parse_dist(filename: str) -> tuple[str, str]:
    """``(project, version)`` of a wheel or sdist file name by the packaging rules
    (``packaging.utils``), ``("", "")`` when it is neither."""
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )
    from packaging.version import InvalidVersion

    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
        else:
            return "", ""
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion, ValueError):
        return "", ""
    return normalize(str(name)), str(version)


#: The head of the catalogue: real names of much-downloaded PyPI projects (so typosquatting
#: checks and readers of the tables see familiar names); the order is not a ranking claim.
TOP_NAMES = (
    "boto3",
    "botocore",
    "urllib3",
    "requests",
    "setuptools",
    "certifi",
    "charset-normalizer",
    "idna",
    "typing-extensions",
    "python-dateutil",
    "s3transfer",
    "packaging",
    "six",
    "aiobotocore",
    "numpy",
    "pyyaml",
    "s3fs",
    "fsspec",
    "pip",
    "cryptography",
    "grpcio-status",
    "pydantic",
    "cffi",
    "attrs",
    "google-api-core",
    "pycparser",
    "pandas",
    "importlib-metadata",
    "jmespath",
    "protobuf",
    "wheel",
    "rsa",
    "zipp",
    "click",
    "pyasn1",
    "platformdirs",
    "pytz",
    "jinja2",
    "markupsafe",
    "colorama",
    "awscli",
    "filelock",
    "tomli",
    "pyjwt",
    "virtualenv",
    "wrapt",
    "googleapis-common-protos",
    "pluggy",
    "pytest",
    "cachetools",
    "google-auth",
    "pyparsing",
    "sqlalchemy",
    "docutils",
    "requests-oauthlib",
    "oauthlib",
    "psutil",
    "exceptiongroup",
    "iniconfig",
    "soupsieve",
    "beautifulsoup4",
    "scipy",
    "tzdata",
    "pyarrow",
    "decorator",
    "greenlet",
    "grpcio",
    "aiohttp",
    "multidict",
    "yarl",
    "frozenlist",
    "aiosignal",
    "isodate",
    "werkzeug",
    "flask",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "sniffio",
    "tqdm",
    "lxml",
    "pillow",
    "matplotlib",
    "requests-toolbelt",
    "distlib",
    "tomlkit",
    "more-itertools",
    "openpyxl",
)

_ONSETS = (
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "cr",
    "dr",
    "fl",
    "gr",
    "kl",
    "pl",
    "pr",
    "sk",
    "sl",
    "sp",
    "st",
    "tr",
    "qu",
)
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y")
_CODAS = ("", "", "", "n", "r", "s", "x", "l", "m", "t", "ck", "nd", "rk", "st")
_SUFFIXES = (
    "",
    "",
    "",
    "",
    "-py",
    "-lib",
    "-client",
    "-tools",
    "-core",
    "-utils",
    "-sdk",
    "-api",
    "-cli",
    "-async",
    "-plugin",
    "-io",
)


def _word(rng: random.Random) -> str:
    return "".join(
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
        for _ in range(rng.choice((1, 2, 2, 3)))
    )


def project_names(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct normalized project names: :data:`TOP_NAMES` first, then made-up ones
    (deterministic for the generator's ``rng``)."""
    names = list(TOP_NAMES[:n])
    seen = set(names)
    while len(names) < n:
        name = _word(rng)
        if rng.random() < 0.25:
            name += "-" + _word(rng)
        name += rng.choice(_SUFFIXES)
        if len(name) >= 3 and name not in seen:
            seen.add(name)
            names.append(name)
    return names


def infer_catalogue(requests: Iterable[Request]) -> Catalogue:
    """The catalogue a log shows (see the module docstring); releases oldest first."""
    first: dict[tuple[str, str], float] = {}
    files: dict[tuple[str, str], dict[str, int]] = {}
    for r in requests:
        if not (r.project and r.version and r.filename):
            continue
        if r.kind not in ("file", "metadata", "upload") or r.status >= 400:
            continue
        key = (r.project, r.version)
        if key not in first or r.time < first[key]:
            first[key] = r.time
        seen = files.setdefault(key, {})
        if r.kind != "metadata":
            seen[r.filename] = max(seen.get(r.filename, 0), r.size)
        else:
            seen.setdefault(r.filename, 0)
    cat = Catalogue()
    for (project, version), t in sorted(first.items(), key=lambda kv: (kv[0][0], kv[1], kv[0][1])):
        rel = Release(version, t, tuple(sorted(files[(project, version)].items())))
        cat.projects.setdefault(project, []).append(rel)
    return cat
