"""Fixtures for explanation tests: one seed CNN trained briefly on real embedded digits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest

from clearsight.data.sources import load_embedded
from clearsight.digits import to_model_input
from clearsight.model.cnn import build_cnn

TRAIN_IMAGES = 4000  # of the 5,000 embedded digits; the other 1,000 are held out


@dataclass(frozen=True)
class TrainedSeed:
    model: keras.Model
    x_test: np.ndarray  # float32 (1000, 28, 28, 1), held out
    y_test: np.ndarray
    accuracy: float


@pytest.fixture(scope="session")
def trained() -> TrainedSeed:
    """The seed CNN after 6 seeded epochs (batch 64) on 4,000 digits: ~9 s on 2 cores, ~96%."""
    data = load_embedded()
    order = np.random.default_rng(0).permutation(len(data))
    train, test = order[:TRAIN_IMAGES], order[TRAIN_IMAGES:]
    x, y = to_model_input(data.images), data.labels
    keras.utils.set_random_seed(0)
    model = build_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x[train], y[train], batch_size=64, epochs=6, verbose=0)
    probabilities = keras.ops.convert_to_numpy(model(x[test], training=False))
    accuracy = float((probabilities.argmax(axis=1) == y[test]).mean())
    return TrainedSeed(model, x[test], y[test], accuracy)


@pytest.fixture(scope="session")
def panel(trained: TrainedSeed) -> np.ndarray:
    """32 held-out digits, float32 (32, 28, 28, 1) in 0-1."""
    return trained.x_test[:32]


@pytest.fixture(scope="session")
def saved_model(trained: TrainedSeed, panel: np.ndarray, tmp_path_factory) -> Path:
    """The trained model and the panel on disk, for child processes on other backends."""
    folder = tmp_path_factory.mktemp("saved")
    trained.model.save(folder / "m.keras")
    np.save(folder / "x.npy", panel[:8])
    return folder
