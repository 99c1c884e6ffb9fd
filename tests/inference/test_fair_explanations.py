"""Chunked explanations on a real (untrained) seed CNN: the same maps as one call per method,
and the predictor's budget (refused before any work, or reduced and said so)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from clearsight.choices import METHOD_NAMES
from clearsight.errors import RequestError
from clearsight.inference.budget import ExplainBudget
from clearsight.inference.explanations import CostModel, explain_batch
from clearsight.inference.predictor import Predictor
from clearsight.inference.provenance import Provenance
from clearsight.inference.schemas import ExplainOptions, PredictRequest
from clearsight.model.cnn import build_cnn


@pytest.fixture(scope="module")
def model():
    return build_cnn()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)


def test_chunks_give_the_same_maps_as_one_call(model, x) -> None:
    options = ExplainOptions.model_validate(
        {
            "methods": ["integrated_gradients", "grad_cam", "occlusion"],
            "targets": "top-k",
            "k": 2,
            "parameters": {"integrated_gradients": {"steps": 8}},
        }
    )
    probabilities = np.asarray(model(x, training=False))
    whole = explain_batch(model, x, options, CostModel(), probabilities)
    # IG is 2 targets x 9 units per image: 20-unit chunks hold one image each.
    chunked = explain_batch(model, x, options, CostModel(), probabilities, chunk_units=20)
    assert chunked.warnings == whole.warnings == [[] for _ in x]
    for method, attribution in whole.attributions.items():
        other = chunked.attributions[method]
        np.testing.assert_array_equal(other.image_index, attribution.image_index)
        np.testing.assert_array_equal(other.targets, attribution.targets)
        np.testing.assert_allclose(other.maps, attribution.maps, rtol=1e-4, atol=1e-6)
    gaps = chunked.attributions["integrated_gradients"].completeness_gap
    assert gaps is not None and len(gaps) == 10
    for mine, theirs in zip(chunked.explanations, whole.explanations, strict=True):
        assert [(e.method, e.target) for e in mine] == [(e.method, e.target) for e in theirs]


def predictor(model, budget: ExplainBudget) -> Predictor:
    return Predictor(model, Provenance("test", "1"), "test:1", budget=budget, chunk_units=64)


def request(n: int, explain: ExplainOptions | bool = True) -> PredictRequest:
    rng = np.random.default_rng(1)
    images = [{"kind": "array", "scale": "0-1", "data": rng.random((28, 28)).tolist()}] * n
    return PredictRequest.model_validate({"images": images, "explain": explain})


def test_over_the_budget_is_refused_before_any_forward_pass(model) -> None:
    served = predictor(model, ExplainBudget(64, "refuse"))
    passes = []

    async def forward(batch: np.ndarray) -> np.ndarray:
        passes.append(len(batch))
        return served.forward(batch)

    with pytest.raises(RequestError) as caught:
        asyncio.run(served.predict(request(2), forward))  # 2 x 33 units > 64
    assert caught.value.status == 422 and caught.value.code == "over_budget"
    assert "limit of 64 units" in caught.value.message
    assert passes == []
    answer = asyncio.run(served.predict(request(1), forward))  # 33 units: fits
    assert answer.results[0].status == "ok" and answer.explain_budget.reductions == []


def test_degrade_says_exactly_what_was_reduced(model) -> None:
    served = predictor(model, ExplainBudget(200, "degrade"))

    async def forward(batch: np.ndarray) -> np.ndarray:
        return served.forward(batch)

    everything = ExplainOptions(methods=list(METHOD_NAMES))
    answer = asyncio.run(served.predict(request(4, everything), forward))
    report = answer.explain_budget
    assert report is not None and report.units <= 200 < report.requested_units
    assert report.reductions[0] == "integrated_gradients steps adaptive -> 16"
    assert "occlusion replaced by saliency" in report.reductions
    for result in answer.results:
        assert result.status == "degraded"
        assert result.warnings[0].startswith("explanation budget: ")
        assert "; ".join(report.reductions) in result.warnings[0]
        served_by = {e.requested_method: e.method for e in result.explanations}
        assert served_by["occlusion"] == "saliency"
        assert len(result.explanations) == len(METHOD_NAMES)
