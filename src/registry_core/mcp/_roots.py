"""Path confinement for the MCP file tools (sans-SDK, sans-IO apart from ``realpath``).

A path an agent names is accepted only when it resolves inside one of the configured roots:
no ``..`` component at all (even one that would stay inside), no NUL, no symlink leading out
(the real path is checked), an absolute path only when it is under a root. With no roots
configured every file tool is refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InvalidArgumentError, PermissionDeniedError

__all__ = ["Roots"]

_MAX_PATH = 4096


class Roots:
    """The directories the file tools may read and write (resolved once, at construction)."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]] = ()) -> None:
        resolved: list[Path] = []
        for r in roots:
            p = Path(os.path.realpath(os.fspath(r)))
            if not p.is_dir():
                raise InvalidArgumentError(f"root {os.fspath(r)!r} is not a directory")
            resolved.append(p)
        self.paths: tuple[Path, ...] = tuple(dict.fromkeys(resolved))

    def __bool__(self) -> bool:
        return bool(self.paths)

    def __repr__(self) -> str:
        return f"Roots({[str(p) for p in self.paths]!r})"

    def _inside(self, real: Path) -> bool:
        return any(real == root or root in real.parents for root in self.paths)

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """The real path ``path`` names inside a root, or PermissionDeniedError /
        InvalidArgumentError. Relative paths are taken against the first root. For ``write``
        the file may not exist yet (its directory must, inside a root) and may not be a symlink.
        """
        if not self.paths:
            raise PermissionDeniedError("no roots are configured: file tools are off")
        if not isinstance(path, str) or not path:
            raise InvalidArgumentError("path must be a non-empty string")
        if len(path) > _MAX_PATH or "\x00" in path:
            raise InvalidArgumentError("path is too long or contains NUL")
        parts = path.replace("\\", "/").split("/")
        if ".." in parts:
            raise PermissionDeniedError(f"path {path!r} contains '..': refused")
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.paths[0] / candidate
        elif not self._inside(Path(os.path.abspath(candidate))):
            raise PermissionDeniedError(f"path {path!r} is outside the configured roots")
        if write:
            if candidate.is_symlink():
                raise PermissionDeniedError(f"path {path!r} is a symlink: refused for writing")
            parent = Path(os.path.realpath(candidate.parent))
            if not self._inside(parent):
                raise PermissionDeniedError(f"path {path!r} leads outside the configured roots")
            if not parent.is_dir():
                raise InvalidArgumentError(f"directory of {path!r} does not exist")
            real = parent / candidate.name
            if real.exists() and not real.is_file():
                raise InvalidArgumentError(f"path {path!r} exists and is not a regular file")
            return real
        real = Path(os.path.realpath(candidate))
        if not self._inside(real):
            raise PermissionDeniedError(f"path {path!r} leads outside the configured roots")
        if not real.is_file():
            raise InvalidArgumentError(f"path {path!r} is not an existing regular file")
        return real

    def read(self, path: str, max_bytes: int) -> bytes:
        """The bytes of the file ``path`` names, refused past ``max_bytes`` (checked while read:
        a file growing after the size check cannot push past the bound)."""
        real = self.resolve(path)
        with open(real, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise InvalidArgumentError(
                    f"{path!r} is {size} bytes, over the {max_bytes}-byte limit"
                )
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise InvalidArgumentError(f"{path!r} is over the {max_bytes}-byte limit")
        return data

    def write(self, path: str, data: bytes) -> Path:
        """Write ``data`` atomically at ``path`` (inside a root); returns the real path."""
        from .._util import atomic_write

        real = self.resolve(path, write=True)
        atomic_write(real, data)
        return real
