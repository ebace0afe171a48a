"""The records of an access trace: requests, releases, the catalogue, attack episodes.

A :class:`Trace` is what every ML component trains and is measured on: time-sorted
:class:`Request` records, the :class:`Catalogue` of projects and releases they refer to (as the
generator made it, or inferred from a log), the labelled attack :class:`Episode` list (empty for
real logs) and a ``source`` string that every figure cites (``generated:<model>:seed=<n>`` or
``file:<name>``). Plain dataclasses, no numpy: importing this module is cheap.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CLIENT_TYPES",
    "KINDS",
    "Catalogue",
    "Episode",
    "Release",
    "Request",
    "Trace",
    "client_type",
    "summarize",
]

#: The request kinds a reader or the generator assigns.
KINDS = ("file", "metadata", "page", "upload", "login", "other")
#: Client id prefixes the generator uses (``dev-12``); a real log's ids have none ("other").
#: Client types of generated traces (:attr:`Trace.clients`); a real log's clients are "other".
CLIENT_TYPES = ("dev", "ci", "mirror", "proxy", "crawler", "maintainer", "attacker")


def client_type(client: str, types: dict[str, str] | None = None) -> str:
    """The client's type in ``types`` (a trace's :attr:`Trace.clients`), else ``"other"``."""
    return (types or {}).get(client, "other")


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a trace. ``time`` is in seconds (unix epoch for real logs, from 0.0 for
    generated traces, day 0 starting on a Monday at 00:00 UTC); ``held`` is the version of the
    project the client already has (the delta base; for real logs an inference: the client's
    last downloaded version); ``label`` is "" for normal traffic, else the attack episode's."""

    time: float
    client: str
    kind: str
    project: str
    filename: str
    version: str
    size: int
    status: int = 200
    method: str = "GET"
    tenant: str = "default"
    route: str = ""
    held: str = ""
    label: str = ""

    @property
    def key(self) -> str:
        """The cache object key: ``project/filename`` for files, ``project/filename.metadata``
        for metadata, ``project/`` for a project page, else the route (or the kind); the bare
        object id for oracleGeneral records (no project)."""
        if self.filename and not self.project:
            return self.filename
        if self.filename:
            if self.kind == "metadata":
                return f"{self.project}/{self.filename}.metadata"
            return f"{self.project}/{self.filename}"
        if self.project:
            return f"{self.project}/"
        return self.route or self.kind


@dataclass(frozen=True)
class Release:
    """One release: its version, upload time (seconds, same clock as the requests) and files
    as ``(filename, size)`` pairs."""

    version: str
    time: float
    files: tuple[tuple[str, int], ...]


@dataclass
class Catalogue:
    """Projects and their releases (each list oldest first, by upload time), and how many
    projects depend on each one (for the typosquatting checks; empty when unknown)."""

    projects: dict[str, list[Release]] = field(default_factory=dict)
    dependents: dict[str, int] = field(default_factory=dict)
    _times: dict[str, list[float]] = field(default_factory=dict, repr=False, compare=False)

    def _released(self, project: str, now: float) -> list[Release]:
        releases = self.projects.get(project)
        if not releases:
            return []
        times = self._times.get(project)
        if times is None or len(times) != len(releases):
            times = [r.time for r in releases]
            self._times[project] = times
        return releases[: bisect.bisect_right(times, now)]

    def newer(self, project: str, version: str, now: float) -> list[Release]:
        """The releases of ``project`` uploaded by ``now`` that come after ``version`` (by upload
        order; all of them when ``version`` is "" or unknown), oldest first."""
        released = self._released(project, now)
        if not version:
            return list(released)
        for i in range(len(released) - 1, -1, -1):
            if released[i].version == version:
                return released[i + 1 :]
        if any(r.version == version for r in self.projects.get(project, ())):
            return []  # held a version uploaded after now: nothing newer yet
        return list(released)

    def latest(self, project: str, now: float) -> Release | None:
        """The last release of ``project`` uploaded by ``now`` (None: none yet)."""
        released = self._released(project, now)
        return released[-1] if released else None

    def release(self, project: str, version: str) -> Release | None:
        """The release of ``project`` with this version (None: unknown)."""
        for r in self.projects.get(project, ()):
            if r.version == version:
                return r
        return None

    def file_size(self, project: str, filename: str) -> int | None:
        """The size of one file of the catalogue (None: unknown)."""
        for r in self.projects.get(project, ()):
            for name, size in r.files:
                if name == filename:
                    return size
        return None


@dataclass(frozen=True)
class Episode:
    """One injected attack episode: its label, time span and the clients taking part."""

    label: str
    start: float
    end: float
    clients: frozenset[str]


@dataclass
class Trace:
    """A time-sorted request list, its catalogue, its attack episodes and where it came from.
    ``clients`` maps client ids to their type for generated traces (empty for real logs: ids
    are opaque, so a model cannot read the type from them)."""

    requests: list[Request]
    catalogue: Catalogue
    episodes: list[Episode] = field(default_factory=list)
    source: str = ""
    clients: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.requests)

    @property
    def start(self) -> float:
        return self.requests[0].time if self.requests else 0.0

    @property
    def end(self) -> float:
        return self.requests[-1].time if self.requests else 0.0

    def sha256(self) -> str:
        """Hex SHA-256 of a canonical encoding of the requests, the catalogue and the episodes
        (the models' ``data_sha256``): equal traces give equal digests on every machine."""
        h = hashlib.sha256(b"registry-core trace v1\n")
        enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)
        batch: list[str] = []
        for r in self.requests:
            # length-prefixed strings: unambiguous whatever they contain, and fast
            batch.append(
                f"{float(r.time)!r}|{len(r.client)}:{r.client}{len(r.kind)}:{r.kind}"
                f"{len(r.project)}:{r.project}{len(r.filename)}:{r.filename}"
                f"{len(r.version)}:{r.version}|{r.size}|{r.status}|{len(r.method)}:{r.method}"
                f"{len(r.tenant)}:{r.tenant}{len(r.route)}:{r.route}{len(r.held)}:{r.held}"
                f"{len(r.label)}:{r.label}"
            )
            if len(batch) >= 4096:
                h.update(("\n".join(batch) + "\n").encode("utf-8", "surrogatepass"))
                batch.clear()
        if batch:
            h.update(("\n".join(batch) + "\n").encode("utf-8", "surrogatepass"))
        h.update(b"catalogue\n")
        for name in sorted(self.catalogue.projects):
            rels = [
                [r.version, repr(float(r.time)), [list(f) for f in r.files]]
                for r in self.catalogue.projects[name]
            ]
            h.update((enc.encode([name, rels]) + "\n").encode())
        h.update(enc.encode(sorted(self.catalogue.dependents.items())).encode())
        h.update(b"\nclients\n")
        h.update(enc.encode(sorted(self.clients.items())).encode())
        h.update(b"\nepisodes\n")
        for e in self.episodes:
            h.update(
                (
                    enc.encode(
                        [e.label, repr(float(e.start)), repr(float(e.end)), sorted(e.clients)]
                    )
                    + "\n"
                ).encode()
            )
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        """Counts for a table: requests, clients, projects, bytes, and requests by kind, by
        label ("" shown as "normal") and by client type."""
        return summarize(
            self.requests, source=self.source, episodes=len(self.episodes), types=self.clients
        )


def summarize(
    requests: Iterable[Request],
    *,
    source: str = "",
    episodes: int = 0,
    types: dict[str, str] | None = None,
) -> dict[str, Any]:
    """:meth:`Trace.summary` over any request iterable (one pass)."""
    kinds: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    ctypes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    tenants: Counter[str] = Counter()
    clients: set[str] = set()
    projects: set[str] = set()
    n = 0
    sent = 0
    first = last = 0.0
    for r in requests:
        if n == 0:
            first = r.time
        last = r.time
        n += 1
        sent += r.size
        kinds[r.kind] += 1
        labels[r.label or "normal"] += 1
        statuses[f"{r.status // 100}xx"] += 1
        tenants[r.tenant] += 1
        if r.client not in clients:
            clients.add(r.client)
            ctypes[client_type(r.client, types)] += 1
        if r.project:
            projects.add(r.project)
    return {
        "source": source,
        "requests": n,
        "clients": len(clients),
        "projects": len(projects),
        "bytes": sent,
        "days": (last - first) / 86400.0 if n else 0.0,
        "episodes": episodes,
        "by_kind": dict(sorted(kinds.items())),
        "by_label": dict(sorted(labels.items())),
        "by_status": dict(sorted(statuses.items())),
        "by_tenant": dict(sorted(tenants.items())),
        "clients_by_type": dict(sorted(ctypes.items())),
    }
