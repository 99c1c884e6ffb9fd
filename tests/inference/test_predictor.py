"""``Predictor`` without a server: a tiny seed-architecture CNN and a fake async forward.

The model has the served architecture with 4 filters per convolution and seeded (untrained)
weights: every explanation method runs on it, and the answers are checked against the model
itself, not against remembered numbers. The forward is an async function that calls the model
and records the batches it was given, standing in for the service's adaptive batcher.
Warm-up (every method compiled once) happens once per module; each test then takes well
under a second.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import keras
import numpy as np
import pytest

from clearsight.choices import DEFAULT_METHODS, INTEGRATED_GRADIENTS, METHOD_NAMES
from clearsight.digits import CLASS_NAMES, N_CLASSES, to_model_input
from clearsight.errors import RequestError
from clearsight.explain import decode_map
from clearsight.inference.explanations import FALLBACK_METHOD
from clearsight.inference.images import decode_base64
from clearsight.inference.predictor import Predictor
from clearsight.inference.provenance import Provenance
from clearsight.inference.schemas import (
    EXAMPLE_PNG_BASE64,
    ActivationsRequest,
    PredictRequest,
    PredictResponse,
)
from clearsight.model.cnn import Architecture, build_cnn, logits_model
from clearsight.monitoring.bounds import OutOfBounds

IG = INTEGRATED_GRADIENTS
BENTO_MODEL = "clearsight-digits:abc123"
PROVENANCE = Provenance(
    name="digits",
    version="7",
    run_id="run42",
    registry_alias="champion",
    data_digests={"train": "sha256:aa"},
    keras_backend="tensorflow",
)


def drawn_digits() -> np.ndarray:
    """Four uint8 (28, 28) digits, light on dark: the example PNG's real 7, a 1, a 0, a 4."""
    seven = np.round(decode_base64(EXAMPLE_PNG_BASE64) * 255)
    one = np.zeros((28, 28))
    one[4:24, 13:16] = 255
    rows, cols = np.mgrid[:28, :28]
    radius = np.hypot((rows - 14) / 9, (cols - 14) / 6)
    zero = np.where(np.abs(radius - 1) < 0.18, 255.0, 0.0)
    four = np.zeros((28, 28))
    four[4:16, 8:11] = four[14:17, 8:21] = four[4:24, 17:20] = 255
    return np.stack([seven, one, zero, four]).astype(np.uint8)


DIGITS = drawn_digits()


class FakeForward:
    """The async forward the service would hand in (an adaptive batcher): calls the model."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.batches: list[tuple[int, ...]] = []

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(x.shape)
        return keras.ops.convert_to_numpy(self.model(x, training=False))


INK = OutOfBounds(feature="ink_fraction", value=0.62, limit=0.27, above=True)


class FakeMonitor:
    """Records what the predictor hands the request monitor; flags chosen rows."""

    def __init__(
        self, flags: dict[int, list[OutOfBounds]] | None = None, fail: bool = False
    ) -> None:
        self.flags = flags or {}
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    def review(
        self,
        x: np.ndarray,
        probabilities: np.ndarray,
        request_id: str,
    ) -> list[list[OutOfBounds]]:
        self.calls.append({"n": len(x), "request_id": request_id})
        if self.fail:
            raise OSError("traffic log disk full")
        return [self.flags.get(row, []) for row in range(len(x))]


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_cnn(arch=Architecture(conv1_filters=4, conv2_filters=4), name="tiny")


@pytest.fixture(scope="module")
def warm(model: keras.Model) -> Predictor:
    """A warmed-up predictor: every method compiled for ``model`` (the compiled functions are
    cached per model, so fresh predictors of the same model start fast)."""
    predictor = Predictor(model, PROVENANCE, BENTO_MODEL, mlflow_ui_url="http://mlflow:5000/")
    predictor.warm_up()
    return predictor


@pytest.fixture
def predictor(model: keras.Model, warm: Predictor) -> Predictor:
    """A fresh predictor per test (tests change its costs and budget), measured costs copied."""
    fresh = Predictor(model, PROVENANCE, BENTO_MODEL)
    fresh.costs.ms_per_row.update(warm.costs.ms_per_row)
    return fresh


@pytest.fixture
def forward(model: keras.Model) -> FakeForward:
    return FakeForward(model)


def array_image(pixels: np.ndarray) -> dict[str, Any]:
    return {"kind": "array", "scale": "0-255", "data": pixels.astype(int).tolist()}


def png_image() -> dict[str, Any]:
    return {"kind": "base64", "data": EXAMPLE_PNG_BASE64}


def ask(
    predictor: Predictor, forward: FakeForward, images: list[dict[str, Any]], explain: Any
) -> PredictResponse:
    request = PredictRequest.model_validate({"images": images, "explain": explain})
    return asyncio.run(predictor.predict(request, forward))


def model_probabilities(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(to_model_input(pixels), training=False))


# -- predictions ----------------------------------------------------------------------------


def test_predict_without_explanations_answers_every_image_from_one_forward_pass(
    predictor, forward, model
):
    pixels = DIGITS[:3]
    response = ask(predictor, forward, [array_image(p) for p in pixels], explain=False)

    expected = model_probabilities(model, pixels)
    assert forward.batches == [(3, 28, 28, 1)]
    assert [r.index for r in response.results] == [0, 1, 2]
    for result, p in zip(response.results, expected, strict=True):
        assert result.status == "ok"
        assert result.label == int(p.argmax())
        assert result.confidence == pytest.approx(float(p.max()))
        assert result.confidence == max(result.probabilities)
        assert len(result.probabilities) == N_CLASSES
        assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(result.probabilities, p, rtol=1e-5)
        assert result.explanations == [] and result.warnings == []
        assert result.error is None
        assert result.out_of_distribution == []
    assert response.timing.methods_ms == {}
    assert response.timing.total_ms >= response.timing.forward_ms >= 0
    assert response.model.model_dump() == {
        "name": "digits",
        "version": "7",
        "run_id": "run42",
        "bento_model": BENTO_MODEL,
    }
    assert len(response.request_id) == 32


def test_one_unreadable_image_gets_an_error_and_the_others_are_answered(predictor, forward, model):
    good = DIGITS[0]
    images = [
        array_image(good),
        {"kind": "base64", "data": base64.b64encode(b"not an image at all").decode()},
        {"kind": "array", "scale": "0-1", "data": [[0.0] * 28] * 27},
        {"kind": "array", "scale": "0-1", "data": [[2.0] * 28] * 28},  # out of range
        png_image(),
    ]
    response = ask(predictor, forward, images, explain=False)

    assert forward.batches == [(2, 28, 28, 1)]  # only the readable images are forwarded
    assert [r.index for r in response.results] == [0, 1, 2, 3, 4]
    assert [r.status for r in response.results] == ["ok", "error", "error", "error", "ok"]
    for bad in response.results[1:4]:
        assert bad.error and bad.label is None and bad.probabilities is None
    assert "expected shape (28, 28)" in response.results[2].error
    assert "[0, 1]" in response.results[3].error
    assert response.results[0].label == int(model_probabilities(model, good[None]).argmax())
    assert response.results[4].label is not None


def test_a_request_without_one_readable_image_is_refused_with_422(predictor, forward):
    images = [
        {"kind": "base64", "data": "AAAA"},
        {"kind": "array", "scale": "0-255", "data": [[300] * 28] * 28},
    ]
    with pytest.raises(RequestError) as caught:
        ask(predictor, forward, images, explain=False)
    assert (caught.value.status, caught.value.code) == (422, "invalid_image")
    assert [d["index"] for d in caught.value.detail] == [0, 1]
    assert "image 0:" in caught.value.message and "image 1:" in caught.value.message
    assert forward.batches == []


# -- explanations ---------------------------------------------------------------------------


def test_default_explanations_are_ig_and_grad_cam_maps_for_the_predicted_class(
    predictor, forward, model
):
    pixels = DIGITS[[0, 2]]
    response = ask(predictor, forward, [array_image(p) for p in pixels], explain=True)

    logits = keras.ops.convert_to_numpy(logits_model(model)([to_model_input(pixels)]))
    assert set(response.timing.methods_ms) == set(DEFAULT_METHODS)
    for row, result in enumerate(response.results):
        assert result.status == "ok"
        assert [e.method for e in result.explanations] == list(DEFAULT_METHODS)
        for explanation in result.explanations:
            assert explanation.requested_method == explanation.method
            assert explanation.target == result.label
            assert explanation.shape == [28, 28]
            assert explanation.png_heatmap is None and explanation.png_overlay is None
            values = decode_map(explanation.model_dump())
            assert values.shape == (28, 28) and np.all(np.isfinite(values))
            assert np.abs(values).max() == pytest.approx(explanation.scale, rel=1e-3)
        ig, grad_cam = result.explanations
        q = ig.quality
        assert ig.params["rule"] == "adaptive" and ig.params["max_evaluations"] == 32
        # The IG map explains the predicted logit, and its completeness gap is the relative
        # difference between the map's sum and f(x) - f(baseline).
        assert q.instance_output == pytest.approx(float(logits[row, result.label]), rel=1e-4)
        difference = q.instance_output - q.baseline_output
        assert q.completeness_gap == pytest.approx(
            abs(q.attribution_sum - difference) / abs(difference), rel=1e-3, abs=1e-6
        )
        values = decode_map(ig.model_dump())
        assert float(values.sum()) == pytest.approx(q.attribution_sum, abs=784 * ig.scale * 1e-3)
        assert grad_cam.quality.completeness_gap is None


def test_top_k_targets_explain_the_k_most_probable_classes_best_first(predictor, forward, model):
    pixels = DIGITS[:2]
    explain = {"methods": ["saliency"], "targets": "top-k", "k": 3}
    response = ask(predictor, forward, [array_image(p) for p in pixels], explain=explain)

    probabilities = model_probabilities(model, pixels)
    for result, p in zip(response.results, probabilities, strict=True):
        assert [e.target for e in result.explanations] == list(np.argsort(-p)[:3])
        assert {e.method for e in result.explanations} == {"saliency"}


def test_explicit_classes_are_explained_whatever_the_prediction(predictor, forward):
    explain = {"methods": ["saliency", IG], "targets": "explicit", "classes": [2, 5]}
    response = ask(predictor, forward, [array_image(DIGITS[0])], explain=explain)

    (result,) = response.results
    assert [(e.method, e.target) for e in result.explanations] == [
        ("saliency", 2),
        ("saliency", 5),
        (IG, 2),
        (IG, 5),
    ]


def test_png_encodings_replace_the_float16_data(predictor, forward):
    explain = {"methods": ["grad_cam"], "encodings": ["png_heatmap", "png_overlay"]}
    response = ask(predictor, forward, [array_image(DIGITS[0])], explain=explain)

    (explanation,) = response.results[0].explanations
    assert explanation.data is None
    for png in (explanation.png_heatmap, explanation.png_overlay):
        assert base64.b64decode(png).startswith(b"\x89PNG\r\n\x1a\n")


def test_a_method_that_does_not_fit_the_budget_is_replaced_by_saliency(predictor, forward):
    predictor.costs.ms_per_row[IG] = 1e6  # as if IG had measured a second per image
    explain = {"methods": [IG], "budget_ms": 50}
    response = ask(predictor, forward, [array_image(DIGITS[0])] * 2, explain=explain)

    for result in response.results:
        assert result.status == "degraded"
        (warning,) = result.warnings
        assert warning.startswith(f"{IG} replaced by {FALLBACK_METHOD}: it needs about")
        assert "of the 50 ms budget were left" in warning
        (explanation,) = result.explanations
        assert (explanation.requested_method, explanation.method) == (IG, FALLBACK_METHOD)
    assert set(response.timing.methods_ms) == {FALLBACK_METHOD}


def test_a_method_that_fits_the_budget_runs_as_asked(predictor, forward):
    predictor.costs.ms_per_row[IG] = 0.001
    explain = {"methods": [IG], "budget_ms": 60_000}
    response = ask(predictor, forward, [array_image(DIGITS[0])], explain=explain)

    (result,) = response.results
    assert result.status == "ok" and result.warnings == []
    assert result.explanations[0].method == IG


def test_the_servers_default_budget_applies_when_the_request_sets_none(model, predictor, forward):
    predictor.default_budget_ms = 20
    predictor.costs.ms_per_row.update({IG: 1e6, "grad_cam": 1e6})
    response = ask(predictor, forward, [array_image(DIGITS[0])], explain=True)

    (result,) = response.results
    assert result.status == "degraded"
    assert len(result.warnings) == 2
    assert [e.method for e in result.explanations] == [FALLBACK_METHOD, FALLBACK_METHOD]
    assert [e.requested_method for e in result.explanations] == list(DEFAULT_METHODS)


# -- the request monitor --------------------------------------------------------------------


def test_the_monitor_sees_the_readable_images_and_not_their_explanations(predictor, forward):
    """Explanations follow the caller's options; the monitor must not (its ``review`` takes
    no maps: passing any would raise here, and a failing monitor is logged, not raised)."""
    predictor.monitor = monitor = FakeMonitor(flags={1: [INK]})
    images = [array_image(DIGITS[0]), {"kind": "base64", "data": "AAAA"}]
    images.append(array_image(DIGITS[1]))
    response = ask(predictor, forward, images, explain=True)

    (call,) = monitor.calls
    assert call["n"] == 2 and call["request_id"] == response.request_id
    # Row 1 of the forwarded batch is request image 2.
    assert [r.out_of_distribution for r in response.results] == [
        [],
        [],
        ["ink_fraction 0.62 > 0.27"],
    ]


def test_a_failing_monitor_does_not_fail_the_prediction(predictor, forward):
    predictor.monitor = FakeMonitor(fail=True)
    response = ask(predictor, forward, [array_image(DIGITS[0])], explain=False)

    (result,) = response.results
    assert result.status == "ok" and result.out_of_distribution == []


# -- readiness and description --------------------------------------------------------------


def test_ready_only_after_warm_up_which_measures_every_method(model, warm):
    assert Predictor(model, PROVENANCE, BENTO_MODEL).ready is False
    assert warm.ready is True
    assert set(warm.costs.ms_per_row) == set(METHOD_NAMES)
    assert all(ms > 0 for ms in warm.costs.ms_per_row.values())


def test_metadata_describes_the_model_and_the_explainer(warm):
    meta = warm.metadata()
    assert (meta.name, meta.version, meta.run_id) == ("digits", "7", "run42")
    assert meta.bento_model == BENTO_MODEL
    assert meta.registry_alias == "champion"
    assert meta.data_digests == {"train": "sha256:aa"}
    assert meta.keras_backend == "tensorflow"
    assert meta.class_names == CLASS_NAMES and len(meta.class_names) == N_CLASSES
    assert meta.input["shape"] == [28, 28]
    assert set(meta.input["scales"]) == {"0-1", "0-255"}
    assert meta.explainer.methods == list(DEFAULT_METHODS)
    assert meta.explainer.targets == "predicted"
    assert meta.explainer.budget_ms is None
    assert meta.explainer.fallback_method == FALLBACK_METHOD
    assert meta.explainer.available_methods == list(METHOD_NAMES)
    assert meta.explainer.measured_ms_per_image == warm.costs.ms_per_row
    # trailing slash gone; the link opens the model-training view
    assert meta.mlflow_run_url == "http://mlflow:5000/#/runs/run42?workflowType=machine_learning"
    assert meta.live is None


def test_metadata_budget_and_run_link_follow_the_settings(model):
    with_budget = Predictor(model, PROVENANCE, BENTO_MODEL, default_budget_ms=75.0)
    assert with_budget.metadata().explainer.budget_ms == 75.0
    assert with_budget.metadata().mlflow_run_url is None  # no MLflow UI configured
    no_run = Provenance(name="digits", version="1")
    unlinked = Predictor(model, no_run, BENTO_MODEL, mlflow_ui_url="http://mlflow:5000")
    assert unlinked.metadata().mlflow_run_url is None
    assert unlinked.identity().run_id is None


def test_activations_draw_every_conv_and_pool_layer(warm):
    response = warm.activations(ActivationsRequest.model_validate({"image": png_image()}))
    assert [(layer.name, layer.shape) for layer in response.layers] == [
        ("conv1", [26, 26, 4]),
        ("pool1", [13, 13, 4]),
        ("conv2", [11, 11, 4]),
        ("pool2", [5, 5, 4]),
    ]
    assert all(base64.b64decode(layer.png).startswith(b"\x89PNG") for layer in response.layers)
    with pytest.raises(RequestError) as caught:
        warm.activations(
            ActivationsRequest.model_validate({"image": {"kind": "base64", "data": "AAAA"}})
        )
    assert (caught.value.status, caught.value.code) == (422, "bad_image")
