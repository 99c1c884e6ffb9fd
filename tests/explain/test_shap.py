"""SHAP through the shap library: GradientExplainer under TensorFlow, Partition anywhere."""

import keras
import numpy as np
import pytest

from clearsight.explain import explain, integrated_gradients
from clearsight.explain.quality import spearman_rows

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="GradientExplainer needs TensorFlow"
)


def test_gradient_explainer_runs_and_agrees_with_ig_from_the_same_baseline(trained, panel):
    x = panel[:3]
    shap_result = explain(trained.model, x, "shap", nsamples=100)
    assert shap_result.params["algorithm"] == "gradient"
    assert shap_result.maps.shape == (3, 28, 28) and np.isfinite(shap_result.maps).all()
    # one black background image: expected gradients is IG from black with random steps
    ig = integrated_gradients(trained.model, x)
    assert np.median(spearman_rows(shap_result.maps, ig.maps)) > 0.8


def test_gradient_explainer_follows_explicit_per_image_targets(trained, panel):
    x, background = panel[:2], trained.x_test[-20:]
    result = explain(
        trained.model,
        x,
        "shap",
        targets=np.array([[1, 7], [0, 2]]),
        background=background,
        nsamples=50,
    )
    np.testing.assert_array_equal(result.targets, [1, 7, 0, 2])
    assert result.maps.shape == (4, 28, 28)
    assert not np.allclose(result.maps[0], result.maps[1])


def test_partition_explainer_runs_on_any_backend(trained, panel):
    result = explain(trained.model, panel[:2], "shap", algorithm="partition", max_evals=200)
    assert result.params["algorithm"] == "partition"
    assert result.maps.shape == (2, 28, 28) and np.abs(result.maps).max() > 0
