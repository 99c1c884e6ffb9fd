"""A briefly trained CNN on the embedded digits, its training reference, and a held-out pool
of 1,000 digits with their features computed once (integrated gradients included)."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pytest

from clearsight.config import TrainSettings
from clearsight.explain import model_gradients
from clearsight.explain.gradients import PROBABILITIES
from clearsight.model.fitting import train
from clearsight.monitoring.features import image_features, integrated_gradients_features
from clearsight.monitoring.reference import Reference, compute_reference


@dataclass(frozen=True)
class Window:
    features: dict[str, np.ndarray]
    labels: np.ndarray
    confidences: np.ndarray
    attributions: dict[str, np.ndarray]


@dataclass(frozen=True)
class Monitored:
    model: keras.Model
    reference: Reference
    train: np.ndarray  # float32 (N, 28, 28) in 0-1
    train_labels: np.ndarray
    pool: np.ndarray  # 1,000 held-out digits, never used in fitting or the reference
    pool_window: Window

    def window(self, images: np.ndarray) -> Window:
        return measure(self.model, images)


def measure(model: keras.Model, images: np.ndarray) -> Window:
    p = np.asarray(model_gradients(model).scores(images[..., None], PROBABILITIES))
    return Window(
        image_features(images),
        p.argmax(axis=1),
        p.max(axis=1),
        integrated_gradients_features(model, images),
    )


def sliced(window: Window, start: int, stop: int) -> Window:
    return Window(
        {k: v[start:stop] for k, v in window.features.items()},
        window.labels[start:stop],
        window.confidences[start:stop],
        {k: v[start:stop] for k, v in window.attributions.items()},
    )


@pytest.fixture(scope="session")
def monitored() -> Monitored:
    from clearsight.data.sources import load_embedded

    full = load_embedded()
    x = full.images.astype(np.float32) / 255.0
    order = np.random.default_rng(0).permutation(len(x))
    fit, validation, pool = order[:3000], order[3000:4000], order[4000:]
    keras.utils.set_random_seed(0)
    model = train(
        full.images[fit],
        full.labels[fit],
        full.images[validation],
        full.labels[validation],
        TrainSettings(epochs=3, batch_size=64, augment=False),
        verbose=0,
    ).model
    reference = compute_reference(model, x[fit], x[validation], "test: fit and validation")
    return Monitored(model, reference, x[fit], full.labels[fit], x[pool], measure(model, x[pool]))
