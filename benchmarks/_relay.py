"""A token-bucket TCP relay on loopback: a link of N Mbit/s with a small fixed RTT.

Used by ``bench_firstdl.py`` to time first downloads at a simulated link speed without tc
(root) or netem. Each direction of each accepted connection is paced on its own: a chunk read
from one side is held for half the RTT (propagation), then written once the direction's token
bucket (``mbit`` Mbit/s, a burst of ``BURST`` bytes) holds enough tokens for it. asyncio, one
process::

    python benchmarks/_relay.py --upstream 127.0.0.1:8000 --mbit 100 --rtt-ms 2

prints ``port <n>`` on stdout once listening (``--port 0``: any free port), then relays until
killed. ``Relay`` is the same thing for in-process use (``await Relay(...).start()``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

CHUNK = 64 << 10  # bytes read per step
BURST = 16 << 10  # token bucket depth (bytes)


class _Bucket:
    """Bytes per second with a small burst: ``await take(n)`` returns when n bytes may go."""

    def __init__(self, rate: float, burst: int = BURST) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:  # debt: wait until it is paid (sleep granularity averages out)
            await asyncio.sleep(-self.tokens / self.rate)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float, delay: float
) -> None:
    """Copy reader -> writer: each chunk delayed by ``delay`` s, then paced by the bucket."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=64)
    bucket = _Bucket(rate)

    async def read() -> None:
        while True:
            data = await reader.read(CHUNK)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    task = asyncio.create_task(read())
    try:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await task


class Relay:
    """Listen on 127.0.0.1:``port`` and relay each connection to ``upstream`` at ``mbit``
    Mbit/s per direction with ``rtt_ms`` of round-trip delay."""

    def __init__(
        self, upstream: tuple[str, int], mbit: float, rtt_ms: float = 2.0, port: int = 0
    ) -> None:
        if mbit <= 0 or rtt_ms < 0:
            raise ValueError("mbit must be > 0 and rtt_ms >= 0")
        self.upstream = upstream
        self.rate = mbit * 1e6 / 8  # bytes per second
        self.delay = rtt_ms / 2000.0  # one way, seconds
        self.port = port
        self._server: asyncio.base_events.Server | None = None

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(*self.upstream)
        except OSError:
            cw.close()
            return
        await asyncio.gather(
            _pump(cr, uw, self.rate, self.delay), _pump(ur, cw, self.rate, self.delay)
        )
        for w in (cw, uw):
            w.close()

    async def start(self) -> int:
        """Start listening; returns the port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _main(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    relay = Relay((host or "127.0.0.1", int(port)), args.mbit, args.rtt_ms, args.port)
    print(f"port {await relay.start()}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="host:port to relay to")
    ap.add_argument("--mbit", type=float, required=True, help="link speed per direction")
    ap.add_argument("--rtt-ms", type=float, default=2.0, help="round-trip time added")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
