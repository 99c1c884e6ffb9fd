"""Time to accuracy: wall seconds from the start of training to the first epoch whose holdout
accuracy reaches a target.

Per-epoch speed charges a trainer for work that buys accuracy (augmentation, a validation
pass); what a user waits for is a model that is good enough. ``HoldoutClock`` is a Keras
callback that scores the holdout after every epoch, keeps the clock of the training alone (its
own scoring is subtracted), and stops the fit once the target is reached. The pure functions
here (``first_reach``, ``summary``) read the recorded curve and import nothing heavy, so the
tables and their tests run without Keras.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Point:
    """One epoch: its number (from 1), training seconds since the start, holdout accuracy."""

    epoch: int
    seconds: float
    accuracy: float


@dataclass
class Curve:
    """Holdout accuracy after each epoch of one training, with its clock."""

    points: list[Point] = field(default_factory=list)

    def to_list(self) -> list[dict[str, float]]:
        return [asdict(p) for p in self.points]

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> Curve:
        return cls(
            [Point(int(r["epoch"]), float(r["seconds"]), float(r["accuracy"])) for r in rows]
        )


def first_reach(curve: Curve, target: float) -> Point | None:
    """The first epoch at or above ``target``; None when the training never got there."""
    return next((p for p in curve.points if p.accuracy >= target), None)


def summary(curve: Curve, target: float) -> dict[str, Any]:
    """What a table row needs: reached or not, seconds and epochs to the target (or to the end
    of the training: a lower bound when the target was not reached)."""
    hit = first_reach(curve, target)
    last = curve.points[-1] if curve.points else Point(0, 0.0, 0.0)
    return {
        "target": target,
        "reached": hit is not None,
        "seconds": (hit or last).seconds,
        "epochs": (hit or last).epoch,
        "best_accuracy": max((p.accuracy for p in curve.points), default=0.0),
    }


def holdout_accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    """Accuracy of ``model`` on (x, y), inference mode (augmentation and dropout off)."""
    import keras

    probs = np.concatenate(
        [
            keras.ops.convert_to_numpy(model(x[i : i + batch], training=False))
            for i in range(0, len(x), batch)
        ]
    )
    return float((probs.argmax(1) == y).mean())


def holdout_clock(x: np.ndarray, y: np.ndarray, target: float) -> Any:
    """A Keras callback (built here so that importing this module needs no Keras): call its
    ``start()`` just before building the model; after each epoch it records a ``Point`` in
    ``.curve`` and stops the fit at the first epoch at or above ``target``."""
    import keras

    class HoldoutClock(keras.callbacks.Callback):  # type: ignore[misc]  # Keras ships no types
        def __init__(self) -> None:
            super().__init__()
            self.curve = Curve()
            self._start = time.perf_counter()
            self._scoring = 0.0  # seconds spent scoring the holdout: not training

        def start(self) -> None:
            self._start, self._scoring = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            now = time.perf_counter()
            accuracy = holdout_accuracy(self.model, x, y)
            self.curve.points.append(Point(epoch + 1, now - self._start - self._scoring, accuracy))
            self._scoring += time.perf_counter() - now
            if accuracy >= target:
                self.model.stop_training = True

    return HoldoutClock()
