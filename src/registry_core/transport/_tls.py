"""TLS over asyncio with session resumption, as an httpcore network stream.

Python's ``ssl`` resumes a TLS session only when the session object is passed to
``wrap_socket``/``wrap_bio``; neither httpcore's AnyIO backend nor asyncio's TLS transport
expose that. This stream runs the TLS state machine itself (``SSLContext.wrap_bio`` over
memory BIOs, bytes moved by asyncio streams), keeps the session tickets the server sends,
and offers them on the next connection to the same name.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
from typing import Any

import httpcore

__all__ = ["TLSStream", "connect_tls"]

_READ = 1 << 16

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout  # a deadline on the current task: no extra task per call
else:  # pragma: no cover - Python 3.9/3.10

    @contextlib.asynccontextmanager
    async def _timeout(delay: float | None) -> Any:
        if delay is None:
            yield
            return
        task = asyncio.current_task()
        assert task is not None
        handle = asyncio.get_running_loop().call_later(delay, task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            if handle.when() <= asyncio.get_running_loop().time():
                raise asyncio.TimeoutError() from None
            raise
        finally:
            handle.cancel()


class TLSStream(httpcore.AsyncNetworkStream):
    """A connected, TLS-wrapped TCP stream (the interface httpcore's connections use)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sslobj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        sessions: dict[Any, ssl.SSLSession] | None,
        key: Any,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._ssl, self._in, self._out = sslobj, incoming, outgoing
        self._sessions, self._key = sessions, key
        self._saved = False

    async def _flush(self, timeout: float | None) -> None:
        data = self._out.read()
        if data:
            self._writer.write(data)
            if self._writer.transport.get_write_buffer_size() == 0:
                return  # all written synchronously; nothing to wait for
            try:
                async with _timeout(timeout):
                    await self._writer.drain()
            except asyncio.TimeoutError:
                raise httpcore.WriteTimeout("TLS write timed out") from None
            except OSError as exc:
                raise httpcore.WriteError(str(exc)) from exc

    async def _fill(self, timeout: float | None, error: type[Exception]) -> bool:
        try:
            async with _timeout(timeout):
                data = await self._reader.read(_READ)
        except asyncio.TimeoutError:
            raise httpcore.ReadTimeout("TLS read timed out") from None
        except OSError as exc:
            raise error(str(exc)) from exc
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    async def handshake(self, timeout: float | None) -> None:
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush(timeout)
                if not await self._fill(timeout, httpcore.ConnectError):
                    raise httpcore.ConnectError(
                        "connection closed during the TLS handshake"
                    ) from None
            except ssl.SSLError as exc:
                raise httpcore.ConnectError(str(exc)) from exc
        await self._flush(timeout)

    def _save_session(self) -> None:
        # TLS 1.3 tickets arrive after the handshake, so look once some data was read.
        if self._saved or self._sessions is None:
            return
        session = self._ssl.session
        if session is not None and session.has_ticket:
            self._sessions[self._key] = session
            self._saved = True

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        while True:
            try:
                data = self._ssl.read(max_bytes)
                self._save_session()
                return data
            except ssl.SSLWantReadError:
                await self._flush(timeout)  # e.g. a key update answer
                if not await self._fill(timeout, httpcore.ReadError):
                    with contextlib.suppress(ssl.SSLError):
                        return self._ssl.read(max_bytes)
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as exc:
                raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._ssl.write(buffer)
        except ssl.SSLError as exc:
            raise httpcore.WriteError(str(exc)) from exc
        await self._flush(timeout)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            self._ssl.unwrap()
            self._writer.write(self._out.read())
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 0.5)

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("TLS is already established on this stream")

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._ssl
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "is_readable":
            return self._reader.at_eof() or bool(self._reader._buffer)  # type: ignore[attr-defined]
        return None

    @property
    def session_reused(self) -> bool:
        return self._ssl.session_reused


async def connect_tls(
    address: str,
    port: int,
    *,
    server_hostname: str,
    context: ssl.SSLContext,
    timeout: float | None,
    sessions: dict[Any, ssl.SSLSession] | None = None,
) -> TLSStream:
    """TCP connect to ``address:port`` and run the TLS handshake for ``server_hostname``,
    resuming the session stored in ``sessions`` for that name when there is one."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, limit=1 << 20), timeout
        )
    except asyncio.TimeoutError:
        raise httpcore.ConnectTimeout(f"TCP connect to {address}:{port} timed out") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = (server_hostname, port)
    session = sessions.get(key) if sessions is not None else None
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        sslobj = context.wrap_bio(
            incoming, outgoing, server_hostname=server_hostname, session=session
        )
    except ValueError:  # a session from another SSLContext: connect without resuming
        sslobj = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    stream = TLSStream(reader, writer, sslobj, incoming, outgoing, sessions, key)
    try:
        await stream.handshake(timeout)
    except BaseException:
        writer.close()
        raise
    return stream
