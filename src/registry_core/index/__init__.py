"""The package index: projects, files, core metadata, uploads (no HTTP inside).

:class:`Index` is the service (validate, store atomically, record); :class:`IndexDB` the small
database interface it needs, :class:`SQLiteIndexDB` its embedded default and
:class:`PostgreSQLIndexDB` the one several instances share (psycopg imported on first use).
The Simple API (PEP 503 / 691) is rendered and parsed by the sans-IO functions re-exported
here. Tokens and access control are the tenant's (:mod:`registry_core.auth`);
:class:`TokenRecord` is re-exported from there.
"""

from __future__ import annotations

from ._checks import Finding, UploadCandidate, UploadCheck, UploadChecks
from ._db import IndexDB, SQLiteIndexDB
from ._index import Index, RebuildReport
from ._metadata import CoreMetadata
from ._model import FileRecord, Project, TokenRecord
from ._names import ParsedFilename, normalize, parse_filename
from ._pg import PostgreSQLIndexDB
from ._simple import (
    HTML_V1,
    JSON_V1,
    SimpleFile,
    SimpleProject,
    negotiate,
    parse_project,
    render_index,
    render_project,
    simple_file,
)

__all__ = [
    "HTML_V1",
    "JSON_V1",
    "CoreMetadata",
    "FileRecord",
    "Finding",
    "Index",
    "IndexDB",
    "ParsedFilename",
    "PostgreSQLIndexDB",
    "Project",
    "RebuildReport",
    "SQLiteIndexDB",
    "SimpleFile",
    "SimpleProject",
    "TokenRecord",
    "UploadCandidate",
    "UploadCheck",
    "UploadChecks",
    "negotiate",
    "normalize",
    "parse_filename",
    "parse_project",
    "render_index",
    "render_project",
    "simple_file",
]
