"""Quality metrics: deletion beats random, randomisation breaks maps, the report is loggable."""

import math

import numpy as np

from clearsight.explain import explain
from clearsight.explain.gradients import model_gradients
from clearsight.explain.quality import (
    clone_with_weights,
    fill_images,
    importance_ranks,
    perturbation_curves,
    quality_report,
    randomization_correlations,
    relative_l2,
    sobel_magnitude,
    spearman_rows,
)


def test_importance_ranks_put_the_largest_value_first():
    ranks = importance_ranks(np.array([[[0.1, 0.9], [0.5, -1.0]]]))
    np.testing.assert_array_equal(ranks, [[2, 0, 1, 3]])


def test_rank_and_distance_helpers():
    a = np.arange(12.0).reshape(2, 2, 3)
    np.testing.assert_allclose(spearman_rows(a, a * 3 + 1), [1.0, 1.0])
    np.testing.assert_allclose(spearman_rows(a, -a), [-1.0, -1.0])
    np.testing.assert_allclose(spearman_rows(a, np.zeros_like(a)), [0.0, 0.0])  # constant map
    np.testing.assert_allclose(relative_l2(a[1:], a[1:] * 1.1), [0.1], rtol=1e-6)


def test_sobel_is_zero_on_flat_images_and_fills_keep_shape(panel):
    assert sobel_magnitude(np.zeros((1, 28, 28, 1), np.float32)).max() == 0
    assert sobel_magnitude(panel[:2]).max() > 0
    for fill in ("zero", "blur", "mean"):
        assert fill_images(panel[:3], fill).shape == (3, 28, 28, 1)


def test_ig_deletion_falls_faster_than_random_order(trained, panel):
    model = trained.model
    ig = explain(model, panel, "integrated_gradients")
    gradients = model_gradients(model)
    random = importance_ranks(np.random.default_rng(0).random(ig.maps.shape))
    by_ig = importance_ranks(ig.maps)
    for fill in ("zero", "blur"):
        filled = fill_images(panel, fill)
        ours = perturbation_curves(gradients, panel, ig.targets, by_ig, filled)
        chance = perturbation_curves(gradients, panel, ig.targets, random, filled)
        assert ours.deletion_auc.mean() < chance.deletion_auc.mean() - 0.1
        assert ours.insertion_auc.mean() > chance.insertion_auc.mean()
        assert (ours.deletion_auc < chance.deletion_auc).mean() > 0.8
        np.testing.assert_allclose(ours.deletion[:, 0], ours.insertion[:, -1], atol=1e-6)


def test_model_randomisation_breaks_maps_and_spares_the_callers_model(trained, panel):
    model, x = trained.model, panel[:12]
    weights = [w.copy() for w in model.get_weights()]
    originals = {m: explain(model, x, m) for m in ("saliency", "integrated_gradients")}
    correlations = randomization_correlations(model, x, originals)
    for method, by_layer in correlations.items():
        assert list(by_layer) == ["logits", "conv2", "conv1"], method
        assert np.median(by_layer["conv1"]) < 0.3, method
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    again = {m: explain(model, x, m).maps for m in originals}
    for method, maps in again.items():
        np.testing.assert_allclose(maps, originals[method].maps, atol=1e-6)


def test_clone_has_equal_weights_but_separate_variables(trained):
    clone = clone_with_weights(trained.model)
    for ours, theirs in zip(trained.model.weights, clone.weights, strict=True):
        assert ours is not theirs
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_quality_report_is_flat_finite_and_readable(trained, panel):
    report = quality_report(trained.model, panel[:16])
    metrics = report.metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    for name in (
        "explain_integrated_gradients_completeness_gap_median",
        "explain_integrated_gradients_deletion_auc_zero",
        "explain_integrated_gradients_insertion_auc_blur",
        "explain_random_deletion_auc_zero",
        "explain_sobel_deletion_auc_blur",
        "explain_grad_cam_randomization_spearman_conv1",
        "explain_smoothgrad_stability_spearman_median",
        "explain_occlusion_seconds_per_image",
    ):
        assert name in metrics, name
    assert metrics["explain_integrated_gradients_completeness_gap_median"] <= 0.01
    assert metrics["explain_integrated_gradients_deletion_gain_vs_random_zero"] > 0
    assert metrics["explain_n_images"] == 16
    text = report.to_markdown()
    assert (
        "| integrated_gradients |" in text
        and "| random |" in text
        and "randomization_spearman_conv1" in text
    )
    assert report.elapsed_s < 60
