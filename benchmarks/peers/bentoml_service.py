"""A well-written BentoML service for the benchmark's model: what a BentoML user would write.

One adaptive-batching API (``@bentoml.api(batchable=True)``): BentoML gathers concurrent
requests into one array and the Keras model is called directly on it (no ``model.predict``
and its per-call setup), no explanation. Runs inside ``benchmarks/.envs/bentoml``; the model
file comes from ``PEER_MODEL_FILE``.

Given the process-level switches clearsight's service uses, where BentoML offers them: one
worker, BentoML's access log off and OpenTelemetry spans for no URL (``serving/service.py``),
the cyclic GC frozen after warm-up, and asyncio's event loop: uvicorn's "auto" loop is uvloop
only when it is importable, and uvloop is not in this environment (bentoml does not require
it), so nothing needs switching (clearsight makes ``import uvloop`` fail for the same result,
``serving/event_loop.py``). The batching budget ``max_latency_ms`` is BentoML's docs' 1 s:
requests whose estimated wait plus batch call would exceed it are refused with 503, and a full
64-image batch takes ~70 ms on one core, so nothing is refused below overload (BentoML's
default, 60 s, never refuses).

    PEER_MODEL_FILE=model.keras bentoml serve bentoml_service:Classifier --port 3000
"""

from __future__ import annotations

import gc
import os

import bentoml
import numpy as np


@bentoml.service(
    workers=1,
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/"]},
)
class Classifier:
    def __init__(self) -> None:
        import keras

        self.keras = keras
        self.model = keras.models.load_model(os.environ["PEER_MODEL_FILE"], compile=False)
        self.model(np.zeros((1, 28, 28, 1), np.float32))  # build and warm before traffic
        gc.collect()  # then keep TensorFlow's long-lived objects out of every collection
        gc.freeze()

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28, 1)
        return self.keras.ops.convert_to_numpy(self.model(x, training=False))
