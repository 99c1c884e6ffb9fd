"""Greedy micro-batching of forward passes inside the service process, on public APIs only.

Why not BentoML's batching: ``@bentoml.api(batchable=True)`` batches only requests that reach
that API over HTTP (our routes are an ASGI app that calls the model directly), and the
dispatcher behind it (``bentoml._internal.marshal.dispatcher.CorkDispatcher``) is private, so
any BentoML minor release may change or remove it. What a single-worker CPU service needs is
much simpler anyway: greedy batching. When the model is idle a request runs at once; while a
forward pass runs, new requests queue, and the next pass takes everything queued (up to
``max_batch_size`` images). The batch size thus follows the load by itself: one image per pass
when the service is quiet, full batches when it is busy, and no request ever waits on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from clearsight.errors import RequestError

logger = logging.getLogger("clearsight.serving")

QUEUE_BATCHES = 64  # default queue bound, in batches of max_batch_size images


def overloaded() -> RequestError:
    """The 503 a caller gets when its request waited, or would wait, too long."""
    return RequestError(503, "overloaded", "the model queue is full; retry shortly")


@dataclass(eq=False, slots=True)
class _Request:
    x: np.ndarray
    future: asyncio.Future[np.ndarray]
    queued_at: float
    queued: bool = True  # still counted in the queue's image total


class AdaptiveBatcher:
    """``await batcher(x)`` runs ``forward`` on ``x`` (N, ...) together with concurrent calls.

    ``forward`` (numpy in, numpy out, rows aligned with the input's) runs on one dedicated
    worker thread, one batch at a time, so the event loop keeps accepting requests while the
    model computes. A request is never split across batches; one larger than
    ``max_batch_size`` runs alone. A request that waited more than ``max_latency_ms`` before
    its batch started, or that finds ``max_queue`` images already queued, gets a 503
    ``RequestError``. ``on_batch(n_images)`` is called after each successful forward pass.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int,
        max_latency_ms: int,
        on_batch: Callable[[int], None] | None = None,
        max_queue: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_latency_ms <= 0:
            raise ValueError(f"max_latency_ms must be positive, got {max_latency_ms}")
        self._forward = forward
        self._on_batch = on_batch
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_latency_ms / 1e3
        self._max_queue = max_queue if max_queue is not None else QUEUE_BATCHES * max_batch_size
        if self._max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {self._max_queue}")
        # One thread for every forward pass: one batch at a time, and thread-local state of
        # the framework (TensorFlow, JAX) stays on one thread. It starts on first use.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clearsight-fwd")
        self._queue: deque[_Request] = deque()
        self._queued_images = 0
        self._closed = False
        # Bound to the event loop that serves requests, so created on the first call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._consumer: asyncio.Task[None] | None = None

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        """``forward``'s rows for ``x``, computed in a batch with concurrent callers' rows."""
        if self._closed:
            raise RequestError(503, "shutting_down", "the model is shutting down; retry shortly")
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("the batcher needs an array of rows (N, ...), got a scalar")
        self._start()
        assert self._loop is not None and self._wakeup is not None
        n = len(x)
        if self._queued_images and self._queued_images + n > self._max_queue:
            raise overloaded()
        request = _Request(x, self._loop.create_future(), time.monotonic())
        self._queue.append(request)
        self._queued_images += n
        self._wakeup.set()
        try:
            return await request.future
        except asyncio.CancelledError:  # the client went away: free its place in the queue
            self._unqueue(request)
            raise

    def close(self) -> None:
        """Stop the consumer task and the worker thread; queued callers get a 503. Idempotent."""
        if self._closed:
            return
        self._closed = True
        task, loop = self._consumer, self._loop
        if task is not None and not task.done() and loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                task.cancel()
            else:
                loop.call_soon_threadsafe(task.cancel)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals --------------------------------------------------------------------------
    def _start(self) -> None:
        """Create the loop-bound state and the consumer task in the running loop, if needed."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # the first call, or a new event loop (the old one ended)
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._queue.clear()
            self._queued_images = 0
            self._consumer = None
        if self._consumer is None or self._consumer.done():
            self._consumer = loop.create_task(self._consume(), name="clearsight-batcher")

    def _unqueue(self, request: _Request) -> None:
        if request.queued:
            request.queued = False
            self._queued_images -= len(request.x)

    async def _consume(self) -> None:
        assert self._wakeup is not None
        try:
            while True:
                if not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                batch = self._take_batch()
                if batch:
                    await self._run(batch)
        finally:  # closed (or the loop ends): nobody will serve what is still queued
            while self._queue:
                request = self._queue.popleft()
                self._unqueue(request)
                if not request.future.done():
                    request.future.set_exception(
                        RequestError(503, "shutting_down", "the model is shutting down")
                    )

    def _take_batch(self) -> list[_Request]:
        """Everything queued, in arrival order, up to max_batch_size images; refuse the stale."""
        now = time.monotonic()
        batch: list[_Request] = []
        size = 0
        while self._queue:
            request = self._queue[0]
            n = len(request.x)
            if not request.future.done():
                if now - request.queued_at > self._max_wait_s:
                    request.future.set_exception(overloaded())
                elif batch and (
                    size + n > self._max_batch_size or not _fits(batch[0].x, request.x)
                ):
                    break
                else:
                    batch.append(request)
                    size += n
            self._queue.popleft()
            self._unqueue(request)
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        """One forward pass on the worker thread; each caller gets its rows or the error."""
        assert self._loop is not None
        sizes = [len(request.x) for request in batch]
        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([r.x for r in batch])
            output = np.asarray(await self._loop.run_in_executor(self._executor, self._forward, x))
            if output.ndim == 0 or len(output) != len(x):
                raise RuntimeError(
                    f"forward returned {output.shape} for an input of {len(x)} rows; "
                    "it must return one row per input row"
                )
        except asyncio.CancelledError:  # close(): the callers of this batch are told so
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(
                        RequestError(503, "shutting_down", "the model is shutting down")
                    )
            raise
        except Exception as error:  # this batch fails; the next one runs as usual
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        if self._on_batch is not None:
            try:
                self._on_batch(len(x))
            except Exception:  # a metrics hook must not fail the callers
                logger.exception("on_batch hook failed")
        for request, rows in zip(batch, np.split(output, np.cumsum(sizes)[:-1]), strict=True):
            if not request.future.done():
                request.future.set_result(rows)


def _fits(first: np.ndarray, other: np.ndarray) -> bool:
    """Whether ``other`` can share a forward pass with ``first`` (same row shape and dtype)."""
    return first.shape[1:] == other.shape[1:] and first.dtype == other.dtype
