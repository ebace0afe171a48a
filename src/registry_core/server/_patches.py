"""Which patches the server may compute, and the bounded queue that computes them.

Sans-IO policy first: :func:`diff_refusal` says whether a (base, target) pair of stored
artifacts is worth diffing at all -- only two releases of the same project, in the same
directory and of the same kind (a wheel against a wheel with the same tags, an sdist against
an sdist), the target newer than the base, both within a size bound. A client naming other
pairs gets the full file, with no work done.

Then :class:`PatchQueue`: a small thread pool behind a bounded count of pending jobs (global
and per client), so anonymous requests cannot queue unbounded CPU. A job that does not fit is
not queued: the request is answered with the full file at once.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .._util import SingleFlight
from ._storage import ArtifactInfo

__all__ = ["BUSY", "PatchQueue", "ReleaseName", "diff_refusal", "parse_release", "version_key"]

T = TypeVar("T")

_EXTS = (
    ".tar.gz",
    ".tar.bz2",
    ".tar.xz",
    ".tar.zst",
    ".tgz",
    ".whl",
    ".zip",
    ".tar",
    ".egg",
    ".jar",
    ".gem",
    ".crate",
    ".nupkg",
)
_VERSION = re.compile(
    r"v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?(?P<post>post|rev|r)[-_.]?(?P<post_n>\d*))?"
    r"(?:[-_.]?(?P<dev>dev)[-_.]?(?P<dev_n>\d*))?"
    r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\Z",
    re.IGNORECASE,
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


def version_key(text: str) -> tuple | None:
    """An ordering key for a PEP 440-style version (npm semver releases included), or None.

    Release numbers compare numerically (``1.10`` after ``1.9``, ``1.0 == 1.0.0``); ``.devN``
    sorts before pre-releases, pre-releases (``a``/``b``/``rc``) before the release,
    ``.postN`` after it. Local versions (``+abc``) compare equal to their public part.
    """
    m = _VERSION.match(text)
    if m is None or len(text) > 64:
        return None
    release = [int(p) for p in m.group("release").split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    pre, post, dev = m.group("pre"), m.group("post"), m.group("dev")
    if pre:
        pre_key: tuple = (1, _PRE_RANK[pre.lower()], int(m.group("pre_n") or 0))
    elif dev and not post:
        pre_key = (0,)
    else:
        pre_key = (3,)
    post_key = (1, int(m.group("post_n") or 0)) if post else (0,)
    dev_key = (0, int(m.group("dev_n") or 0)) if dev else (1,)
    return (tuple(release), pre_key, post_key, dev_key)


@dataclass(frozen=True)
class ReleaseName:
    """A stored file name read as ``<project>-<version>[-<tags>]<ext>``."""

    directory: str
    project: str  # PEP 503-normalised; "" for names that are a bare version
    version: str
    tail: str  # wheel build/python/abi/platform tags (compared as is)
    ext: str

    @property
    def family(self) -> tuple[str, str, str, str]:
        """Files of one family are releases of one artifact: only these are diffed."""
        return (self.directory, self.project, self.tail, self.ext)


def parse_release(path: str) -> ReleaseName | None:
    """Read ``path``'s file name as a release of a project, or None when it is not one."""
    directory, _, name = path.rpartition("/")
    lower = name.lower()
    ext = next((e for e in _EXTS if lower.endswith(e)), "")
    if not ext:
        dot = name.rfind(".")
        if dot > 0 and name[dot + 1 :].isalpha():
            ext = lower[dot:]
    stem = name[: len(name) - len(ext)] if ext else name
    if not stem:
        return None
    if stem[0].isdigit():
        project, rest = "", stem
    else:
        m = re.search(r"-(?=v?\d)", stem)
        if m is None:
            return None
        project, rest = stem[: m.start()], stem[m.end() :]
        project = re.sub(r"[-_.]+", "-", project).lower()
    version, _, tail = rest.partition("-") if ext == ".whl" else (rest, "", "")
    if not version:
        return None
    return ReleaseName(directory, project, version, tail, ext)


def diff_refusal(base: ArtifactInfo, target: ArtifactInfo, max_bytes: int) -> str | None:
    """Why the pair base -> target is not diffed (None when it may be).

    Newer is decided by the versions in the file names when both parse; otherwise by the
    stored modification times when the store knows them; otherwise the pair is refused.
    """
    if base.sha256 == target.sha256:
        return "same content"
    if base.size > max_bytes or target.size > max_bytes:
        return "too large"
    b, t = parse_release(base.path), parse_release(target.path)
    if b is None or t is None:
        return "not a release file name"
    if b.family != t.family:
        return "not the same project and kind"
    bk, tk = version_key(b.version), version_key(t.version)
    if bk is not None and tk is not None:
        return None if tk > bk else "target not newer"
    if base.mtime_ns is not None and target.mtime_ns is not None:
        return None if target.mtime_ns > base.mtime_ns else "target not newer"
    return "versions not comparable"


class _Busy:
    def __repr__(self) -> str:
        return "BUSY"


#: Returned by :meth:`PatchQueue.run` when the job did not fit in the queue.
BUSY: Any = _Busy()


class PatchQueue:
    """At most ``workers`` jobs run at once, at most ``max_pending`` are queued or running, and
    at most ``per_client`` of those were asked for by one client; callers asking for the same
    key while its job runs share it (single flight, cancellation-safe)."""

    def __init__(self, *, workers: int, max_pending: int, per_client: int) -> None:
        self.workers = workers
        self.max_pending = max_pending
        self.per_client = per_client
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._by_client: dict[Hashable, int] = {}
        self._flight: SingleFlight[Any] = SingleFlight()
        self.refused = 0  # jobs not queued because a bound was reached
        self.started = 0

    @property
    def pending(self) -> int:
        return self._pending

    def _reserve(self, client: Hashable) -> bool:
        with self._lock:
            mine = self._by_client.get(client, 0)
            if self._pending >= self.max_pending or mine >= self.per_client:
                self.refused += 1
                return False
            self._pending += 1
            self._by_client[client] = mine + 1
            self.started += 1
            return True

    def _release(self, client: Hashable) -> None:
        with self._lock:
            self._pending -= 1
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        self.workers, thread_name_prefix="registry-core-patch"
                    )
        return self._pool

    async def run(self, key: Hashable, client: Hashable, job: Callable[[], T]) -> T | Any:
        """``job()`` in the pool (shared with concurrent callers of ``key``), or BUSY."""

        async def leader() -> Any:
            if not self._reserve(client):
                return BUSY
            try:
                fut: Future[T] = self._executor().submit(job)
            except BaseException:
                self._release(client)
                raise
            fut.add_done_callback(lambda _f: self._release(client))
            return await asyncio.wrap_future(fut)

        return await self._flight.do(key, leader)

    def close(self) -> None:
        """Stop the workers (running jobs finish; queued ones are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
