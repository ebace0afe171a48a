"""What the commands print: sizes, the one summary line, and a progress ticker on terminals."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TypeVar

T = TypeVar("T")


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


class Progress:
    """A one-line ``what... 3s`` ticker on a terminal, shown once work has taken ``delay``
    seconds, redrawn every ``interval``, erased when the work ends. Silent when ``stream`` is
    not a terminal (pipes, CI logs), so output stays one summary line."""

    def __init__(
        self,
        what: str,
        stream: IO[str] | None = None,
        *,
        delay: float = 1.0,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.stream = sys.stderr if stream is None else stream
        self.delay = delay
        self.interval = interval
        self.clock = clock
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.shown = False

    def __enter__(self) -> Progress:
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            self._start = self.clock()
            self._thread = threading.Thread(
                target=self._run, name="registry-core-progress", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        if self._done.wait(self.delay):
            return
        while True:
            self.shown = True
            self.stream.write(f"\r{self.what}... {self.clock() - self._start:.0f}s")
            self.stream.flush()
            if self._done.wait(self.interval):
                return

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            if self.shown:
                self.stream.write("\r\033[K")  # erase the line: the summary follows
                self.stream.flush()


def timed(what: str, fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    with Progress(what):
        result = fn()
    return result, time.perf_counter() - t0


def counts(report: object) -> str:
    """A report dataclass's counts as words: ``added 3, removed 0, ...``."""
    fields = getattr(report, "__dataclass_fields__", None)
    if fields:
        values = {name: getattr(report, name) for name in fields}
        return ", ".join(
            f"{name.replace('_', ' ')} {len(v) if isinstance(v, tuple | list) else v}"
            for name, v in values.items()
        )
    return str(report)
