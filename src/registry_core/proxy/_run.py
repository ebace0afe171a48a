"""Running the proxy: :func:`start_proxy` (background thread, returns a handle) and
:func:`run_proxy` (foreground until Ctrl-C or SIGTERM; the ``registry-core proxy`` command)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..server import ServerHandle
    from ._app import ProxyApp

__all__ = ["run_proxy", "start_proxy"]

DEFAULT_PORT = 3141


def start_proxy(
    upstream: str | ProxyApp,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    certfile: str | None = None,
    keyfile: str | None = None,
    **options: Any,
) -> ServerHandle:
    """Serve a :class:`ProxyApp` (built from ``upstream``, ``cache_dir`` and ``options``, or
    given) on a background thread: plain HTTP/1.1 unless ``certfile``/``keyfile`` are given
    (pip and uv accept ``http://127.0.0.1``). ``handle.app`` is the ProxyApp; stop with
    ``handle.stop()``."""
    from ..server import start_server
    from ._app import ProxyApp

    if isinstance(upstream, ProxyApp):
        app = upstream
    else:
        if cache_dir is None:
            from ..errors import InvalidArgumentError

            raise InvalidArgumentError("start_proxy needs a cache_dir")
        app = ProxyApp(upstream, cache_dir, **options)
    tls = certfile is not None
    return start_server(
        app, host=host, port=port, certfile=certfile, keyfile=keyfile, quic=False, tls=tls
    )


def run_proxy(
    upstream: str,
    cache_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    announce: Callable[[str], Any] | None = None,
    **options: Any,
) -> None:
    """Serve the proxy in the foreground until Ctrl-C or SIGTERM. ``announce`` gets the one
    "serving on" line (default: print it). ``options``: :class:`ProxyApp` keywords, and
    ``certfile``/``keyfile`` for TLS."""
    handle = start_proxy(upstream, cache_dir, host=host, port=port, **options)
    index = handle.url("/simple/")
    line = f"registry-core proxy: {index} -> {upstream} (cache {cache_dir})"
    if announce is None:
        print(line, flush=True)
    else:
        announce(line)
    stop = threading.Event()
    with contextlib.suppress(ValueError):  # not in the main thread: Ctrl-C only
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
