"""Per-origin download throughput, sans-IO: what ``first_downloads="auto"`` decides from.

An EXPANDED first-download patch is about half the bytes of the plain file, but rebuilding
it (recompressing every deflate stream) runs at only a few MB/s of artifact. Fetching it
therefore costs about ``size/bandwidth/2 + size/rebuild_rate`` against ``size/bandwidth`` for
the plain file: it pays only while ``bandwidth < rebuild_rate / 2``. A
:class:`ThroughputEstimate` keeps, per origin (scheme, host, port), a bounded exponentially
weighted moving average of the bytes/s plain (``200``) artifact bodies arrived at; the caller
measures, this module only folds numbers. Bodies under :data:`MIN_SAMPLE_BYTES` are ignored:
their time is round trips and server think time, not bandwidth. Docs: docs/transport.md
"First downloads".
"""

from __future__ import annotations

import collections
import math
import threading

import httpx

from ..errors import InvalidArgumentError

__all__ = [
    "DEFAULT_FIRST_DOWNLOAD_BELOW",
    "FIRST_DOWNLOAD_MODES",
    "MIN_SAMPLE_BYTES",
    "ThroughputEstimate",
    "first_download_mode",
    "origin_of",
]

#: Bodies smaller than this say little about bandwidth (latency dominates): not sampled.
MIN_SAMPLE_BYTES = 256 * 1024
#: Below this many bytes/s (about 32 Mbit/s) "auto" asks for EXPANDED first downloads: about
#: half the upper rebuild rate measured on 2 cores (where the crossover lies; docs/transport.md).
DEFAULT_FIRST_DOWNLOAD_BELOW = 4_000_000
FIRST_DOWNLOAD_MODES = ("auto", "always", "never")


def first_download_mode(value: bool | str) -> str:
    """``first_downloads`` as one of "auto", "always", "never" (True is "always", False
    "never"); InvalidArgumentError for anything else."""
    if value is True:
        return "always"
    if value is False:
        return "never"
    if isinstance(value, str) and value.strip().lower() in FIRST_DOWNLOAD_MODES:
        return value.strip().lower()
    raise InvalidArgumentError(
        f"first_downloads must be True, False, 'auto', 'always' or 'never', not {value!r}"
    )


def origin_of(url: str | httpx.URL) -> str:
    """``scheme://host:port`` of ``url`` (the port always spelled out), the estimate's key."""
    u = httpx.URL(url) if not isinstance(url, httpx.URL) else url
    scheme = u.scheme.lower()
    port = u.port if u.port is not None else (443 if scheme == "https" else 80)
    return f"{scheme}://{u.host.lower()}:{port}"


class ThroughputEstimate:
    """Bytes/s of plain downloads per origin: an EWMA (weight ``alpha`` for each new sample)
    over samples of at least ``min_bytes``, for at most ``max_origins`` origins (the least
    recently observed is forgotten first). Thread-safe; no clock: callers pass durations."""

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        min_bytes: int = MIN_SAMPLE_BYTES,
        max_origins: int = 256,
    ) -> None:
        if not 0 < alpha <= 1:
            raise InvalidArgumentError(f"alpha must be in (0, 1], not {alpha!r}")
        if max_origins <= 0:
            raise InvalidArgumentError(f"max_origins must be positive, not {max_origins!r}")
        self.alpha = alpha
        self.min_bytes = min_bytes
        self.max_origins = max_origins
        self._rates: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def observe(self, origin: str, nbytes: int, seconds: float) -> bool:
        """Fold one body of ``nbytes`` that took ``seconds`` into ``origin``'s estimate.
        Returns whether it was a sample (too small, or a non-positive / non-finite duration:
        ignored)."""
        if nbytes < self.min_bytes or not math.isfinite(seconds) or seconds <= 0:
            return False
        rate = nbytes / seconds
        with self._lock:
            old = self._rates.pop(origin, None)
            if old is None:
                self._rates[origin] = (rate, 1)
            else:
                self._rates[origin] = (old[0] + self.alpha * (rate - old[0]), old[1] + 1)
            while len(self._rates) > self.max_origins:
                self._rates.popitem(last=False)
        return True

    def get(self, origin: str) -> float | None:
        """The estimate for ``origin`` in bytes/s, or None before its first sample."""
        with self._lock:
            got = self._rates.get(origin)
        return None if got is None else got[0]

    def samples(self, origin: str) -> int:
        """How many samples ``origin``'s estimate is made of."""
        with self._lock:
            got = self._rates.get(origin)
        return 0 if got is None else got[1]

    def __len__(self) -> int:
        with self._lock:
            return len(self._rates)
