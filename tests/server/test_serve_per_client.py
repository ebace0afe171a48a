"""``ServerLimits.max_requests_per_ip``: at most N requests of one client address are in the
application at once, the others wait in arrival order; other addresses are not held up, and a
waiter that goes away passes its turn on."""

from __future__ import annotations

import asyncio

import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.server import ServerLimits
from registry_core.server._serve import _PerClient


def test_per_client_limit_orders_and_isolates():
    async def main() -> None:
        gate = _PerClient(2)
        inside: list[str] = []
        release = {i: asyncio.Event() for i in range(5)}
        order: list[int] = []

        async def request(i: int, ip: str) -> None:
            await gate.acquire(ip)
            try:
                inside.append(ip)
                order.append(i)
                await release[i].wait()
            finally:
                inside.remove(ip)
                gate.release(ip)

        tasks = [asyncio.create_task(request(i, "10.0.0.1")) for i in range(4)]
        other = asyncio.create_task(request(4, "10.0.0.2"))
        for _ in range(5):
            await asyncio.sleep(0)  # let every task reach the gate (no timing involved)
        assert sorted(order) == [0, 1, 4]  # two of the busy client, the other client at once
        assert inside.count("10.0.0.1") == 2
        tasks[2].cancel()  # a waiter that goes away
        release[0].set()
        await tasks[0]
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == [0, 1, 4, 3]  # 2 was cancelled: 3 got the turn, in order
        for i in (1, 3, 4):
            release[i].set()
        await asyncio.gather(tasks[1], tasks[3], other)
        with pytest.raises(asyncio.CancelledError):
            await tasks[2]
        assert gate.active == {} and gate.waiting == {}

    asyncio.run(main())


def test_cancelled_after_being_handed_the_turn_passes_it_on():
    async def main() -> None:
        gate = _PerClient(1)
        await gate.acquire("a")
        second = asyncio.create_task(gate.acquire("a"))
        third = asyncio.create_task(gate.acquire("a"))
        await asyncio.sleep(0)
        gate.release("a")  # hands the turn to `second` ...
        second.cancel()  # ... which is cancelled before it runs
        await asyncio.wait_for(third, 5)  # the turn reached `third`
        assert gate.active == {"a": 1}
        gate.release("a")
        assert gate.active == {} and gate.waiting == {}

    asyncio.run(main())


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_max_requests_per_ip_is_validated(bad):
    with pytest.raises(InvalidArgumentError):
        ServerLimits(max_requests_per_ip=bad)
