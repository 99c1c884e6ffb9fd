"""Tiny models of other shapes than the digits: a 16x16 colour model with 3 classes and an 8x8
grey one, built inline with the seed CNN's layer names (so Grad-CAM finds its layer) and
fitted for a few seconds on synthetic colour shapes or reduced digits. They do not depend on
``build_cnn`` growing a task argument, and they are small enough for the fast tests."""

from __future__ import annotations

import keras
import numpy as np

from clearsight.data.class_folders import colour_shapes
from clearsight.model.cnn import LAST_CONV_LAYER, LOGITS_LAYER
from clearsight.task import to_model_input


def tiny_cnn(height: int, width: int, channels: int, n_classes: int) -> keras.Model:
    """conv-pool-conv-dense, "same" padding so 8x8 inputs fit; seeded by the caller."""
    inputs = keras.Input((height, width, channels), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=LAST_CONV_LAYER)(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(n_classes, name=LOGITS_LAYER)(x)
    probabilities = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name=f"tiny_{height}x{width}x{channels}")


def fitted(model: keras.Model, x: np.ndarray, y: np.ndarray, epochs: int) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


def colour_data(n_per_class: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Colour shapes 16x16 (3 classes) as float32 (N, 16, 16, 3) in 0-1, and labels."""
    data = colour_shapes(n_per_class, size=16, seed=seed)
    return to_model_input(data.images), data.labels


def colour_model() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """The tiny colour model fitted briefly, and its held-out images (N, 16, 16, 3), labels."""
    x, y = colour_data()
    keras.utils.set_random_seed(0)
    model = fitted(tiny_cnn(16, 16, 3, 3), x[:300], y[:300], epochs=8)
    return model, x[300:], y[300:]


def grey_model(digits: np.ndarray, labels: np.ndarray) -> tuple[keras.Model, np.ndarray]:
    """The tiny grey model on digits reduced to 8x8 (area resize), and those images."""
    import cv2

    small = np.stack([cv2.resize(d, (8, 8), interpolation=cv2.INTER_AREA) for d in digits])
    x = to_model_input(small)
    keras.utils.set_random_seed(0)
    return fitted(tiny_cnn(8, 8, 1, 10), x, labels, epochs=3), x
