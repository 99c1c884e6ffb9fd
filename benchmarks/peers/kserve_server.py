"""The KServe Python model server on the benchmark's model: ``:predict``, and an ``:explain``
route that runs alibi's ``IntegratedGradients``, written the way KServe's docs show.

A custom model subclasses ``kserve.Model`` (``load``, ``predict``), is loaded, then served with
``ModelServer().start([model])``; a custom explainer overrides ``explain`` and returns the
explanation, as KServe's alibi explainer sample does (``docs/samples/explanation/alibi/
alibiexplainer``: ``json.loads(explanation.to_json())``). In KServe's split deployments the
explainer is its own service that calls the predictor over HTTP, which suits black-box methods
(anchors, KernelSHAP). Integrated gradients is white-box: it needs the model's gradients, so
here the explainer holds the same Keras model as the predictor, in the same process. alibi's
defaults (``n_steps=50``, ``method="gausslegendre"``, ``internal_batch_size=100``) on the
served model, i.e. its probabilities, from a black baseline (``baselines=None``), for the
predicted class (``target=model(x).argmax(axis=1)``, as alibi's examples write it; its
``target_fn`` would not survive ``explanation.to_json()``).

Runs inside ``benchmarks/.envs/kserve`` (kserve 0.21, alibi 0.9.6, no clearsight code). The
server's switches are KServe's own command-line arguments, parsed by ``kserve.model_server``:
one uvicorn worker; the REST server only (gRPC off: nothing here speaks it); no per-request
latency log line (``--enable_latency_logging false``); asyncio's event loop (with one worker
KServe runs uvicorn under ``asyncio.run``, so this only states what it does); and
``kserve_log_config.json``, KServe's default log configuration (``kserve.logging``) with no
handler on ``uvicorn.access`` (uvicorn then skips its access log entirely) and ``kserve.trace``
at WARNING (the per-request timings KServe's ``TimingMiddleware`` logs at INFO). KServe has no
switch for that middleware itself, nor for its per-request Prometheus histograms.

    python kserve_server.py --model_file model.keras --model_name clearsight-cnn \\
        --http_port 8080 --workers 1 --enable_grpc false --enable_latency_logging false \\
        --event-loop asyncio --log_config_file kserve_log_config.json
"""

from __future__ import annotations

import argparse
import gc
import json
from typing import Any

import keras
import numpy as np
from alibi.explainers import IntegratedGradients
from kserve import Model, ModelServer, model_server


class Digits(Model):
    """Predictor and white-box explainer of one Keras model."""

    def __init__(self, name: str, model_file: str) -> None:
        super().__init__(name)
        self.model_file = model_file
        self.model: keras.Model | None = None
        self.explainer: IntegratedGradients | None = None

    def load(self) -> bool:
        self.model = keras.models.load_model(self.model_file, compile=False)
        self.explainer = IntegratedGradients(self.model)
        # Build and trace before traffic, then freeze what survives a collection so the cyclic
        # GC stops re-scanning the model's objects (the same switch clearsight's service has).
        warm = np.zeros((1, 28, 28, 1), np.float32)
        self.predict({"instances": warm.tolist()})
        self.explain({"instances": warm.tolist()})
        gc.collect()
        gc.freeze()
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
        target = keras.ops.convert_to_numpy(self.model(x, training=False)).argmax(axis=1)
        explanation = self.explainer.explain(x, baselines=None, target=target)
        return json.loads(explanation.to_json())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_file", required=True)
    args, _ = parser.parse_known_args()
    model = Digits(args.model_name, args.model_file)
    model.load()
    ModelServer().start([model])
