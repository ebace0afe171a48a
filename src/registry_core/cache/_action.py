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

import bisect
import fnmatch
import functools
import glob
import os
import re
import shutil
import stat as stat_mod
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import InvalidArgumentError, InvalidTypeError
from ._key import cache_key_of_encoded, encode_part
from ._statcache import StatCache

__all__ = ["ACTION_SCHEMA", "Action", "InputFile", "compute_action", "expand_inputs"]

ACTION_SCHEMA = "registry-core/action-key/v1"
ACTION_NAMESPACE = "action"
_MAX_INPUTS = 1_000_000


class InputFile(NamedTuple):
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

    @property
    def plain(self) -> list[object]:
        """This action as JSON values (what StatCache persists; see :func:`_action_of_plain`)."""
        ins = self.inputs
        return [
            ACTION_SCHEMA,
            self.key,
            list(self.argv),
            self.tool,
            self.tool_sha256,
            [list(e) for e in self.env],
            [f.path for f in ins],
            [f.sha256 for f in ins],
            [f.size for f in ins],
            [bool(f.is_executable) for f in ins],
            list(self.outputs),
            str(self.cwd),
        ]


def _action_of_plain(plain: object, signature: tuple[object, ...]) -> Action | None:
    """The Action a remembered-actions file holds, or None when it is not one that the current
    signature could have produced (a damaged or foreign entry: the caller takes the slow path).

    Everything the key covers but the inputs' digests is checked against the signature; the
    digests themselves are covered by the file's checksum and the stat tuples' equality.
    """
    try:
        fields: Any = plain
        sig: Any = signature
        (schema, key, argv, tool, tool_sha, env, paths, shas, sizes, execs, outs, cwd) = fields
        args, env_values, outputs, _patterns, root, _exclude, sig_tool, tool_digest = sig
        if (
            schema != ACTION_SCHEMA
            or not isinstance(key, str)
            or tuple(argv) != args
            or tuple(tuple(e) for e in env) != env_values
            or tuple(outs) != outputs
            or cwd != root
            or tool != sig_tool
            or tool_sha != tool_digest[0]
            or not len(paths) == len(shas) == len(sizes) == len(execs)
            or not all(type(n) is int for n in sizes)
            or not all(type(x) is bool for x in execs)
            or not all(isinstance(h, str) and len(h) == 64 for h in shas)
            or paths != sorted(paths)
        ):
            return None
        new = tuple.__new__
        files = tuple(new(InputFile, t) for t in zip(paths, shas, sizes, execs, strict=True))
        return Action(key, args, tool, tool_sha, env_values, files, outputs, Path(root))
    except (TypeError, ValueError):
        return None


_U64 = struct.Struct(">Q").pack
_TRUE = b"T" + _U64(1) + b"1"
_FALSE = b"T" + _U64(1) + b"0"
_HEX_FIELD = b"S" + _U64(64)


def _encode_inputs(files: Sequence[InputFile]) -> bytes:
    """``encode_part([[path, is_executable, sha256], ...])``, specialised: the generic encoder
    costs a few microseconds per item, which is most of a warm check of 10,000 files."""
    parts = [b"L", _U64(len(files))]
    head = b"L" + _U64(3) + b"S"
    for f in files:
        p = f.path.encode("utf-8", "surrogatepass")
        parts += (head, _U64(len(p)), p, _TRUE if f.is_executable else _FALSE, _HEX_FIELD)
        parts.append(f.sha256.encode("ascii"))
    return b"".join(parts)


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


@functools.lru_cache(maxsize=256)
def _matcher(segment: str) -> Callable[[str], object]:
    """fnmatch's case-sensitive match of one path segment, compiled once."""
    return re.compile(fnmatch.translate(segment)).match


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
    return sorted(_expand(patterns, cwd, exclude=exclude, outputs=outputs))


def _expand(
    patterns: Sequence[str],
    cwd: str | os.PathLike[str],
    *,
    exclude: Sequence[str] = (),
    outputs: Sequence[str] = (),
) -> dict[str, os.stat_result]:
    """:func:`expand_inputs` with each file's ``stat`` (symlinks followed), in no order."""
    if isinstance(patterns, (str, bytes)):
        raise InvalidTypeError("inputs must be a list of glob patterns, not one str")
    root = os.path.abspath(cwd)
    excluded = {os.path.abspath(e) for e in exclude}
    excluded_list = sorted(excluded)
    found: dict[str, os.stat_result] = {}
    outs = set(outputs)
    isreg, isdir = stat_mod.S_ISREG, stat_mod.S_ISDIR

    def add_file(rel: str, st: os.stat_result) -> None:
        if rel in outs:
            return
        if len(found) >= _MAX_INPUTS:
            raise InvalidArgumentError(f"more than {_MAX_INPUTS} input files")
        found[rel] = st

    def linked_dir(rel: str, pattern: str) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"input {rel!r} (from {pattern!r}) is a symlink to a directory; symlinked "
            "directories are not walked: name the files inside it"
        )

    def visit(rel: str, pattern: str) -> None:
        full = root if rel == "." else root + os.sep + rel
        if excluded_list and _inside(full, excluded_list):
            return
        try:
            st = os.stat(full)  # follows symlinks: a dangling one fails here
        except OSError as exc:
            raise InvalidArgumentError(f"input {rel!r} (from {pattern!r}): {exc}") from exc
        if isreg(st.st_mode):
            add_file(rel, st)
        elif isdir(st.st_mode):
            if os.path.islink(full):
                raise linked_dir(rel, pattern)
            walk(full, "" if rel == "." else rel + "/", pattern)
        else:
            raise InvalidArgumentError(
                f"input {rel!r} (from {pattern!r}) is not a regular file or a directory"
            )

    def take(entry: os.DirEntry[str], rel: str, pattern: str) -> None:
        """One directory entry: a directory is walked, a file (or a link to one) added."""
        try:
            if entry.is_dir(follow_symlinks=False):  # d_type: no system call
                if entry.path not in excluded:
                    walk(entry.path, rel + "/", pattern)
                return
            st = entry.stat()  # one stat, through a symlink if it is one
        except OSError as exc:
            raise InvalidArgumentError(f"input {rel!r} (under {pattern!r}): {exc}") from exc
        mode = st.st_mode
        if not isreg(mode):
            if isdir(mode):  # not a directory itself: a symlink to one
                raise linked_dir(rel, pattern)
            raise InvalidArgumentError(f"input {rel!r} (under {pattern!r}) is not a regular file")
        add_file(rel, st)

    def scan(directory: str, what: str) -> list[os.DirEntry[str]]:
        try:
            return list(os.scandir(directory))
        except OSError as exc:
            raise InvalidArgumentError(f"input directory {what or '.'!r}: {exc}") from exc

    def walk(directory: str, prefix: str, pattern: str) -> None:
        """Every file below ``directory``: ``take`` inlined (this loop is most of a warm
        check), files of a directory first, then its subdirectories."""
        subdirs: list[tuple[str, str]] = []
        for entry in scan(directory, prefix):
            rel = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):  # d_type: no system call
                    if entry.path not in excluded:
                        subdirs.append((entry.path, rel + "/"))
                    continue
                st = entry.stat()  # one stat, through a symlink if it is one
            except OSError as exc:
                raise InvalidArgumentError(f"input {rel!r} (under {pattern!r}): {exc}") from exc
            if isreg(st.st_mode):
                if rel not in outs:
                    if len(found) >= _MAX_INPUTS:
                        raise InvalidArgumentError(f"more than {_MAX_INPUTS} input files")
                    found[rel] = st
            elif isdir(st.st_mode):  # not a directory itself: a symlink to one
                raise linked_dir(rel, pattern)
            else:
                raise InvalidArgumentError(
                    f"input {rel!r} (under {pattern!r}) is not a regular file"
                )
        for path, sub in subdirs:
            walk(path, sub, pattern)

    def is_linked_dir(entry: os.DirEntry[str]) -> bool:
        try:
            return entry.is_symlink() and entry.is_dir()
        except OSError:
            return False

    def match(
        directory: str,
        prefix: str,
        segs: list[str],
        i: int,
        pattern: str,
        dirs_only: bool,
        listed: list[os.DirEntry[str]] | None = None,
    ) -> Iterator[tuple[str, os.DirEntry[str] | None]]:
        """Python's glob (recursive=True, no hidden names for wildcards and ``**``, a trailing
        ``/`` for directories only), in one pass with the entries kept (so no second stat),
        each directory listed once, refusing symlinked directories."""
        seg, last = segs[i], i == len(segs) - 1
        if seg == "**":
            if last:
                if prefix:  # "dir/**" is dir itself and all below: walked
                    yield prefix[:-1], None
                    return
                for e in scan(directory, prefix):
                    if not e.name.startswith(".") and (not dirs_only or e.is_dir()):
                        yield e.name, e
                return
            entries = scan(directory, prefix) if listed is None else listed
            yield from match(directory, prefix, segs, i + 1, pattern, dirs_only, entries)
            for e in entries:  # and one level more, for each subdirectory
                if e.name.startswith(".") or e.path in excluded:
                    continue
                if e.is_dir(follow_symlinks=False):
                    yield from match(e.path, prefix + e.name + "/", segs, i, pattern, dirs_only)
                elif e.is_symlink() and is_linked_dir(e):
                    raise linked_dir(prefix + e.name, pattern)
        elif glob.has_magic(seg):
            hidden_ok = seg.startswith(".")
            fits = _matcher(seg)
            for e in scan(directory, prefix) if listed is None else listed:
                name = e.name
                if (hidden_ok or not name.startswith(".")) and fits(name):
                    if last:
                        if not dirs_only or e.is_dir():
                            yield prefix + name, e
                    elif e.is_dir(follow_symlinks=False):
                        sub = prefix + name + "/"
                        yield from match(e.path, sub, segs, i + 1, pattern, dirs_only)
                    elif e.is_symlink() and is_linked_dir(e):
                        raise linked_dir(prefix + name, pattern)
        else:
            path = directory + os.sep + seg
            if last:
                if os.path.isdir(path) if dirs_only else os.path.lexists(path):
                    yield prefix + seg, None
            elif os.path.isdir(path):
                if os.path.islink(path):
                    raise linked_dir(prefix + seg, pattern)
                yield from match(path, prefix + seg + "/", segs, i + 1, pattern, dirs_only)

    for pattern in patterns:
        rel = relative_path(pattern, "an input pattern")
        if glob.has_magic(rel):
            matched = False
            dirs_only = pattern.endswith(("/", os.sep))
            for m, entry in match(root, "", rel.split("/"), 0, pattern, dirs_only):
                matched = True
                if entry is None:
                    visit(m, pattern)
                else:
                    take(entry, m, pattern)
            if not matched:
                raise InvalidArgumentError(f"input pattern {pattern!r} matched nothing in {root}")
        else:
            if rel in outs:
                raise InvalidArgumentError(
                    f"{rel!r} is both an input and an output; a command that rewrites its "
                    "input cannot be cached"
                )
            visit(rel, pattern)
    return found


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
    now = time.time_ns() if now_ns is None else now_ns  # before any stat (racy rule)
    found = _expand(inputs, root, exclude=exclude, outputs=outs)
    tool = resolve_tool(args[0], root, environment)
    cache = stat_cache if stat_cache is not None else StatCache(None)
    tool_digest = cache.digests([tool], now_ns=now)[tool]
    env_values = tuple((n, environment.get(n)) for n in names)
    # The fast path of a warm check: the same command, environment, tool (its digest came
    # through the stat cache just now), patterns and files in the same order, each with the
    # same stat tuple as when this action was last computed from trusted (non-racy) entries:
    # every digest is then unchanged, and so is the key. Two list comparisons in C instead
    # of a lookup and an encoding per file.
    signature = (
        args,
        env_values,
        outs,
        tuple(inputs),
        root,
        tuple(sorted(exclude)),
        tool,
        tuple(tool_digest),
    )
    paths = list(found)
    stats = [
        (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_mode)
        for s in found.values()
    ]
    sep = root.rstrip(os.sep) + os.sep
    new = tuple.__new__  # InputFile(path, *digest) without the Python-level __new__ frame
    snap = cache.snapshot(signature)
    files: tuple[InputFile, ...] | None = None
    if snap is not None and snap[0] == paths and isinstance(snap[2], list):
        # Remembered by another process (read from the stat cache's ``.actions`` file).
        decoded = _action_of_plain(snap[2], signature)
        if decoded is not None and [f.path for f in decoded.inputs] == sorted(paths):
            cache.remember(signature, snap[0], snap[1], decoded)  # in memory; file unchanged
            snap = (snap[0], snap[1], decoded)
        else:
            snap = None
    if snap is not None and snap[0] == paths and isinstance(snap[2], Action):
        old_stats, known = snap[1], snap[2]
        if old_stats == stats:
            return known
        # The same files, a few with new stat tuples (an edit): the others keep the digests
        # the remembered action has (their tuples are those it was computed from); only the
        # changed ones go through the stat cache.
        changed = [
            paths[i] for i, (a, b) in enumerate(zip(old_stats, stats, strict=True)) if a != b
        ]
        digests, rehashed = cache.digests_counted(
            [sep + p for p in changed], now_ns=now, stats=[found[p] for p in changed]
        )
        order = [f.path for f in known.inputs]
        patched = list(known.inputs)
        for p in changed:
            k = bisect.bisect_left(order, p)
            if k == len(order) or order[k] != p:  # cannot happen (the same paths): be safe
                break
            patched[k] = new(InputFile, (p, *digests[sep + p]))
        else:
            files = tuple(patched)
    if files is None:
        ins = sorted(found)
        full = [sep + p for p in ins]
        digests, rehashed = cache.digests_counted(full, now_ns=now, stats=[found[p] for p in ins])
        files = tuple(new(InputFile, (p, *digests[f])) for p, f in zip(ins, full, strict=True))
    tool_sha = tool_digest.sha256
    key = cache_key_of_encoded(
        [
            encode_part(ACTION_SCHEMA),
            encode_part(list(args)),
            encode_part({"tool-sha256": tool_sha}),
            encode_part(dict(env_values)),
            _encode_inputs(files),
            encode_part(list(outs)),
        ],
        namespace=ACTION_NAMESPACE,
    )
    action = Action(key, args, tool, tool_sha, env_values, files, outs, Path(root))
    if not rehashed:  # every digest from a trusted entry equal to these stats: remember
        cache.remember(signature, paths, stats, action, persist=True)
    return action
