"""The fair scheduler: round-robin between requests, one chunk per turn (fakes, no model)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from clearsight.inference.scheduling import FairScheduler


class Gate:
    """A runner that records which chunk starts and lets the test release them one by one."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, fn: Callable[[], Any]) -> Any:
        result = fn()
        self.started.append(result)
        await self.release.get()
        return result


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_big_request_does_not_hold_small_ones_behind_all_its_chunks() -> None:
    async def main() -> list[str]:
        gate = Gate()
        scheduler = FairScheduler(runner=gate)

        async def request(name: str, chunks: int) -> None:
            for i in range(chunks):  # as the predictor does: one chunk after the other
                await scheduler.run(name, lambda i=i: f"{name}{i}")

        big = asyncio.create_task(request("big", 5))
        await settle()
        smalls = [asyncio.create_task(request(f"s{j}-", 1)) for j in range(3)]
        await settle()
        while not (big.done() and all(s.done() for s in smalls)):
            gate.release.put_nowait(None)
            await settle()
        return gate.started

    order = asyncio.run(main())
    # The small ones arrived while big0 ran: each gets a turn before big's next chunk.
    assert order == ["big0", "s0-0", "s1-0", "s2-0", "big1", "big2", "big3", "big4"]


def test_keys_with_queued_chunks_take_turns() -> None:
    async def main() -> list[str]:
        gate = Gate()
        scheduler = FairScheduler(runner=gate)
        calls = [scheduler.run(k, lambda k=k, i=i: f"{k}{i}") for k in "ab" for i in range(3)]
        calls.append(scheduler.run("c", lambda: "c0"))
        tasks = [asyncio.ensure_future(c) for c in calls]
        await settle()
        for _ in tasks:
            gate.release.put_nowait(None)
        await asyncio.gather(*tasks)
        return gate.started

    # a0 starts at once (the worker is idle); then a, b and c take turns, one chunk each.
    assert asyncio.run(main()) == ["a0", "a1", "b0", "c0", "a2", "b1", "b2"]


def test_workers_bound_the_chunks_running_at_once() -> None:
    async def main() -> int:
        running, peak = 0, 0

        async def runner(fn: Callable[[], Any]) -> Any:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return fn()

        scheduler = FairScheduler(workers=2, runner=runner)
        results = await asyncio.gather(*(scheduler.run(i % 3, lambda i=i: i) for i in range(9)))
        assert sorted(results) == list(range(9))
        return peak

    assert asyncio.run(main()) == 2


def test_an_error_reaches_its_own_caller_only() -> None:
    def boom() -> None:
        raise ValueError("broken chunk")

    async def main() -> str:
        scheduler = FairScheduler()  # real worker thread
        failing = scheduler.run("a", boom)
        fine = scheduler.run("b", lambda: threading.current_thread().name)
        outcome = await asyncio.gather(failing, fine, return_exceptions=True)
        scheduler.close()
        assert isinstance(outcome[0], ValueError)
        return outcome[1]

    assert asyncio.run(main()).startswith("clearsight-explain")


def test_a_caller_that_gives_up_loses_only_its_queued_chunks() -> None:
    async def main() -> list[str]:
        gate = Gate()
        scheduler = FairScheduler(runner=gate)
        first = asyncio.ensure_future(scheduler.run("a", lambda: "a0"))
        gone = asyncio.ensure_future(scheduler.run("b", lambda: "b0"))
        last = asyncio.ensure_future(scheduler.run("c", lambda: "c0"))
        await settle()
        gone.cancel()
        for _ in range(2):
            gate.release.put_nowait(None)
            await settle()
        await asyncio.gather(first, last)
        return gate.started

    assert asyncio.run(main()) == ["a0", "c0"]


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FairScheduler(workers=0)
