"""The baseline for ``benchmarks/serve.py``: a plain BentoML service over the same model.

What a first BentoML service usually looks like: one API, ``model.predict`` per request, no
adaptive batching, no explanations. Not part of the product.

    bentoml serve benchmarks.plain_service:PlainClassifier --arg model=clearsight-cnn:<version>
"""

from __future__ import annotations

import bentoml
import numpy as np
from pydantic import BaseModel

import clearsight  # noqa: F401  (telemetry off; the benchmark passes the same env)
from clearsight.offline import QUIET_ENVIRONMENT
from serving.bento_store import load_stored_model


class Arguments(BaseModel):
    model: str = "clearsight-cnn:latest"


ARGUMENTS = bentoml.use_arguments(Arguments)


@bentoml.service(
    name="plain",
    workers=1,
    envs=[{"name": name, "value": value} for name, value in QUIET_ENVIRONMENT.items()],
)
class PlainClassifier:
    stored_model = bentoml.models.BentoModel(ARGUMENTS.model)

    def __init__(self) -> None:
        self.model = load_stored_model(self.stored_model)

    @bentoml.api
    def predict(self, image: list[list[float]]) -> dict:
        """One 28x28 image in 0-1 -> label and probabilities."""
        x = np.asarray(image, dtype=np.float32)[None, ..., None]
        probabilities = self.model.predict(x, verbose=0)[0]
        return {"label": int(probabilities.argmax()), "probabilities": probabilities.tolist()}
