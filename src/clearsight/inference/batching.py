"""Adaptive batching of forward passes inside one process, with BentoML's own dispatcher.

``@bentoml.api(batchable=True)`` batches only requests that reach that API over HTTP, and in
BentoML 1.4.40 calling such an API from another route (self-proxy or ``bentoml.depends``)
went through an aiohttp client that failed under concurrency (``ServerDisconnectedError``,
500s, measured). So the service feeds BentoML's ``CorkDispatcher`` (the adaptive algorithm
behind batchable APIs: it learns the batch cost and waits only while waiting pays) directly:
concurrent requests' images meet in one forward pass, without a network hop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread
import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher

from clearsight.inference.errors import RequestError


class AdaptiveBatcher:
    """``await batcher(x)`` runs ``forward`` on ``x`` (N, ...) together with concurrent calls.

    ``forward`` (numpy in, numpy out, rows aligned) runs in a worker thread, one batch at a
    time, so the event loop keeps accepting requests while the model computes.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int,
        max_latency_ms: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._forward = forward
        self._on_batch = on_batch
        self._limiter: anyio.CapacityLimiter | None = None
        self._dispatcher: CorkDispatcher[np.ndarray, np.ndarray] = CorkDispatcher(
            max_latency_in_ms=max_latency_ms,
            max_batch_size=max_batch_size,
            fallback=self._overloaded,
            get_batch_size=len,
            batch_dim=(0, 0),
        )
        self._call = self._dispatcher(self._run_batch)

    @staticmethod
    def _overloaded() -> np.ndarray:
        raise RequestError(503, "overloaded", "the model queue is full; retry shortly")

    async def _run_batch(self, parts: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        sizes = [len(part) for part in parts]
        batch = np.concatenate(parts)
        output = await anyio.to_thread.run_sync(self._forward, batch, limiter=self._limiter)
        if self._on_batch is not None:
            self._on_batch(len(batch))
        return np.split(np.asarray(output), np.cumsum(sizes)[:-1])

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        result = await self._call(x)
        assert result is not None
        return result

    def close(self) -> None:
        self._dispatcher.shutdown()
