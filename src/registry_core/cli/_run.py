"""Running an ASGI app in the foreground for ``serve`` and ``proxy``: start every listener,
print the one "serving on" line only once they are up, stop cleanly on Ctrl-C or SIGTERM."""

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
    **start: Any,
) -> int:
    """``start_server(app, **start)``, print ``describe(handle)``, block until a signal;
    ``before_stop()`` runs then, while the app is still up (a last summary line).

    Errors while starting (certificate, port, bind, missing extra) propagate to the caller,
    which turns them into its one-line message; nothing is printed on stdout before then.
    """
    from ..server import start_server

    handle = start_server(app, **start)
    stop = threading.Event()
    try:
        print(describe(handle), flush=True)
        with contextlib.suppress(ValueError):  # not in the main thread: Ctrl-C only
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            # The server thread ending on its own (a fatal error) ends the command too.
            while not stop.wait(0.5) and handle._thread.is_alive():
                pass
        except KeyboardInterrupt:
            pass
        if before_stop is not None:
            before_stop()
    finally:
        handle.stop()
    return 0
