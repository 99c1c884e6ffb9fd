"""The compiled-function cache: reused, traced once, never stale, never a leak."""

import gc
import weakref

import keras
import numpy as np
import pytest

from clearsight.explain import grad_cam, model_gradients, saliency
from clearsight.model.cnn import build_cnn


def test_cache_returns_one_object_per_model(trained):
    assert model_gradients(trained.model) is model_gradients(trained.model)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow tracing")
def test_tensorflow_traces_once_for_every_batch_size(panel):
    model = build_cnn()
    for n in (1, 3, 17, 32):
        saliency(model, panel[:n])
    traced = model_gradients(model)._compiled[("target_gradients", "logits")]
    assert traced.function.experimental_get_tracing_count() == 1


def test_cache_does_not_keep_a_dropped_model_alive(panel):
    model = build_cnn()
    saliency(model, panel[:2])
    grad_cam(model, panel[:2])
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_weight_changes_are_seen_without_recompiling(panel):
    model = build_cnn()
    before = saliency(model, panel[:2], targets=3).maps
    kernel = model.get_layer("logits").kernel
    kernel.assign(kernel * 2.0)
    after = saliency(model, panel[:2], targets=3).maps
    np.testing.assert_allclose(after, 2.0 * before, rtol=1e-4, atol=1e-7)


def test_other_architectures_fall_back_to_their_last_spatial_layer(panel):
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="features")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    result = grad_cam(model, panel[:2], output="probabilities")
    assert result.params["layer"] == "features" and result.maps.shape == (2, 28, 28)
    with pytest.raises(ValueError, match="no layer 'logits'"):
        saliency(model, panel[:2])


@pytest.mark.parametrize("method", [saliency, grad_cam])
def test_predicted_class_resolved_inside_the_gradient_call_matches_explicit_targets(
    trained, panel, method
):
    predicted = keras.ops.convert_to_numpy(trained.model(panel[:8])).argmax(axis=1)
    deferred = method(trained.model, panel[:8])
    explicit = method(trained.model, panel[:8], targets=predicted[:, None])
    np.testing.assert_array_equal(deferred.targets, predicted)
    np.testing.assert_allclose(deferred.maps, explicit.maps, atol=1e-6)
