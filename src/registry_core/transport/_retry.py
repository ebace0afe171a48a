"""When and how long to wait before retrying a request, sans-IO (random source injected).

Two kinds of failure are distinguished. A request the server provably never processed (the
connection could not be opened, a GOAWAY whose last stream id is below ours, a refused stream)
is safe to replay whatever its method. A request lost mid-flight (connection reset after it
was sent, a timeout, a 502/503/504) is replayed only when its method is idempotent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["IDEMPOTENT_METHODS", "RETRY_STATUSES", "RetryPolicy"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass
class RetryPolicy:
    """Exponential back-off with full jitter: ``delay = U(0, min(cap, base * 2**n))``.

    ``max_attempts`` counts the first try and every failure that may have reached the server.
    Replays of requests the server never processed have their own budget, ``max_replays``
    (a server draining connections with GOAWAY under load can refuse the same request several
    times without anything being wrong). ``rng`` returns floats in [0, 1); tests pass a fixed
    one. The first replay of an unprocessed request happens at once.
    """

    max_attempts: int = 4
    max_replays: int = 16
    base: float = 0.025
    cap: float = 1.0
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def should_retry(
        self, attempt: int, method: str, *, unprocessed: bool, replays: int = 0
    ) -> bool:
        """Whether a failed request may be sent again.

        ``attempt``: tries so far that may have been processed (1 = the first try);
        ``replays``: replays of unprocessed failures so far, this one included.
        """
        if unprocessed:
            return replays <= self.max_replays
        if attempt >= self.max_attempts:
            return False
        return method.upper() in IDEMPOTENT_METHODS

    def should_retry_status(self, attempt: int, method: str, status: int) -> bool:
        """Whether a response status calls for a replay (only idempotent methods)."""
        return (
            status in RETRY_STATUSES
            and attempt < self.max_attempts
            and method.upper() in IDEMPOTENT_METHODS
        )

    def delay(
        self, attempt: int, *, unprocessed: bool = False, retry_after: float | None = None
    ) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if unprocessed and attempt <= 1:
            return 0.0
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        wait = self.rng() * ceiling
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait
