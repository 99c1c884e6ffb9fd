"""The KServe Python model server on the benchmark's model: predict, and an ``:explain`` route.

Written the way KServe's custom-model docs show (subclass ``kserve.Model``, ``load`` then
``ModelServer().start([model])``); the explainer computes integrated gradients and Grad-CAM
through the same library call clearsight's service makes (``clearsight.explain.explain``), one
request at a time, and returns the maps as JSON lists, as a KServe user would. Runs inside
``benchmarks/.envs/kserve`` with the checkout's ``src`` on PYTHONPATH.

    python kserve_server.py --model_file model.keras --http_port 8080 --workers 1
"""

from __future__ import annotations

import argparse
from typing import Any

import keras
import numpy as np
from kserve import Model, ModelServer, model_server

from clearsight.explain import explain

METHODS = ("integrated_gradients", "grad_cam")


class Digits(Model):
    def __init__(self, name: str, model_file: str) -> None:
        super().__init__(name)
        self.model_file = model_file
        self.model: keras.Model | None = None
        self.load()

    def load(self) -> bool:
        self.model = keras.models.load_model(self.model_file, compile=False)
        self.ready = True
        return self.ready

    @staticmethod
    def _images(payload: dict[str, Any]) -> np.ndarray:
        return np.asarray(payload["instances"], dtype=np.float32).reshape(-1, 28, 28, 1)

    def predict(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        probs = keras.ops.convert_to_numpy(self.model(self._images(payload), training=False))
        return {"predictions": probs.tolist()}

    def explain(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        x = self._images(payload)
        probs = keras.ops.convert_to_numpy(self.model(x, training=False))
        maps = {m: explain(self.model, x, m, "predicted").maps.tolist() for m in METHODS}
        return {"predictions": probs.tolist(), "explanations": maps}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_file", required=True)
    args, _ = parser.parse_known_args()
    ModelServer(http_port=args.http_port, workers=args.workers).start(
        [Digits("clearsight-cnn", args.model_file)]
    )
