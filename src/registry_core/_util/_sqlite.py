"""The one SQLite set-up the index database and the tenant store share: pragmas and a
versioned schema created on first open.

WAL + ``synchronous = NORMAL``: a commit survives a process crash; an OS crash may lose the last
commits but never corrupts the file. A file whose ``user_version`` is newer than the code knows
is refused (``newer(found)`` builds the error), never opened half-understood.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

__all__ = ["prepare"]


def prepare(
    conn: sqlite3.Connection,
    transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
    *,
    path: str,
    busy_timeout: float,
    schema: str,
    version: int,
    newer: Callable[[int], Exception],
    foreign_keys: bool = False,
) -> None:
    """Set the pragmas on ``conn`` and create ``schema`` (``;``-separated statements) at
    ``version`` inside ``transaction()`` when the file is new; raise ``newer(found)`` when the
    file's schema is newer than ``version``."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if foreign_keys:
        conn.execute("PRAGMA foreign_keys = ON")
    with transaction() as c:
        (found,) = c.execute("PRAGMA user_version").fetchone()
        if found == 0:
            for stmt in schema.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            c.execute(f"PRAGMA user_version = {version}")
        elif found > version:
            raise newer(found)
