"""The greedy micro-batcher on a numpy ``forward``: no server, no Keras, a few seconds in all."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from clearsight.errors import RequestError
from serving.batching import AdaptiveBatcher


class Recorder:
    """``forward`` that sleeps, records each batch's size and thread, and returns 2·x + 1."""

    def __init__(self, sleep_s: float = 0.01, fail_on: int | None = None) -> None:
        self.sleep_s = sleep_s
        self.fail_on = fail_on  # the index of the pass that raises
        self.sizes: list[int] = []
        self.inputs: list[np.ndarray] = []
        self.threads: set[int] = set()
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            index = len(self.sizes)
            self.sizes.append(len(x))
            self.inputs.append(x.copy())
            self.threads.add(threading.get_ident())
        try:
            time.sleep(self.sleep_s)
            if index == self.fail_on:
                raise ValueError("boom")
            return 2.0 * x + 1.0
        finally:
            with self._lock:
                self.running -= 1


def rows(start: int, n: int) -> np.ndarray:
    """``n`` distinct rows of shape (3,)."""
    return np.arange(start, start + 3 * n, dtype=np.float32).reshape(n, 3)


def test_concurrent_calls_are_batched_and_get_their_own_rows() -> None:
    forward = Recorder(sleep_s=0.01)
    batched: list[int] = []
    batcher = AdaptiveBatcher(
        forward, max_batch_size=16, max_latency_ms=5_000, on_batch=batched.append
    )
    inputs = [rows(10 * i, 1) for i in range(100)]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher(x) for x in inputs))

    outputs = asyncio.run(main())
    batcher.close()
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(y, 2.0 * x + 1.0)
    assert sum(forward.sizes) == 100
    assert len(forward.sizes) <= 20, f"{len(forward.sizes)} forward passes for 100 calls"
    assert max(forward.sizes) <= 16
    assert batched == forward.sizes  # on_batch sees every pass, with its size
    assert forward.max_running == 1  # one batch at a time
    assert threading.get_ident() not in forward.threads  # off the event loop's thread


def test_event_loop_keeps_running_while_the_model_computes() -> None:
    forward = Recorder(sleep_s=0.3)
    batcher = AdaptiveBatcher(forward, max_batch_size=8, max_latency_ms=5_000)

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await batcher(rows(0, 1))
        task.cancel()
        return ticks

    ticks = asyncio.run(main())
    batcher.close()
    assert ticks >= 10, f"the loop ticked {ticks} times during a 300 ms forward pass"


def test_a_lone_call_runs_at_once() -> None:
    forward = Recorder(sleep_s=0.001)
    batcher = AdaptiveBatcher(forward, max_batch_size=64, max_latency_ms=20_000)

    async def main() -> float:
        await batcher(rows(0, 1))  # the first call starts the consumer and the thread
        await asyncio.sleep(0.05)  # idle again
        start = time.perf_counter()
        await batcher(rows(0, 1))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    batcher.close()
    assert elapsed < 0.05, f"a lone call took {1e3 * elapsed:.0f} ms"
    assert forward.sizes == [1, 1]


def test_requests_of_different_sizes_come_back_aligned_and_unsplit() -> None:
    forward = Recorder(sleep_s=0.02)
    batcher = AdaptiveBatcher(forward, max_batch_size=8, max_latency_ms=5_000)
    sizes = [3, 1, 5, 2, 4, 12, 1, 7, 2]  # 12 > max_batch_size: runs alone
    inputs = []
    start = 0
    for n in sizes:
        inputs.append(rows(start, n))
        start += 3 * n

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher(x) for x in inputs))

    outputs = asyncio.run(main())
    batcher.close()
    for x, y in zip(inputs, outputs, strict=True):
        assert y.shape == x.shape
        np.testing.assert_array_equal(y, 2.0 * x + 1.0)
    assert sum(forward.sizes) == sum(sizes)
    assert 12 in forward.sizes  # the large request ran whole, alone
    assert all(size <= 8 for size in forward.sizes if size != 12)
    assert len(forward.sizes) < len(sizes)  # and the others shared passes


def test_a_request_that_cannot_start_in_time_gets_503() -> None:
    forward = Recorder(sleep_s=0.3)
    batcher = AdaptiveBatcher(forward, max_batch_size=1, max_latency_ms=100)

    async def main() -> tuple[np.ndarray, BaseException | np.ndarray]:
        first = asyncio.create_task(batcher(rows(0, 1)))
        await asyncio.sleep(0.02)  # the first pass is running
        second = asyncio.create_task(batcher(rows(3, 1)))  # would start after ~280 ms
        results = await asyncio.gather(first, second, return_exceptions=True)
        return results[0], results[1]

    first, second = asyncio.run(main())
    batcher.close()
    np.testing.assert_array_equal(first, 2.0 * rows(0, 1) + 1.0)
    assert isinstance(second, RequestError)
    assert (second.status, second.code) == (503, "overloaded")
    assert forward.sizes == [1]  # the stale request was never run


def test_a_failing_forward_fails_its_batch_only() -> None:
    forward = Recorder(sleep_s=0.05, fail_on=1)
    batcher = AdaptiveBatcher(forward, max_batch_size=8, max_latency_ms=5_000)

    async def main() -> tuple[list[object], np.ndarray, np.ndarray]:
        first = asyncio.create_task(batcher(rows(0, 1)))  # pass 0: fine
        await asyncio.sleep(0.01)
        failing = [asyncio.create_task(batcher(rows(3 * i, 1))) for i in range(3)]  # pass 1
        await asyncio.sleep(0.06)  # pass 1 is running
        waiting = asyncio.create_task(batcher(rows(30, 2)))  # queued behind it: pass 2
        results = await asyncio.gather(first, *failing, return_exceptions=True)
        queued = await asyncio.wait_for(waiting, timeout=2)  # served without any new call
        after = await asyncio.wait_for(batcher(rows(60, 1)), timeout=2)  # pass 3
        return results, queued, after

    results, queued, after = asyncio.run(main())
    batcher.close()
    assert forward.sizes == [1, 3, 2, 1]
    assert isinstance(results[0], np.ndarray)
    assert all(isinstance(r, ValueError) and str(r) == "boom" for r in results[1:])
    np.testing.assert_array_equal(queued, 2.0 * rows(30, 2) + 1.0)
    np.testing.assert_array_equal(after, 2.0 * rows(60, 1) + 1.0)


def test_a_full_queue_refuses_at_once() -> None:
    forward = Recorder(sleep_s=0.3)
    batcher = AdaptiveBatcher(forward, max_batch_size=1, max_latency_ms=20_000, max_queue=2)

    async def main() -> tuple[list[object], float, object]:
        running = asyncio.create_task(batcher(rows(0, 1)))
        await asyncio.sleep(0.02)  # running: the queue is empty again
        queued = [asyncio.create_task(batcher(rows(3 * i, 1))) for i in range(2)]
        await asyncio.sleep(0)  # both are queued now
        start = time.perf_counter()
        try:
            await batcher(rows(9, 1))
            refused: object = None
        except RequestError as error:
            refused = error
        elapsed = time.perf_counter() - start
        done = await asyncio.gather(running, *queued, return_exceptions=True)
        return done, elapsed, refused

    done, elapsed, refused = asyncio.run(main())
    batcher.close()
    assert isinstance(refused, RequestError) and refused.status == 503
    assert elapsed < 0.05, f"refused after {1e3 * elapsed:.0f} ms, not at once"
    assert all(isinstance(r, np.ndarray) for r in done)  # the admitted ones still ran
    assert forward.sizes == [1, 1, 1]


def test_a_cancelled_caller_breaks_nothing() -> None:
    forward = Recorder(sleep_s=0.1)
    batcher = AdaptiveBatcher(forward, max_batch_size=8, max_latency_ms=5_000, max_queue=4)

    async def main() -> tuple[list[np.ndarray], np.ndarray]:
        running = asyncio.create_task(batcher(rows(0, 1)))  # cancelled while computing
        await asyncio.sleep(0.02)
        gone = asyncio.create_task(batcher(rows(3, 4)))  # fills the queue, then goes away
        await asyncio.sleep(0)
        running.cancel()
        gone.cancel()
        await asyncio.gather(running, gone, return_exceptions=True)
        # Its place in the queue was freed: 4 more images are admitted, not refused.
        others = await asyncio.gather(*(batcher(rows(30 + 3 * i, 1)) for i in range(4)))
        return others, await batcher(rows(60, 1))

    others, last = asyncio.run(main())
    batcher.close()
    for i, y in enumerate(others):
        np.testing.assert_array_equal(y, 2.0 * rows(30 + 3 * i, 1) + 1.0)
    np.testing.assert_array_equal(last, 2.0 * rows(60, 1) + 1.0)
    assert not any(np.isin(3.0, x) for x in forward.inputs)  # the cancelled queued one never ran


def test_built_outside_a_loop_and_closed_twice() -> None:
    forward = Recorder(sleep_s=0.001)
    batcher = AdaptiveBatcher(forward, max_batch_size=4, max_latency_ms=1_000)

    async def main() -> tuple[np.ndarray, bool]:
        y = await batcher(rows(0, 2))
        consumer = batcher._consumer
        batcher.close()
        await asyncio.sleep(0)
        return y, consumer is not None and consumer.done()

    y, stopped = asyncio.run(main())
    batcher.close()  # idempotent, also outside the loop
    np.testing.assert_array_equal(y, 2.0 * rows(0, 2) + 1.0)
    assert stopped
    with pytest.raises(RequestError) as refused:
        asyncio.run(batcher(rows(0, 1)))
    assert refused.value.status == 503
