"""An ngclient fetcher over a local TUF metadata directory (for ``verify`` on ``--dir``).

python-tuf's ngclient does every check (signatures, thresholds, versions, expiry); this only
hands it the files. Names outside TUF's metadata grammar read as 404, never as a path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tuf.api import exceptions as tuf_exceptions
from tuf.ngclient import FetcherInterface

__all__ = ["DirectoryFetcher"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.json\Z")
_MAX = 64 << 20


class DirectoryFetcher(FetcherInterface):
    """Serves ``<url prefix>/<name>`` from ``directory / name``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url.rsplit("/", 1)[-1]
        path = self.directory / name
        if not _NAME.match(name) or not path.is_file() or path.stat().st_size > _MAX:
            raise tuf_exceptions.DownloadHTTPError(f"{name}: not found", 404)
        return iter((path.read_bytes(),))
