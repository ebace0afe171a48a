"""The index's records: plain frozen dataclasses shared by the database, the service, the
Simple API renderers and the proxy. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..auth._model import TokenRecord  # tokens live in the tenant store now; re-exported

__all__ = ["FileRecord", "Project", "TokenRecord"]

Kind = Literal["wheel", "sdist"]


@dataclass(frozen=True)
class Project:
    """A project: ``name`` is PEP 503-normalized, ``display_name`` as first uploaded."""

    name: str
    display_name: str
    created_ns: int = 0


@dataclass(frozen=True)
class FileRecord:
    """One distribution file of a project, as the index knows it.

    ``path``: where the bytes live in the storage (``/``-separated, relative). ``sha256``:
    lower-case hex of the file's bytes. ``yanked``: None when not yanked, else the reason (""
    for none given, PEP 592). ``metadata_sha256``: hex SHA-256 of the core metadata file served
    at ``<file url>.metadata`` (PEP 658/714), None when the file has none. ``tags``: a wheel's
    compatibility tags from its filename (``py3-none-any`` style, one per expanded tag);
    empty for an sdist. ``uploader``: the subject of the principal that uploaded it
    (``user:alice``, ``token:<id>`` for a standalone token, ``publisher:<name>``; None when
    indexed from a directory; a bare token id for files uploaded before tenants existed).
    """

    project: str
    filename: str
    version: str
    kind: Kind
    path: str
    size: int
    sha256: str
    upload_time_ns: int
    requires_python: str | None = None
    yanked: str | None = None
    metadata_sha256: str | None = None
    tags: frozenset[str] = field(default_factory=frozenset)
    uploader: str | None = None
