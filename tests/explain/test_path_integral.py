"""The adaptive integrated-gradients rule: completeness at 0.1 %, within 32 evaluations."""

import keras
import numpy as np
import pytest

from clearsight.explain import integrated_gradients
from clearsight.explain import path_integral as pi


def test_trapezoid_weights_of_unsorted_points_with_free_slots() -> None:
    alphas = np.array([[1.0, 0.0, 0.5, np.inf], [0.0, 0.25, 1.0, 0.5]])
    weights = pi.trapezoid_weights(alphas)
    np.testing.assert_allclose(weights[0], [0.25, 0.25, 0.5, 0.0])
    np.testing.assert_allclose(weights[1], [0.125, 0.25, 0.25, 0.375])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_default_reaches_the_target_gap_within_the_evaluation_cap(trained, panel) -> None:
    result = integrated_gradients(trained.model, panel)
    assert result.params["rule"] == "adaptive"
    assert result.params["max_evaluations"] == pi.MAX_EVALUATIONS == 32
    assert result.evaluations is not None and result.completeness_gap is not None
    assert result.evaluations.min() >= pi.INITIAL_POINTS
    assert result.evaluations.max() <= 32
    assert np.median(result.completeness_gap) <= pi.TARGET_GAP
    met = result.completeness_gap <= 1.01 * pi.TARGET_GAP  # float32 sum vs the rule's float64
    assert np.all(result.evaluations[~met] == 32)  # a row stops early only on target
    np.testing.assert_allclose(result.attribution_sum, result.maps.sum(axis=(1, 2)), rtol=1e-4)
    fixed = integrated_gradients(trained.model, panel, steps=32)
    assert np.median(result.completeness_gap) < np.median(fixed.completeness_gap)


def test_adaptive_maps_agree_with_a_fine_fixed_rule(trained, panel) -> None:
    x = panel[:4]
    adaptive = integrated_gradients(trained.model, x)
    fine = integrated_gradients(trained.model, x, steps=256)
    error = np.abs(adaptive.maps - fine.maps).sum(axis=(1, 2))
    assert np.all(error <= 0.1 * np.abs(fine.maps).sum(axis=(1, 2)))


def test_fixed_steps_keep_the_old_rule(trained, panel) -> None:
    x = panel[:3]
    fixed = integrated_gradients(trained.model, x, steps=16)
    explicit = integrated_gradients(trained.model, x, steps=16, rule="trapezoid")
    assert fixed.params["steps"] == 16 and fixed.params["rule"] == "trapezoid"
    np.testing.assert_array_equal(fixed.maps, explicit.maps)
    assert fixed.evaluations is not None and np.all(fixed.evaluations == 17)
    midpoint = integrated_gradients(trained.model, x, rule="midpoint")
    assert midpoint.params["steps"] == 32 and midpoint.evaluations is not None
    assert np.all(midpoint.evaluations == 32)


def test_the_cap_and_the_target_bound_the_work(trained, panel) -> None:
    x = panel[:4]
    few = integrated_gradients(trained.model, x, max_evaluations=5)
    assert few.evaluations is not None and np.all(few.evaluations == 5)
    exhaustive = integrated_gradients(trained.model, x, target_gap=0.0, max_evaluations=12)
    assert exhaustive.evaluations is not None and np.all(exhaustive.evaluations == 12)


def test_a_linear_model_stops_after_the_first_points() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    linear = keras.Model(
        inputs, keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(inputs))
    )
    x = np.random.default_rng(0).random((5, 6, 6, 1)).astype(np.float32)
    result = integrated_gradients(linear, x, targets=[[0]] * 5)
    assert result.evaluations is not None and np.all(result.evaluations == pi.INITIAL_POINTS)
    assert result.completeness_gap is not None and result.completeness_gap.max() <= 1e-4
    black = integrated_gradients(linear, np.zeros((1, 6, 6, 1), np.float32), targets=[[1]])
    assert np.isfinite(black.maps).all() and np.all(black.maps == 0)


def test_row_chunks_do_not_change_the_result(trained, panel, monkeypatch) -> None:
    x = panel[:5]
    whole = integrated_gradients(trained.model, x)
    monkeypatch.setattr(pi, "CHUNK_ELEMENTS", 2 * 32 * 28 * 28)  # two rows per chunk
    chunked = integrated_gradients(trained.model, x)
    np.testing.assert_array_equal(whole.evaluations, chunked.evaluations)
    np.testing.assert_allclose(whole.maps, chunked.maps, atol=1e-5 * np.abs(whole.maps).max())


@pytest.mark.parametrize(
    "params, message",
    [
        ({"rule": "adaptive", "steps": 8}, "chooses its own points"),
        ({"max_evaluations": 1}, "max_evaluations must be >= 2"),
        ({"target_gap": -0.1}, "target_gap must be >= 0"),
        ({"steps": 8, "rule": "simpson"}, "rule must be"),
    ],
)
def test_settings_the_rule_cannot_honour_are_one_line_errors(trained, panel, params, message):
    with pytest.raises(ValueError, match=message):
        integrated_gradients(trained.model, panel[:1], **params)
