"""Running an ASGI app in the foreground for ``serve`` and ``proxy``: start every listener,
print the one "serving on" line only once they are up; Ctrl-C stops at once, SIGTERM drains
(readiness turns false, the listener closes, in-flight requests finish, exit status 0): what a
load balancer's rolling restart needs."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any

from .._util._net import is_loopback

__all__ = ["is_loopback", "run_foreground"]


def run_foreground(
    app: Any,
    describe: Callable[[Any], str],
    *,
    before_stop: Callable[[], Any] | None = None,
    drain_timeout_s: float = 30.0,
    on_start: Callable[[Any], Any] | None = None,
    **start: Any,
) -> int:
    """``start_server(app, **start)``, print ``describe(handle)``, block until a signal;
    ``before_stop()`` runs then (a last summary line). ``on_start(handle)`` runs as soon as
    the server is up (before the "serving on" line: a readiness check may need the handle).

    SIGTERM drains: ``handle.drain(drain_timeout_s)`` (new connections refused at once,
    requests in flight finish up to the timeout), then the status is 0. Ctrl-C stops at once.
    Errors while starting (certificate, port, bind, missing extra) propagate to the caller,
    which turns them into its one-line message; nothing is printed on stdout before then.
    """
    from ..server import start_server

    handle = start_server(app, **start)
    stop = threading.Event()
    drain = threading.Event()

    def on_sigterm(*_: object) -> None:
        drain.set()
        stop.set()

    try:
        if on_start is not None:
            on_start(handle)
        print(describe(handle), flush=True)
        with contextlib.suppress(ValueError):  # not in the main thread: Ctrl-C only
            signal.signal(signal.SIGTERM, on_sigterm)
        try:
            # The server thread ending on its own (a fatal error) ends the command too.
            while not stop.wait(0.5) and handle._thread.is_alive():
                pass
        except KeyboardInterrupt:
            pass
        if drain.is_set():
            handle.drain(drain_timeout_s)
        if before_stop is not None:
            before_stop()
    finally:
        handle.stop()
    return 0
