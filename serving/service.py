"""The clearsight BentoML service: the registry's champion, with explanations on request.

    bentoml serve serving.service:Clearsight --arg model=clearsight-cnn:v3-<run id>
    clearsight serve                      # imports the current champion first, then the above

Thin by design: load the model from the BentoML store (the bento argument ``model`` names
it; ``clearsight build-service`` pins it in the bento), warm it up in the background (``/readyz``
answers 503 until then), batch forward passes adaptively, record metrics, and mount the routes
of ``serving.routes``. Everything else is ``clearsight.inference``.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:  # first: importing clearsight switches off telemetry before BentoML reads the environment
    import clearsight
except ModuleNotFoundError:  # inside a built bento the library travels as src/clearsight
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import clearsight  # noqa: F401

import gc
import logging
import threading

import bentoml
from pydantic import BaseModel

from clearsight.inference.schemas import PredictResponse
from clearsight.inference.settings import ServingSettings
from clearsight.offline import QUIET_ENVIRONMENT
from serving.bento_store import load_stored_model, stored_provenance
from serving.guards import ServiceGuard
from serving.routes import app

logger = logging.getLogger("clearsight.serving")


class Arguments(BaseModel):
    """Bento arguments (``--arg model=...``); a built bento stores the model it was built for."""

    model: str = "clearsight-cnn:latest"


ARGUMENTS = bentoml.use_arguments(Arguments)
SETTINGS = ServingSettings()

EXPLANATION_SECONDS = bentoml.metrics.Histogram(
    name="clearsight_explanation_duration_seconds",
    documentation="Compute time of one explanation method over one request's images.",
    labelnames=["method"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)
FORWARD_BATCH = bentoml.metrics.Histogram(
    name="clearsight_forward_batch_size",
    documentation="Images per forward pass after adaptive batching.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
IMAGES = bentoml.metrics.Counter(
    name="clearsight_images_total",
    documentation="Images answered, by status (ok, degraded, error).",
    labelnames=["status"],
)


@bentoml.service(
    name="clearsight",
    traffic={"timeout": 120},
    workers=1,
    # Telemetry off in every worker and in a container built from the bento.
    envs=[{"name": name, "value": value} for name, value in QUIET_ENVIRONMENT.items()],
)
@bentoml.asgi_app(app, path="/")
class Clearsight:
    """Predictions and explanations of one model version from the clearsight registry."""

    stored_model = bentoml.models.BentoModel(ARGUMENTS.model)

    def __init__(self) -> None:
        from clearsight.inference.predictor import Predictor
        from serving.batching import AdaptiveBatcher

        self.predictor = Predictor(
            load_stored_model(self.stored_model),
            stored_provenance(self.stored_model),
            str(self.stored_model.tag),
            SETTINGS.default_budget_ms,
            SETTINGS.mlflow_ui_url,
        )
        self.batcher = AdaptiveBatcher(
            self.predictor.forward,
            max_batch_size=SETTINGS.max_batch_size,
            max_latency_ms=SETTINGS.max_batch_latency_ms,
            on_batch=FORWARD_BATCH.observe,
        )
        threading.Thread(target=self._warm_up, name="clearsight-warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        try:
            self.predictor.warm_up()
        except Exception:  # stays unready: /readyz keeps answering 503, the log says why
            logger.exception("warm-up failed; the service will not become ready")
            return
        # TensorFlow and Keras leave ~500,000 long-lived objects that every full garbage
        # collection walks: ~300 ms with the event loop stopped, a p99 of 400 ms under load
        # (measured). Freezing them after warm-up keeps collections to request garbage.
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.predictor.ready

    def observe(self, response: PredictResponse) -> None:
        """Per-method explanation latency and per-status image counts for /metrics."""
        for method, ms in response.timing.methods_ms.items():
            EXPLANATION_SECONDS.labels(method=method).observe(ms / 1e3)
        for result in response.results:
            IMAGES.labels(status=result.status).inc()


Clearsight.add_asgi_middleware(
    ServiceGuard,
    api_key=SETTINGS.api_key.get_secret_value() if SETTINGS.api_key else None,
    max_body_bytes=SETTINGS.max_body_bytes,
)
