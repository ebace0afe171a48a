"""A bounded RESP2 reply parser for redis-py: a hostile or broken server cannot make the client
allocate more than the store's size limit, or fail with anything but a ``RedisError``.

redis-py's own parser trusts the server: ``$536870912`` makes it read 512 MiB, a line without
``\\r\\n`` is buffered whole, ``:abc`` raises ``ValueError``. This subclass checks every header
before reading: bulk strings up to ``max_bulk`` bytes, arrays up to :data:`MAX_ITEMS` items and
:data:`MAX_DEPTH` levels, status and error lines up to :data:`MAX_LINE` bytes, integers as
ASCII digits. Anything else raises ``redis.exceptions.InvalidResponse`` (a ``RedisError``), and
redis-py drops the connection, so the stream cannot be left half-read.

It builds on redis-py's private ``_RESP2Parser`` / ``SocketBuffer`` (redis-py 5 to 8); when
those move, :func:`bounded_parser` returns None and the store falls back to the default
parser (reads stay bounded by ``GETRANGE`` against an honest server).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_LINE", "bounded_parser"]

MAX_LINE = 64 << 10  # status / error / header lines
MAX_ITEMS = 64  # the store's commands get at most a handful of replies per array
MAX_DEPTH = 4
_INT = re.compile(rb"-?[0-9]{1,19}")


def bounded_parser(max_bulk: int) -> Any:
    """A parser class for ``redis.Connection(parser_class=...)`` with bulk replies up to
    ``max_bulk`` bytes, or None when this redis-py has no compatible parser to extend."""
    try:
        from redis._parsers.resp2 import _RESP2Parser
        from redis._parsers.socket import SYM_CRLF, SocketBuffer
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import InvalidResponse
        from redis.utils import SENTINEL
    except ImportError:  # pragma: no cover - depends on the redis-py version
        return None

    class _BoundedBuffer(SocketBuffer):
        def readline(self, timeout: Any = SENTINEL) -> bytes:
            buf = self._buffer
            data = buf.readline(MAX_LINE + 2)
            while not data.endswith(SYM_CRLF):
                if len(data) >= MAX_LINE + 2:
                    raise InvalidResponse(
                        f"Redis reply line longer than {MAX_LINE} bytes; not a Redis server?"
                    )
                self._read_from_socket(timeout=timeout)
                data += buf.readline(MAX_LINE + 2 - len(data))
            return bytes(data[:-2])

    class BoundedRESP2Parser(_RESP2Parser):
        limit = max_bulk

        def on_connect(self, connection: Any) -> None:
            super().on_connect(connection)
            self._buffer = _BoundedBuffer(
                self._sock, self.socket_read_size, connection.socket_timeout
            )

        def _read_response(
            self, disable_decoding: bool = False, timeout: Any = SENTINEL, depth: int = 0
        ) -> Any:
            line = self._buffer.readline(timeout=timeout)
            if not line:
                raise RedisConnectionError("Connection closed by server.")
            kind, rest = line[:1], line[1:]
            if kind == b"-":
                error = self.parse_error(rest.decode("utf-8", errors="replace"))
                if isinstance(error, RedisConnectionError):
                    raise error
                return error
            if kind == b"+":
                value: Any = rest
            elif kind == b":":
                return _integer(rest, "integer")
            elif kind == b"$":
                size = _integer(rest, "bulk length")
                if size == -1:
                    return None
                if not 0 <= size <= self.limit:
                    raise InvalidResponse(
                        f"Redis bulk reply of {size} bytes refused: the limit is "
                        f"{self.limit} bytes (max_value_bytes plus the header)"
                    )
                value = self._buffer.read(size, timeout=timeout)
                if len(value) != size:
                    raise InvalidResponse("Redis bulk reply is shorter than its length")
            elif kind == b"*":
                count = _integer(rest, "array length")
                if count == -1:
                    return None
                if not 0 <= count <= MAX_ITEMS or depth >= MAX_DEPTH:
                    raise InvalidResponse(
                        f"Redis array reply of {count} items at depth {depth} refused "
                        f"(at most {MAX_ITEMS} items, {MAX_DEPTH} levels)"
                    )
                return [
                    self._read_response(disable_decoding, timeout, depth + 1) for _ in range(count)
                ]
            else:
                raise InvalidResponse(f"not a RESP2 reply: {line[:40]!r}")
            if not disable_decoding:
                value = self.encoder.decode(value)
            return value

    def _integer(text: bytes, what: str) -> int:
        if not _INT.fullmatch(text):
            raise InvalidResponse(f"Redis {what} is not an integer: {text[:40]!r}")
        return int(text)

    return BoundedRESP2Parser
