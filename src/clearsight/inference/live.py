"""The model that answers requests now, and the atomic swap to the next one.

A request reads ``holder.current`` once and uses that ``LiveModel`` (predictor and its
batched forward) to the end, so a request in flight during a swap finishes on the model it
started on, and no request ever sees a half-loaded model: a new version becomes ``current``
only after it was loaded, warmed up and checked (``inference.acceptance``). Replacing one
reference is atomic in Python; the lock only keeps the counters and history consistent.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from clearsight.inference.predictor import Predictor

Forward = Callable[[np.ndarray], Awaitable[np.ndarray]]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class LiveModel:
    """One servable version: its predictor, its batched forward pass, since when it serves."""

    predictor: Predictor
    forward: Forward
    live_since: str = field(default_factory=now)

    @property
    def version(self) -> str:
        return self.predictor.provenance.version


@dataclass(frozen=True)
class Refusal:
    """A version that was not swapped in, and why."""

    version: str
    reason: str
    at: str = field(default_factory=now)


class ModelHolder:
    """Holds the live model; counts swaps and refusals for ``/metrics`` and ``/metadata``."""

    def __init__(self, live: LiveModel, *, following: str | None = None) -> None:
        self._live = live
        self._lock = threading.Lock()
        self.following = following  # the registry alias this service follows, if any
        self.swaps = 0
        self.refusals: list[Refusal] = []

    @property
    def current(self) -> LiveModel:
        return self._live

    def swap(self, live: LiveModel) -> LiveModel:
        """Make ``live`` current; returns the one it replaced (still finishing its requests)."""
        with self._lock:
            old, self._live = self._live, live
            self.swaps += 1
        return old

    def refuse(self, version: str, reason: str) -> Refusal:
        with self._lock:
            refusal = Refusal(version, reason)
            self.refusals.append(refusal)
            del self.refusals[:-20]  # the recent ones are what an operator needs
        return refusal

    @property
    def last_refusal(self) -> Refusal | None:
        return self.refusals[-1] if self.refusals else None
