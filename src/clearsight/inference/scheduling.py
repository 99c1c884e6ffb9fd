"""Explanation work shared fairly between requests: chunks, served round-robin.

Why: explanations ran one request at a time, so a request of 64 images x every method held
every other explanation for as long as it took. Here a request submits its work as chunks
(one method over a slice of its images, a few hundred units at most; see
``clearsight.inference.budget``) under its own key, and the scheduler serves the keys that
have work waiting in turn, one chunk each. A one-image request that arrives while a big one
runs waits for at most the chunk in progress (per worker), not for the whole big request.

Chunks run on a small pool of worker threads (one by default: TensorFlow already uses every
core for one chunk, and the forward passes have their own thread in the batcher). The queue
itself lives on the event loop; nothing here blocks it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Runner = Callable[[Callable[[], Any]], Awaitable[Any]]


@dataclass(eq=False, slots=True)
class _Chunk:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]


class FairScheduler:
    """``await scheduler.run(key, fn)`` runs ``fn()`` on a worker when ``key``'s turn comes.

    Keys with waiting chunks are served round-robin, one chunk per turn; a key's own chunks
    run in the order submitted. ``runner`` executes one chunk (default: on this scheduler's
    thread pool of ``workers`` threads); tests pass an async fake to watch the order.
    A caller that stops waiting (cancelled) loses its queued chunks, not the others' turns.
    """

    def __init__(self, workers: int = 1, runner: Runner | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._runner = runner or self._in_thread
        self._queues: dict[Hashable, deque[_Chunk]] = {}
        self._turns: deque[Hashable] = deque()  # keys with queued chunks, next turn first
        self._busy = 0
        self._running: set[asyncio.Future[None]] = set()

    @property
    def waiting(self) -> int:
        """Chunks queued and not yet started."""
        return sum(len(q) for q in self._queues.values())

    async def run(self, key: Hashable, fn: Callable[[], T]) -> T:
        """Queue ``fn`` under ``key`` and return its result once a worker has run it."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        chunk = _Chunk(fn, future)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._turns.append(key)
        queue.append(chunk)
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._busy < self.workers and self._turns:
            key = self._turns.popleft()
            queue = self._queues[key]
            chunk = queue.popleft()
            if queue:
                self._turns.append(key)  # its next chunk waits for the others' turns
            else:
                del self._queues[key]
            if chunk.future.done():  # its caller gave up while it waited
                continue
            self._busy += 1
            task = asyncio.ensure_future(self._execute(chunk))
            self._running.add(task)  # a reference, so the task is not collected mid-run
            task.add_done_callback(self._running.discard)

    async def _execute(self, chunk: _Chunk) -> None:
        try:
            result = await self._runner(chunk.fn)
        except BaseException as err:  # handed to the caller, who decides
            if not chunk.future.done():
                chunk.future.set_exception(err)
        else:
            if not chunk.future.done():
                chunk.future.set_result(result)
        finally:
            self._busy -= 1
            self._dispatch()

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="clearsight-explain"
            )
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def close(self) -> None:
        """Stop the worker threads once the chunks they run are done."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
