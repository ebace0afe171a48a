"""Typosquatting checks at upload: is a new project's name one small edit away from a popular one?

The transformations are the ones PyPI's Warehouse checks (``warehouse/packaging/typosnyper.py``,
after the TypoGuard paper): a repeated character (``reequests``), an omitted character
(``requsts``), two adjacent characters swapped (``reqeusts``), ``-``-separated words reordered
(``dateutil-python``), one character replaced by a keyboard neighbour or a look-alike
(``requestz``, ``nurnpy``); plus the older Warehouse/TypoGuard ones: a ``python``/``py`` affix
(``python-requests``, ``requests-py``), separators removed (``pythondateutil``), a version-number
suffix (``requests2``) and ASCII homoglyphs (``0``/``o``, ``1``/``l``/``i``, ``rn``/``m``,
``vv``/``w``). Names are compared after PEP 503 normalization, so ``Requests`` or ``re.quests``
style collisions with an existing name are caught by the index itself, not here.

What the rules do *not* flag, by design: a popular name followed by a real word
(``requests-oauthlib``, ``pytest-cov``): only the fixed affixes above count, because
extensions named after their host are how the ecosystem names plugins. A name that is itself in
the popular list is never flagged. Edits on names shorter than ``min_length`` (4) are not tried
(``six`` -> ``sox`` would be noise); on names of ``edit_min_length`` (8) or more, any single
substituted or inserted character also counts (Damerau-Levenshtein distance 1: long names rarely
collide by chance, and random typos fall outside any keyboard table).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import TYPE_CHECKING

from ..errors import InvalidArgumentError
from ..index._checks import Finding, UploadCandidate

if TYPE_CHECKING:
    from ..index import Index

__all__ = [
    "TyposquatCheck",
    "TyposquatMatch",
    "normalize_name",
    "popular_from_index",
    "project_requirements",
    "rank_depended_upon",
    "requires_dist",
    "typo_variants",
]

_NORMALIZE = re.compile(r"[-_.]+")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-"
#: Neighbours on a QWERTY keyboard and visually close characters (our own table).
_NEAR: dict[str, str] = {
    "q": "wa12",
    "w": "qeas23",
    "e": "wrsd34",
    "r": "etdf45",
    "t": "ryfg56",
    "y": "tugh67",
    "u": "yihj78v",
    "i": "uojk89l1",
    "o": "ipkl90",
    "p": "ol0",
    "a": "qwsz",
    "s": "awedxz5",
    "d": "serfcx",
    "f": "drtgvc",
    "g": "ftyhbv",
    "h": "gyujnb",
    "j": "huikmn",
    "k": "jiolm",
    "l": "kop1i",
    "z": "asx2",
    "x": "zsdc",
    "c": "xdfv",
    "v": "cfgbu",
    "b": "vghn",
    "n": "bhjm",
    "m": "njk",
    "0": "9o",
    "1": "2il",
    "2": "13z",
    "3": "24e",
    "4": "35",
    "5": "46s",
    "6": "57b",
    "7": "68",
    "8": "79b",
    "9": "80g",
}
#: The inverse: which intended characters a typed one may stand for.
_NEAR_FROM: dict[str, str] = {
    typed: "".join(sorted(k for k, v in _NEAR.items() if typed in v))
    for typed in {c for v in _NEAR.values() for c in v}
}
#: Multi-character look-alikes (either direction).
_HOMOGLYPHS: tuple[tuple[str, str], ...] = (
    ("rn", "m"),
    ("vv", "w"),
    ("cl", "d"),
    ("0", "o"),
    ("1", "l"),
    ("1", "i"),
    ("l", "i"),
    ("5", "s"),
)
_AFFIXES = ("python-", "py-", "python", "py")
_SUFFIXES = ("-python", "-py", "python", "py", "-lib", "lib", "-dev", "-api")


def normalize_name(name: str) -> str:
    """PEP 503 normalization: lower case, runs of ``-_.`` become one ``-``."""
    return _NORMALIZE.sub("-", name).lower()


@dataclass(frozen=True)
class TyposquatMatch:
    """``name`` looks like the popular ``target`` through ``transformation``."""

    name: str
    target: str
    transformation: str


def typo_variants(name: str) -> Iterator[tuple[str, str]]:
    """``(variant, transformation)`` for single edits of ``name``, normalized, other than the
    name itself: what a typist would produce from ``name``. Used to generate typos for
    measuring recall; the check itself runs the inverse edits."""
    n = normalize_name(name)
    for variant, how in _variants(n):
        v = normalize_name(variant).strip("-")
        if v and v != n:
            yield v, how


def _variants(n: str) -> Iterator[tuple[str, str]]:
    for i in range(len(n)):
        yield n[:i] + n[i] + n[i:], "repeated-character"
        yield n[:i] + n[i + 1 :], "omitted-character"
        if i + 1 < len(n) and n[i] != n[i + 1]:
            yield n[:i] + n[i + 1] + n[i] + n[i + 2 :], "swapped-characters"
        for c in _NEAR.get(n[i], ""):
            yield n[:i] + c + n[i + 1 :], "common-typo"
    for a, b in _HOMOGLYPHS:
        for src, dst in ((a, b), (b, a)):
            start = n.find(src)
            if start >= 0:
                yield n[:start] + dst + n[start + len(src) :], "homoglyph"
    words = n.split("-")
    if 2 <= len(words) <= 4:
        yield "-".join(reversed(words)), "swapped-words"
        yield "".join(words), "separator-removed"
    yield "python-" + n, "affix"
    yield n + "-py", "affix"
    yield n + "2", "version-suffix"


class TyposquatCheck:
    """The upload check: a *new* project whose name is a typo of one of ``popular`` (the index's
    most depended-upon or downloaded projects, e.g. ``Catalogue.dependents`` ranked, or the top of
    PyPI). Findings are ``high`` severity: a typo of a popular name is the attack's whole point.
    """

    name = "typosquat"

    def __init__(
        self,
        popular: Iterable[str],
        *,
        allow: Iterable[str] = (),
        min_length: int = 4,
        edit_min_length: int = 8,
        severity: str = "high",
    ) -> None:
        self.popular = frozenset(normalize_name(p) for p in popular if p)
        if not self.popular:
            raise InvalidArgumentError("the typosquat check needs at least one popular name")
        self.allow = frozenset(normalize_name(a) for a in allow)
        if not isinstance(min_length, int) or min_length < 1:
            raise InvalidArgumentError(f"min_length must be a positive int, not {min_length!r}")
        self.min_length = min_length
        self.edit_min_length = edit_min_length
        self.severity = severity
        # separator-free forms, for "pythondateutil" -> "python-dateutil"
        self._joined = {p.replace("-", ""): p for p in self.popular if "-" in p}

    def find(self, name: str) -> list[TyposquatMatch]:
        """Every popular name ``name`` is one transformation away from (deduplicated by target,
        first transformation kept, in the order of the module docstring)."""
        n = normalize_name(name)
        if n in self.popular or n in self.allow or not n:
            return []
        out: dict[str, TyposquatMatch] = {}
        for candidate, how in self._inverse_edits(n):
            if candidate != n and candidate in self.popular and candidate not in out:
                out[candidate] = TyposquatMatch(n, candidate, how)
        return list(out.values())

    def _inverse_edits(self, n: str) -> Iterator[tuple[str, str]]:
        long_enough = len(n) >= self.min_length
        if n in self._joined:
            yield self._joined[n], "separator-removed"
        if "-" in n:
            yield n.replace("-", ""), "separator-added"
        words = n.split("-")
        if 2 <= len(words) <= 6:
            for p in permutations(words):
                yield "-".join(p), "swapped-words"
        if long_enough:
            for i in range(len(n) - 1):
                if n[i] == n[i + 1]:
                    yield n[:i] + n[i + 1 :], "repeated-character"
            for i in range(len(n) + 1):
                for c in _ALPHABET:
                    yield n[:i] + c + n[i:], "omitted-character"
            for i in range(len(n) - 1):
                yield n[:i] + n[i + 1] + n[i] + n[i + 2 :], "swapped-characters"
            for i, ch in enumerate(n):
                for c in _NEAR_FROM.get(ch, ""):
                    yield n[:i] + c + n[i + 1 :], "common-typo"
            if len(n) >= self.edit_min_length:  # any one substitution or extra character
                for i in range(len(n)):
                    yield n[:i] + n[i + 1 :], "inserted-character"
                    for c in _ALPHABET:
                        yield n[:i] + c + n[i + 1 :], "substituted-character"
            for a, b in _HOMOGLYPHS:
                for src, dst in ((a, b), (b, a)):
                    start = n.find(src)
                    while start >= 0:
                        yield n[:start] + dst + n[start + len(src) :], "homoglyph"
                        start = n.find(src, start + 1)
        for affix in _AFFIXES:
            if n.startswith(affix) and len(n) > len(affix):
                yield n[len(affix) :].strip("-"), "affix"
        for suffix in _SUFFIXES:
            if n.endswith(suffix) and len(n) > len(suffix):
                yield n[: -len(suffix)].strip("-"), "affix"
        digits = len(n) - len(n.rstrip("0123456789"))
        for k in range(1, digits + 1):
            stripped = n[:-k].rstrip("-")
            if stripped:
                yield stripped, "version-suffix"

    def check(self, upload: UploadCandidate) -> Sequence[Finding]:
        """Findings for a new project only: uploads to an existing project are its owners'."""
        if not upload.new_project:
            return []
        return [
            Finding(
                self.name,
                self.severity,
                f"new project {m.name!r} looks like the popular project {m.target!r} "
                f"({m.transformation})",
                {"target": m.target, "transformation": m.transformation},
            )
            for m in self.find(upload.project)
        ]


# -- the popular list from an index's own metadata ----------------------------------------------

_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
#: Requirements read from one metadata file at most (a hostile file cannot inflate the work).
MAX_REQUIREMENTS = 512


def requires_dist(metadata: bytes, *, limit: int = MAX_REQUIREMENTS) -> frozenset[str]:
    """The normalized project names of the ``Requires-Dist`` headers of a core metadata file
    (headers only: the scan stops at the first empty line; at most ``limit`` of them)."""
    names: set[str] = set()
    seen = 0
    for raw in metadata.split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line:
            break  # the description body follows
        if line[:1] in (b" ", b"\t") or b":" not in line:
            continue  # a continuation line or not a header
        key, _, value = line.partition(b":")
        if key.strip().lower() != b"requires-dist":
            continue
        seen += 1
        if seen > limit:
            break
        m = _REQUIREMENT_NAME.match(value.decode("utf-8", "replace"))
        if m:
            names.add(normalize_name(m.group(1)))
    return frozenset(names)


def project_requirements(index: Index, project: str) -> frozenset[str]:
    """What ``project``'s newest file (by version; a non-yanked one when there is one) declares
    in ``Requires-Dist``, itself left out (two database reads)."""
    files = index.files(project)
    if not files:
        return frozenset()
    live = [f for f in files if f.yanked is None] or files
    metadata = index.metadata(live[-1].filename)
    if not metadata:
        return frozenset()
    return requires_dist(metadata) - {normalize_name(project)}


def rank_depended_upon(requirements: Mapping[str, frozenset[str]], n: int) -> list[str]:
    """The ``n`` names most often required across ``requirements`` (project -> its
    requirements), most first, ties broken by name; names nobody requires are left out."""
    counts: Counter[str] = Counter()
    for names in requirements.values():
        counts.update(names)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for name, _ in ranked[: max(0, n)]]


def popular_from_index(index: Index, n: int, *, max_projects: int = 100_000) -> list[str]:
    """The index's ``n`` most depended-upon projects: each project's newest file's
    ``Requires-Dist`` counted once per depending project, most first, ties by name. A name
    may be a project of another index (``requests`` required by internal packages): that is
    what a typosquat imitates. Bounded: at most ``max_projects`` projects (by name) are read,
    two database reads and :data:`MAX_REQUIREMENTS` requirements each."""
    if not isinstance(n, int) or n < 1:
        raise InvalidArgumentError(f"n must be a positive int, not {n!r}")
    requirements = {
        p.name: project_requirements(index, p.name) for p in index.projects()[:max_projects]
    }
    return rank_depended_upon(requirements, n)
