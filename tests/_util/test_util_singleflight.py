"""registry_core._util single-flight: one execution per key, cancellation kept to its caller."""

from __future__ import annotations

import asyncio
import threading

import pytest

from registry_core._util import SingleFlight, ThreadSingleFlight


def test_async_callers_share_one_execution() -> None:
    async def main() -> None:
        sf: SingleFlight[int] = SingleFlight()
        release = asyncio.Event()
        runs = 0

        async def fn() -> int:
            nonlocal runs
            runs += 1
            await release.wait()
            return 42

        tasks = [asyncio.ensure_future(sf.do("k", fn)) for _ in range(5)]
        await asyncio.sleep(0)  # let every task reach the shared call (no timing involved)
        release.set()
        assert await asyncio.gather(*tasks) == [42] * 5
        assert runs == 1 and sf.shared == 4 and len(sf) == 0

    asyncio.run(main())


def test_async_first_caller_cancelled_does_not_fail_the_others() -> None:
    async def main() -> None:
        sf: SingleFlight[str] = SingleFlight()
        started, release = asyncio.Event(), asyncio.Event()

        async def fn() -> str:
            started.set()
            await release.wait()
            return "done"

        first = asyncio.ensure_future(sf.do("k", fn))
        await started.wait()
        second = asyncio.ensure_future(sf.do("k", fn))
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        release.set()
        assert await second == "done"

    asyncio.run(main())


def test_async_last_waiter_cancelled_cancels_the_call() -> None:
    async def main() -> None:
        sf: SingleFlight[None] = SingleFlight()
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def fn() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        only = asyncio.ensure_future(sf.do("k", fn))
        await started.wait()
        only.cancel()
        with pytest.raises(asyncio.CancelledError):
            await only
        await asyncio.wait_for(cancelled.wait(), 10)
        assert len(sf) == 0

    asyncio.run(main())


def test_async_exception_reaches_every_waiter() -> None:
    async def main() -> None:
        sf: SingleFlight[None] = SingleFlight()
        release = asyncio.Event()

        async def fn() -> None:
            await release.wait()
            raise KeyError("boom")

        tasks = [asyncio.ensure_future(sf.do("k", fn)) for _ in range(3)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, KeyError) for r in results)

    asyncio.run(main())


def test_threads_share_one_execution() -> None:
    sf: ThreadSingleFlight[int] = ThreadSingleFlight()
    entered, release = threading.Event(), threading.Event()
    runs = 0
    results: list[int] = []

    def fn() -> int:
        nonlocal runs
        runs += 1
        entered.set()
        release.wait(30)
        return 7

    leader = threading.Thread(target=lambda: results.append(sf.do("k", fn)))
    leader.start()
    assert entered.wait(30)
    followers = [threading.Thread(target=lambda: results.append(sf.do("k", fn))) for _ in range(3)]
    for t in followers:
        t.start()
    # every follower is registered once `shared` counts it; wait on that, not on time
    for _ in range(100_000):  # a bounded poll of a state, not a timed wait
        if sf.shared == 3:
            break
        threading.Event().wait(0.001)
    release.set()
    for t in [leader, *followers]:
        t.join(30)
    assert results == [7] * 4 and runs == 1 and len(sf) == 0


def test_threads_exception_reaches_followers_and_key_is_released() -> None:
    sf: ThreadSingleFlight[int] = ThreadSingleFlight()

    def fail() -> int:
        raise OSError("disk")

    with pytest.raises(OSError):
        sf.do("k", fail)
    assert sf.do("k", lambda: 3) == 3
