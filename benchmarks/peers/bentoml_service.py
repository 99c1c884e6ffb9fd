"""A well-written BentoML service for the benchmark's model: what a BentoML user would write.

One adaptive-batching API (``@bentoml.api(batchable=True)``): BentoML gathers concurrent
requests into one array and the Keras model is called directly on it (no ``model.predict``
and its per-call setup), no explanation. Runs inside ``benchmarks/.envs/bentoml``; the model
file comes from ``PEER_MODEL_FILE``.

    PEER_MODEL_FILE=model.keras bentoml serve bentoml_service:Classifier --port 3000
"""

from __future__ import annotations

import os

import bentoml
import numpy as np


@bentoml.service(workers=1)
class Classifier:
    def __init__(self) -> None:
        import keras

        self.keras = keras
        self.model = keras.models.load_model(os.environ["PEER_MODEL_FILE"], compile=False)
        self.model(np.zeros((1, 28, 28, 1), np.float32))  # build and warm before traffic

    @bentoml.api(batchable=True, max_batch_size=64)  # BentoML's default latency budget
    def predict(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28, 1)
        return self.keras.ops.convert_to_numpy(self.model(x, training=False))
