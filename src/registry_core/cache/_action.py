"""The action key of ``BuildCache.run``: everything a command's result depends on, hashed.

The key is :func:`~registry_core.cache.cache_key` (its tagged, length-prefixed encoding, see
docs/cache.md) under the namespace ``"action"`` of these six parts, in this order::

    "registry-core/action-key/v1"                      the schema (bump to invalidate)
    [argv...]                                          the command line, as given
    {"tool-sha256": hex}                               SHA-256 of the resolved executable
    {name: value or None, ...}                         the named environment variables
    [[path, is_executable, sha256-hex], ...]           every input file, sorted by path
    [output path, ...]                                 the declared outputs, sorted

Inputs are globs relative to the working directory (``glob`` rules: ``**`` recursive, ``*``
does not match a leading dot). A match that is a directory is walked (every file under it,
dot-files included). Symlinks are followed: a file's content counts, under the link's path;
a symlink to a directory is refused (name the files inside instead), so walks cannot loop.
Absolute patterns and patterns or matches that leave the working directory (``..``) are
refused; a pattern that matches nothing is refused (a typo would otherwise cache too much).
Declared outputs reached by a glob or a walk are left out of the inputs (``*.txt`` with an
output ``out.txt``); an output named literally as an input is refused.
Paths are written with ``/``, relative, normalised; the working directory itself is not part
of the key, so two checkouts at different places share entries.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat as stat_mod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgumentError, InvalidTypeError
from ._key import cache_key
from ._statcache import StatCache

__all__ = ["ACTION_SCHEMA", "Action", "InputFile", "compute_action", "expand_inputs"]

ACTION_SCHEMA = "registry-core/action-key/v1"
ACTION_NAMESPACE = "action"
_MAX_INPUTS = 1_000_000


@dataclass(frozen=True)
class InputFile:
    """One input: relative path, content digest, size and the owner's executable bit."""

    path: str
    sha256: str
    size: int
    is_executable: bool


@dataclass(frozen=True)
class Action:
    """A command with everything its key covers, and the key."""

    key: str
    argv: tuple[str, ...]
    tool: str
    tool_sha256: str
    env: tuple[tuple[str, str | None], ...]
    inputs: tuple[InputFile, ...]
    outputs: tuple[str, ...]
    cwd: Path


def relative_path(path: object, what: str) -> str:
    """``path`` normalised, relative, with ``/``; refused when absolute or leaving ``.``."""
    if not isinstance(path, str):
        raise InvalidTypeError(f"{what} must be a str, got {type(path).__name__}")
    if not path or "\x00" in path:
        raise InvalidArgumentError(f"{what} must be a non-empty path without NUL: {path!r}")
    if os.path.isabs(path) or path.startswith(("/", "\\")):
        raise InvalidArgumentError(
            f"{what} {path!r} is absolute: paths are relative to the working directory"
        )
    norm = os.path.normpath(path).replace(os.sep, "/")
    if norm == ".." or norm.startswith("../"):
        raise InvalidArgumentError(f"{what} {path!r} is outside the working directory")
    return norm


def _inside(path: str, excluded: Sequence[str]) -> bool:
    return any(path == e or path.startswith(e + os.sep) for e in excluded)


def expand_inputs(
    patterns: Sequence[str],
    cwd: str | os.PathLike[str],
    *,
    exclude: Sequence[str] = (),
    outputs: Sequence[str] = (),
) -> list[str]:
    """The input files ``patterns`` name under ``cwd``: relative, sorted, deduplicated.

    ``exclude`` (absolute directories, such as the cache's own) are skipped silently, and so
    are the declared ``outputs`` (relative) when a glob or a directory walk reaches them; an
    output named as an input literally is refused.
    """
    if isinstance(patterns, (str, bytes)):
        raise InvalidTypeError("inputs must be a list of glob patterns, not one str")
    root = os.path.abspath(cwd)
    excluded = [os.path.abspath(e) for e in exclude]
    found: set[str] = set()
    outs = set(outputs)

    def add_file(rel: str) -> None:
        if rel in outs:
            return
        if len(found) >= _MAX_INPUTS:
            raise InvalidArgumentError(f"more than {_MAX_INPUTS} input files")
        found.add(rel)

    def visit(rel: str, pattern: str) -> None:
        full = os.path.normpath(os.path.join(root, rel))
        if _inside(full, excluded):
            return
        try:
            lst = os.lstat(full)
            st = os.stat(full) if stat_mod.S_ISLNK(lst.st_mode) else lst
        except OSError as exc:
            raise InvalidArgumentError(f"input {rel!r} (from {pattern!r}): {exc}") from exc
        if stat_mod.S_ISREG(st.st_mode):
            add_file(rel)
        elif stat_mod.S_ISDIR(st.st_mode):
            if stat_mod.S_ISLNK(lst.st_mode):
                raise InvalidArgumentError(
                    f"input {rel!r} (from {pattern!r}) is a symlink to a directory; name "
                    "the files inside it instead (symlinked directories are not walked)"
                )
            walk(rel, pattern)
        else:
            raise InvalidArgumentError(
                f"input {rel!r} (from {pattern!r}) is not a regular file or a directory"
            )

    def walk(rel: str, pattern: str) -> None:
        for dirpath, dirnames, filenames in os.walk(os.path.normpath(os.path.join(root, rel))):
            dirnames[:] = [d for d in dirnames if not _inside(os.path.join(dirpath, d), excluded)]
            for d in dirnames:
                if os.path.islink(os.path.join(dirpath, d)):
                    raise InvalidArgumentError(
                        f"{os.path.relpath(os.path.join(dirpath, d), root)!r} (under input "
                        f"{pattern!r}) is a symlink to a directory; symlinked directories "
                        "are not walked: name the files inside it"
                    )
            base = os.path.relpath(dirpath, root).replace(os.sep, "/")
            prefix = "" if base == "." else base + "/"
            for name in filenames:
                path = prefix + name
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except OSError as exc:
                    raise InvalidArgumentError(f"input {path!r}: {exc}") from exc
                if not stat_mod.S_ISREG(st.st_mode):
                    raise InvalidArgumentError(
                        f"input {path!r} (under {pattern!r}) is not a regular file"
                    )
                add_file(path)

    for pattern in patterns:
        rel = relative_path(pattern, "an input pattern")
        if glob.has_magic(rel):
            matches = glob.glob(rel, root_dir=root, recursive=True)
            if not matches:
                raise InvalidArgumentError(f"input pattern {pattern!r} matched nothing in {root}")
            for m in matches:
                visit(relative_path(m, "an input"), pattern)
        else:
            if rel in outs:
                raise InvalidArgumentError(
                    f"{rel!r} is both an input and an output; a command that rewrites its "
                    "input cannot be cached"
                )
            visit(rel, pattern)
    return sorted(found)


def resolve_tool(argv0: str, cwd: str, environ: Mapping[str, str]) -> str:
    """The executable ``argv0`` runs: a path (relative to ``cwd``) or a name found on PATH."""
    if "/" in argv0 or (os.sep != "/" and os.sep in argv0):
        path = os.path.join(cwd, argv0)
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise InvalidArgumentError(f"command {argv0!r} is not an executable file")
        return os.path.abspath(path)
    found = shutil.which(argv0, path=environ.get("PATH", os.defpath))
    if found is None:
        raise InvalidArgumentError(f"command {argv0!r} was not found on PATH")
    return os.path.abspath(found)


def _check_argv(argv: object) -> tuple[str, ...]:
    if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
        raise InvalidTypeError("argv must be a list of str (the command and its arguments)")
    if not argv:
        raise InvalidArgumentError("argv is empty: give the command to run")
    for a in argv:
        if not isinstance(a, str):
            raise InvalidTypeError(f"argv items must be str, got {type(a).__name__}")
        if "\x00" in a:
            raise InvalidArgumentError(f"argv item {a!r} contains NUL")
    return tuple(argv)


def _check_env_names(names: object) -> tuple[str, ...]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise InvalidTypeError("env must be a list of variable names")
    out: list[str] = []
    for n in names:
        if not isinstance(n, str) or not n or "=" in n or "\x00" in n:
            raise InvalidArgumentError(f"bad environment variable name {n!r}")
        out.append(n)
    return tuple(sorted(set(out)))


def compute_action(
    argv: Sequence[str],
    *,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    env: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    stat_cache: StatCache | None = None,
    exclude: Sequence[str] = (),
    now_ns: int | None = None,
) -> Action:
    """The :class:`Action` of a command: inputs expanded and digested, the key computed.

    ``environ`` is the environment the command runs in (default ``os.environ``): PATH in it
    resolves the tool, and the variables named in ``env`` are read from it.
    """
    args = _check_argv(argv)
    names = _check_env_names(env)
    environment = os.environ if environ is None else environ
    root = os.path.abspath(os.getcwd() if cwd is None else cwd)
    if not os.path.isdir(root):
        raise InvalidArgumentError(f"working directory {root!r} is not a directory")
    if isinstance(outputs, (str, bytes)):
        raise InvalidTypeError("outputs must be a list of paths, not one str")
    outs = tuple(sorted({relative_path(o, "an output") for o in outputs}))
    ins = expand_inputs(inputs, root, exclude=exclude, outputs=outs)
    tool = resolve_tool(args[0], root, environment)
    cache = stat_cache if stat_cache is not None else StatCache(None)
    full = [os.path.join(root, p) for p in ins]
    digests = cache.digests([*full, tool], now_ns=now_ns)
    files = tuple(
        InputFile(p, d.sha256, d.size, d.is_executable)
        for p, d in zip(ins, (digests[f] for f in full), strict=True)
    )
    tool_sha = digests[tool].sha256
    env_values = tuple((n, environment.get(n)) for n in names)
    key = cache_key(
        ACTION_SCHEMA,
        list(args),
        {"tool-sha256": tool_sha},
        dict(env_values),
        [[f.path, f.is_executable, f.sha256] for f in files],
        list(outs),
        namespace=ACTION_NAMESPACE,
    )
    return Action(key, args, tool, tool_sha, env_values, files, outs, Path(root))
