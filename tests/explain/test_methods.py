"""Attribution methods on the trained seed CNN: shapes, determinism, references, completeness."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from clearsight.errors import UnknownMethod
from clearsight.explain import activations, explain, grad_cam, integrated_gradients, saliency
from clearsight.model.cnn import LAST_CONV_LAYER, LOGITS_LAYER

GRADIENT_AND_PERTURBATION = (
    "saliency",
    "integrated_gradients",
    "smoothgrad",
    "grad_cam",
    "occlusion",
)


def test_fixture_model_is_accurate(trained):
    assert trained.accuracy > 0.95


@pytest.mark.parametrize("method", GRADIENT_AND_PERTURBATION)
def test_one_map_per_image_for_the_predicted_class_deterministically(trained, panel, method):
    x = panel[:6]
    first = explain(trained.model, x, method)
    second = explain(trained.model, x, method)
    predicted = keras.ops.convert_to_numpy(trained.model(x)).argmax(axis=1)
    assert first.method == method
    assert first.maps.shape == (6, 28, 28) and first.maps.dtype == np.float32
    np.testing.assert_array_equal(first.targets, predicted)
    np.testing.assert_array_equal(first.image_index, np.arange(6))
    assert np.isfinite(first.maps).all() and np.abs(first.maps).max() > 0
    assert first.elapsed_s > 0 and first.params["output"] == "logits"
    np.testing.assert_allclose(first.maps, second.maps, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", GRADIENT_AND_PERTURBATION)
def test_top_k_gives_a_map_per_image_and_target_matching_single_target_calls(
    trained, panel, method
):
    x = panel[:3]
    top = explain(trained.model, x, method, targets="top-2")
    assert top.maps.shape == (6, 28, 28)
    np.testing.assert_array_equal(top.image_index, [0, 0, 1, 1, 2, 2])
    second_best = top.targets.reshape(3, 2)[:, 1]
    alone = explain(trained.model, x, method, targets=second_best[:, None])
    np.testing.assert_allclose(top.maps[1::2], alone.maps, atol=1e-5 * np.abs(alone.maps).max())


def test_integrated_gradients_completeness_on_trained_model(trained, panel):
    result = integrated_gradients(trained.model, panel)  # 32 steps, black baseline, trapezoid
    assert np.median(result.completeness_gap) <= 0.01
    np.testing.assert_allclose(result.attribution_sum, result.maps.sum(axis=(1, 2)), rtol=1e-4)
    logits = keras.ops.convert_to_numpy(
        keras.Model(trained.model.input, trained.model.get_layer(LOGITS_LAYER).output)(panel)
    )
    picked = logits[np.arange(len(panel)), result.targets]
    np.testing.assert_allclose(result.instance_output, picked, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "baseline,rule",
    [(0.5, "trapezoid"), ("blurred", "midpoint"), ("black", "midpoint"), ("mean", "trapezoid")],
)
def test_integrated_gradients_completeness_holds_for_other_baselines_and_rules(
    trained, panel, baseline, rule
):
    x = panel[:8]
    if baseline == "blurred":
        baseline = np.stack([tf.nn.avg_pool2d(i[None], 5, 1, "SAME")[0] for i in x])
    elif baseline == "mean":
        baseline = panel.mean(axis=0)[..., 0]  # one (H, W) image for every row
    result = integrated_gradients(trained.model, x, steps=64, baseline=baseline, rule=rule)
    assert np.median(result.completeness_gap) <= 0.01
    assert not np.allclose(result.baseline_output, 0)


def test_grad_cam_equals_a_direct_gradient_tape_reference(trained, panel):
    model, x = trained.model, panel[:5]
    ours = grad_cam(model, x, targets=np.array([[3], [1], [4], [1], [5]]))
    grad_model = keras.Model(
        model.input,
        [model.get_layer(LAST_CONV_LAYER).output, model.get_layer(LOGITS_LAYER).output],
    )
    with tf.GradientTape() as tape:
        conv, logits = grad_model(tf.constant(x))
        score = tf.gather(logits, [3, 1, 4, 1, 5], batch_dims=1)
    grads = tape.gradient(score, conv)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    heat = tf.nn.relu(tf.einsum("bhwc,bc->bhw", conv, weights))
    reference = tf.image.resize(heat[..., None], (28, 28), method="bilinear")[..., 0].numpy()
    np.testing.assert_allclose(ours.maps, reference, atol=1e-5 * reference.max())


def test_saliency_equals_a_direct_gradient_tape_reference(trained, panel):
    model, x = trained.model, tf.constant(panel[:4])
    logits_model = keras.Model(model.input, model.get_layer(LOGITS_LAYER).output)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.gather(logits_model(x), [0, 1, 2, 3], batch_dims=1)
    reference = tape.gradient(score, x).numpy()[..., 0]
    ours = saliency(model, panel[:4], targets=np.arange(4)[:, None])
    np.testing.assert_allclose(ours.maps, reference, atol=1e-6 * np.abs(reference).max())


def test_occlusion_is_zero_where_every_covering_window_is_already_black(trained, panel):
    x = panel[:4]
    result = explain(trained.model, x, "occlusion", window=4, stride=2, fill=0.0)
    ink = x[..., 0] > 0
    near_ink = tf.nn.max_pool2d(ink[..., None].astype(np.float32), 9, 1, "SAME").numpy()[..., 0]
    far = near_ink == 0  # pixels farther than any window reach from the digit
    assert far.any()
    np.testing.assert_allclose(result.maps[far], 0.0, atol=1e-5)


def test_grayscale_batches_without_channel_axis_are_accepted(trained, panel):
    with_channel = saliency(trained.model, panel[:2])
    without = saliency(trained.model, panel[:2, ..., 0])
    np.testing.assert_array_equal(with_channel.maps, without.maps)


def test_activations_returns_every_layer_by_name(trained, panel):
    outputs = activations(trained.model, panel[:3])
    names = [layer.name for layer in trained.model.layers[1:]]
    assert list(outputs) == names
    assert outputs["conv1"].shape == (3, 26, 26, 32)
    assert outputs[LAST_CONV_LAYER].shape == (3, 11, 11, 64)
    assert outputs["flatten"].shape == (3, 1600)
    direct = keras.ops.convert_to_numpy(trained.model(panel[:3]))
    np.testing.assert_allclose(outputs["probabilities"], direct, atol=1e-6)


def test_unknown_method_and_layer_are_clear_errors(trained, panel):
    with pytest.raises(UnknownMethod, match="unknown explanation method 'lime'"):
        explain(trained.model, panel[:1], "lime")
    with pytest.raises(ValueError, match="no layer 'conv9'"):
        grad_cam(trained.model, panel[:1], layer="conv9")
