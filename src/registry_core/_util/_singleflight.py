"""Request coalescing: concurrent identical calls share one execution.

:class:`SingleFlight` is for coroutines, :class:`ThreadSingleFlight` for threads. In both, a
caller that gives up (cancelled, or interrupted) does not take the shared call away from the
others, and the result or exception reaches every waiter as it is.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight", "ThreadSingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """``await sf.do(key, fn)`` runs ``fn()`` once per key at a time; callers arriving while it
    runs get the same result (or exception). A caller being cancelled does not cancel the shared
    call for the others; the call is cancelled only when every waiter has gone.
    """

    def __init__(self) -> None:
        self._calls: dict[Hashable, tuple[asyncio.Task[T], list[int]]] = {}
        self.shared = 0  # how many calls were served by another caller's execution

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        entry = self._calls.get(key)
        if entry is None:
            task = asyncio.ensure_future(fn())
            entry = (task, [0])
            self._calls[key] = entry
            task.add_done_callback(functools.partial(self._done, key, entry))
        else:
            self.shared += 1
        task, waiters = entry
        waiters[0] += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done() and waiters[0] == 1:
                task.cancel()
            raise
        finally:
            waiters[0] -= 1

    def _done(
        self, key: Hashable, entry: tuple[asyncio.Task[T], list[int]], _task: asyncio.Task[T]
    ) -> None:
        if self._calls.get(key) is entry:
            del self._calls[key]
        task = entry[0]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter re-raises it from shield()

    def __len__(self) -> int:
        return len(self._calls)


class _Call(Generic[T]):
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


class ThreadSingleFlight(Generic[T]):
    """``sf.do(key, fn)`` from many threads runs ``fn()`` once per key at a time; the others
    block until it finishes and get its result or exception."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, _Call[T]] = {}
        self._lock = threading.Lock()
        self.shared = 0

    def do(self, key: Hashable, fn: Callable[[], T]) -> T:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
            else:
                self.shared += 1
        if leader:
            try:
                call.value = fn()
            except BaseException as exc:
                call.error = exc
            finally:
                with self._lock:
                    del self._calls[key]
                call.done.set()
        else:
            call.done.wait()
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._calls)
