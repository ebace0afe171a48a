"""Choose the TLS certificate by SNI (the stdlib's ``sni_callback``), hot-reloaded on renewal.

The server's default context keeps its own certificate (unknown names, clients without SNI);
for a name the :class:`CertificateStore` holds, the handshake switches to a context built from
that name's file with the same settings (ALPN, ciphers, minimum version). A context is cached
by the file's identity (inode, mtime, size): a renewal replaces the file, the next handshake
sees a new identity and loads it. A file that fails to load keeps the last good context.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from .._util import LRU
from ._store import CertificateStore

__all__ = ["SNIContexts"]

log = logging.getLogger("registry_core.certs")


class SNIContexts:
    """Per-name SSLContexts from a store; ``install(default)`` sets the default's callback.

    ``make_context(pem_path)`` builds a server context from one combined PEM file (key and
    chain); the server passes one that mirrors its own settings.
    """

    def __init__(
        self,
        store: CertificateStore,
        make_context: Callable[[str], ssl.SSLContext],
        *,
        max_names: int = 10_000,
    ) -> None:
        self.store = store
        self._make = make_context
        self._cache: LRU[str, tuple[tuple[int, int, int], ssl.SSLContext]] = LRU(
            max_entries=max_names
        )
        self._lock = threading.Lock()
        self.loads = 0  # contexts built (a renewal adds one): what tests and metrics read
        self.load_failures = 0

    def context_for(self, server_name: str | None) -> ssl.SSLContext | None:
        """The context for ``server_name``, or None (the default certificate answers)."""
        if not server_name:
            return None
        path = self.store.lookup(server_name)
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        key = str(path)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == ident:
            return cached[1]
        with self._lock:  # one load per change, even under a burst of handshakes
            cached = self._cache.get(key)
            if cached is not None and cached[0] == ident:
                return cached[1]
            try:
                context = self._make(key)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.load_failures += 1
                log.warning(
                    "certificate %s cannot be loaded (%s); keeping the last good one",
                    Path(key).name,
                    exc,
                )
                return cached[1] if cached is not None else None
            self.loads += 1
            self._cache.put(key, (ident, context))
            return context

    def callback(
        self, sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        """The ``sni_callback``: switch to the name's context when the store has one."""
        try:
            context = self.context_for(server_name)
        except Exception:  # never fail a handshake here: the default certificate answers
            log.exception("choosing a certificate for %r failed", server_name)
            return None
        if context is not None:
            sslobj.context = context
        return None

    def install(self, default: ssl.SSLContext) -> ssl.SSLContext:
        default.sni_callback = self.callback
        return default
