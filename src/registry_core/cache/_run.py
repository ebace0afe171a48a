"""``BuildCache.run``: a command's outputs, exit status and stdout/stderr, cached by action key.

A lookup asks the local tier, then the remote one; an action result is used only when every
blob it names is present and matches its digest (a missing or corrupt blob makes the action a
miss, so the command runs again and the entry is rewritten: healed). A hit restores the
outputs atomically: every blob is fetched and checked first, each file is written to a temp
file in its target's directory with its mode, and only then renamed into place, so a failed
restore leaves nothing half-written. A miss runs the command (``subprocess``, the given
environment, the resolved tool as the executable), captures stdout/stderr (echoed live when
asked), reads the declared outputs, stores the blobs and then the action result (AC last: a
reader never sees an entry whose blobs were not written). Remote failures are logged once per
tier and the run continues locally; the build never fails because a remote tier did.

Two processes running the same action at once: the second waits (an ``flock`` on
``<cache>/locks/<key>`` is held from lookup to store), then finds the first's result: a hit.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .._util._atomic import default_file_mode
from ..errors import CacheError
from ._action import Action, compute_action
from ._reapi import (
    ActionResult,
    Digest,
    OutputFile,
    decode_action_result,
    encode_action_result,
)
from ._tiers import ActionTier, LocalActionTier

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: concurrent runs are not serialised
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ._cache import BuildCache

__all__ = ["RunResult", "run_action"]

log = logging.getLogger("registry_core.cache")

WORKER = "registry-core"
MAX_CAPTURE = 64 << 20  # stdout or stderr beyond this is passed through but not cached


@dataclass(frozen=True)
class RunResult:
    """What ``BuildCache.run`` did. ``saved_s``: on a hit, the original run's duration."""

    hit: bool
    exit_code: int
    stdout: bytes
    stderr: bytes
    key: str
    saved_s: float
    outputs: tuple[str, ...]
    tier: str | None = None  # the tier that served a hit
    duration_s: float = 0.0  # a miss: how long the command took here
    stored: bool = False  # a miss: whether the result was cached (in any tier)


def _mode(executable: bool) -> int:
    """What the command itself would have created under this umask, +x where +r for
    executables (as ``chmod +x`` does)."""
    base = default_file_mode()
    return base | ((base & 0o444) >> 2) if executable else base


@contextmanager
def _action_lock(root: Path, key: str) -> Iterator[None]:
    """An exclusive flock on ``root/locks/<key>``, checked against unlinking (a ``clear``)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    locks = root / "locks"
    try:
        locks.mkdir(exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the cache's lock directory {locks}: {exc}") from exc
    path = locks / key
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise CacheError(f"cannot open the action lock {path}: {exc}") from exc
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # removed while we waited: take the new file's lock
    try:
        yield
    finally:
        os.close(fd)


class _Pump(threading.Thread):
    """Reads one pipe to its end: keeps up to ``limit`` bytes, echoes everything to ``echo``."""

    def __init__(self, pipe: IO[bytes], echo: IO[bytes] | None, limit: int) -> None:
        super().__init__(daemon=True, name="rc-run-pipe")
        self.pipe, self.echo, self.limit = pipe, echo, limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False

    def run(self) -> None:
        fd = self.pipe.fileno()
        while True:
            block = os.read(fd, 1 << 16)
            if not block:
                break
            if self.echo is not None:
                with suppress(OSError, ValueError):
                    self.echo.write(block)
                    self.echo.flush()
            if self.size + len(block) <= self.limit:
                self.chunks.append(block)
                self.size += len(block)
            else:
                self.overflow = True

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def _stream(name: str) -> IO[bytes] | None:
    stream = getattr(sys, name, None)
    return getattr(stream, "buffer", None)


def execute(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    environ: Mapping[str, str],
    executable: str | None = None,
    echo: bool = False,
    limit: int = MAX_CAPTURE,
) -> tuple[int, bytes, bytes, bool, float, int]:
    """Run ``argv``: (exit code, stdout, stderr, captured whole, seconds, start in Unix ns).

    A command killed by a signal N gets exit code 128 + N, as a shell reports it.
    """
    start_ns = time.time_ns()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        executable=executable,
        cwd=cwd,
        env=dict(environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = _Pump(proc.stdout, _stream("stdout") if echo else None, limit)
    err = _Pump(proc.stderr, _stream("stderr") if echo else None, limit)
    out.start()
    err.start()
    try:
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        out.join()
        err.join()
        proc.stdout.close()
        proc.stderr.close()
    if code < 0:
        code = 128 - code
    whole = not (out.overflow or err.overflow)
    return code, out.data, err.data, whole, time.monotonic() - t0, start_ns


def _verifies_blobs(tier: object) -> bool:
    """Whether ``tier.get_blob`` returns only blobs it checked against the digest (size and
    SHA-256): the tier says so with ``verifies_blobs = True`` (LocalActionTier,
    BazelHTTPTier). Anything else is hashed again by the caller."""
    return getattr(tier, "verifies_blobs", False) is True


@dataclass
class _Found:
    result: ActionResult
    blobs: dict[str, bytes]
    tier: str
    remote: bool = False  # found in the remote tier: to be back-filled locally


class _Runner:
    """One ``run`` call: the tiers, which remote is still usable, and what it costs."""

    def __init__(self, cache: BuildCache, remote: ActionTier | None) -> None:
        self.cache = cache
        self.local = LocalActionTier(cache.local) if cache.local is not None else None
        self.remote = remote
        self.remote_ok = remote is not None
        self.force_upload: set[str] = set()  # digests a remote served corrupt: overwrite them

    # -- remote failures ------------------------------------------------------------------------

    def remote_failed(self, exc: CacheError, doing: str) -> None:
        assert self.remote is not None
        self.remote_ok = False
        self.cache._note_remote_error(self.remote.name, f"{doing}: {exc}")

    # -- lookup ---------------------------------------------------------------------------------

    def _usable(self, r: ActionResult, action: Action, cache_failures: bool) -> bool:
        paths = {f.path for f in r.output_files}
        declared = set(action.outputs)
        if len(paths) != len(r.output_files) or not paths <= declared:
            return False
        if r.exit_code == 0:
            return paths == declared
        return cache_failures

    def _from(self, tier: ActionTier, action: Action, cache_failures: bool) -> _Found | None:
        """The verified entry of ``tier`` for ``action``, or None (a miss)."""
        raw = tier.get_action(action.key)
        if raw is None:
            return None
        try:
            result = decode_action_result(raw)
        except CacheError as exc:
            log.warning(
                "action %s in the %s tier does not decode (%s); a miss", action.key, tier.name, exc
            )
            return None
        if not self._usable(result, action, cache_failures):
            return None
        wanted: dict[str, Digest] = {}
        for f in result.output_files:
            wanted[f.digest.hash] = f.digest
        for d in (result.stdout_digest, result.stderr_digest):
            if d is not None:
                wanted[d.hash] = d
        blobs: dict[str, bytes] = {}
        # A tier that checks what it returns (the local one: SHA-256 verified on read) is not
        # hashed a second time; any other tier's blobs are checked here.
        trusted = _verifies_blobs(tier)
        for h, d in wanted.items():
            data = tier.get_blob(d)
            if data is None or not (trusted or d.matches(data)):
                if data is not None:
                    log.warning(
                        "blob %s from the %s tier does not match its digest; a miss", h, tier.name
                    )
                    if tier is self.remote:
                        self.force_upload.add(h)
                return None
            blobs[h] = data
        return _Found(result, blobs, tier.name)

    def lookup(self, action: Action, cache_failures: bool) -> _Found | None:
        if self.local is not None:
            found = self._from(self.local, action, cache_failures)
            if found is not None:
                return found
        if self.remote is None or not self.remote_ok:
            return None
        try:
            found = self._from(self.remote, action, cache_failures)
        except CacheError as exc:
            self.remote_failed(exc, "lookup")
            return None
        if found is not None:
            found.remote = True
        return found

    def backfill(self, found: _Found, key: str) -> None:
        """A remote hit into the local tier: blobs first, the action result last (checked
        blobs: no second hash, no fsync); a failure only warns."""
        if self.local is None or not found.remote:
            return
        try:
            self.local.backfill(found.blobs, key, encode_action_result(found.result))
        except Exception as exc:  # in a thread: reported, never lost, never fatal
            log.warning("could not back-fill the local cache: %s", exc)

    # -- restore --------------------------------------------------------------------------------

    @staticmethod
    def restore(found: _Found, root: Path) -> None:
        temps: list[tuple[str, Path]] = []
        try:
            for f in found.result.output_files:
                target = root / f.path
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_dir() and not target.is_symlink():
                    raise CacheError(f"cannot restore output {f.path!r}: it is a directory")
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.rc-")
                temps.append((tmp, target))
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(out.fileno(), _mode(f.is_executable))
                    out.write(found.blobs[f.digest.hash])
            for tmp, target in temps:
                os.replace(tmp, target)
            temps.clear()
        except OSError as exc:
            raise CacheError(f"restoring the outputs failed, nothing was replaced: {exc}") from exc
        finally:
            for tmp, _target in temps:
                with suppress(OSError):
                    os.unlink(tmp)

    # -- store ----------------------------------------------------------------------------------

    def _put_local(self, result: ActionResult, blobs: dict[str, bytes], key: str) -> None:
        assert self.local is not None
        for h, data in blobs.items():
            self.local.put_blob(Digest(h, len(data)), data)
        self.local.put_action(key, encode_action_result(result))

    def store(self, result: ActionResult, blobs: dict[str, bytes], key: str) -> bool:
        stored = False
        if self.local is not None:
            try:
                self._put_local(result, blobs, key)
                stored = True
            except CacheError as exc:
                log.warning("action %s not cached locally: %s", key, exc)
        if self.remote is not None and self.remote_ok:
            try:
                for h, data in blobs.items():
                    d = Digest(h, len(data))
                    if h in self.force_upload or not self.remote.has_blob(d):
                        self.remote.put_blob(d, data)
                self.remote.put_action(key, encode_action_result(result))
                stored = True
            except CacheError as exc:
                self.remote_failed(exc, "upload")
        return stored


def _read_outputs(
    action: Action, exit_code: int, limit: int
) -> tuple[list[OutputFile], dict[str, bytes]] | None:
    """The declared outputs and their blobs; None when one is over ``limit`` bytes (too
    large to cache: it is not read into memory)."""
    files: list[OutputFile] = []
    blobs: dict[str, bytes] = {}
    for rel in action.outputs:
        path = action.cwd / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if exit_code == 0:
                raise CacheError(
                    f"declared output {rel!r} is missing after {action.argv[0]!r} succeeded; "
                    "declare only files the command writes (nothing was cached)"
                ) from None
            continue
        if not stat_mod.S_ISREG(st.st_mode):
            raise CacheError(
                f"declared output {rel!r} is not a regular file (symlinks and directories "
                "are not cached; declare the files themselves)"
            )
        if st.st_size > limit:
            log.warning(
                "action %s: output %r is %d bytes, over the cache's bound of %d; not cached",
                action.key,
                rel,
                st.st_size,
                limit,
            )
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CacheError(f"cannot read output {rel!r}: {exc}") from exc
        d = Digest.of(data)
        blobs[d.hash] = data
        files.append(OutputFile(rel, d, bool(st.st_mode & stat_mod.S_IXUSR)))
    return files, blobs


def _echo_hit(stdout: bytes, stderr: bytes) -> None:
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        stream = _stream(name)
        if stream is not None and data:
            with suppress(OSError, ValueError):
                stream.write(data)
                stream.flush()


def run_action(
    cache: BuildCache,
    argv: Sequence[str],
    *,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    env: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    cache_failures: bool = False,
    remote: ActionTier | None = None,
    environ: Mapping[str, str] | None = None,
    echo: bool = False,
    now_ns: int | None = None,
) -> RunResult:
    """The implementation of :meth:`BuildCache.run` (see there)."""
    environment: Mapping[str, str] = os.environ if environ is None else environ
    root = Path(os.path.abspath(os.getcwd() if cwd is None else cwd))
    if cache._off():
        code, out, err, _whole, took, _start = execute(
            argv, cwd=root, environ=environment, echo=echo
        )
        return RunResult(False, code, out, err, "", 0.0, tuple(outputs), duration_s=took)
    tier = remote if remote is not None else cache.action_remote
    stat_cache = cache.stat_cache
    exclude = [str(cache.local.root)] if cache.local is not None else []
    action = compute_action(
        argv,
        inputs=inputs,
        outputs=outputs,
        env=env,
        cwd=root,
        environ=environment,
        stat_cache=stat_cache,
        exclude=exclude,
        now_ns=now_ns,
    )
    runner = _Runner(cache, tier)
    lock = _action_lock(cache.local.root, action.key) if cache.local is not None else nullcontext()
    with lock:
        found = runner.lookup(action, cache_failures)
        if found is not None:
            r = found.result
            stdout = found.blobs[r.stdout_digest.hash] if r.stdout_digest else b""
            stderr = found.blobs[r.stderr_digest.hash] if r.stderr_digest else b""
            # A remote hit is back-filled locally while the outputs are restored (both are
            # mostly file writes, which release the GIL), and waited for before returning:
            # when run returns, the local tier holds the entry.
            filler: threading.Thread | None = None
            if found.remote and runner.local is not None:
                filler = threading.Thread(
                    target=runner.backfill, args=(found, action.key), name="rc-backfill"
                )
                filler.start()
            try:
                runner.restore(found, action.cwd)
            finally:
                if filler is not None:
                    filler.join()
            if echo:
                _echo_hit(stdout, stderr)
            cache._count_run(hit=True, saved_s=r.duration_s)
            return RunResult(
                True,
                r.exit_code,
                stdout,
                stderr,
                action.key,
                r.duration_s,
                tuple(f.path for f in r.output_files),
                tier=found.tier,
            )
        code, out, err, whole, took, start_ns = execute(
            action.argv,
            cwd=action.cwd,
            environ=environment,
            executable=action.tool,
            echo=echo,
        )
        cache._count_run(hit=False, saved_s=0.0)
        produced: tuple[str, ...] = ()
        stored = False
        if code == 0 or cache_failures:
            limit = cache.local.max_bytes if cache.local is not None else MAX_CAPTURE
            read = _read_outputs(action, code, limit)
            files, blobs = read if read is not None else ([], {})
            produced = tuple(f.path for f in files)
            if read is None:  # an output too large to cache (warned): not stored
                stored = False
            elif not whole:
                log.warning(
                    "action %s: stdout or stderr exceeded %d bytes; not cached",
                    action.key,
                    MAX_CAPTURE,
                )
            else:
                for data in (out, err):
                    if data:
                        blobs[Digest.of(data).hash] = data
                result = ActionResult(
                    output_files=tuple(files),
                    exit_code=code,
                    stdout_digest=Digest.of(out) if out else None,
                    stderr_digest=Digest.of(err) if err else None,
                    worker=WORKER,
                    duration_s=took,
                    start_ns=start_ns,
                )
                stored = runner.store(result, blobs, action.key)
        return RunResult(
            False, code, out, err, action.key, 0.0, produced, duration_s=took, stored=stored
        )
