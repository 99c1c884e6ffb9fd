"""TensorFlow: one graph per function, traced for a fixed input signature (any batch size).

Each builder returns the traced *concrete* function behind a thin call, not the
``tf.function``: a ``tf.function`` call binds its arguments against the signature in Python
(``FunctionType.bind_with_defaults``, ``bind_function_inputs``) before it reaches the very same
graph. For one image that binding was ~0.8 of ~2.6 ms of a forward pass on one core
(measured), and single-image calls are what a lightly loaded service makes.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from clearsight.explain.backends import Forward, LayerGradients, TargetGradients


def _image_spec(model: keras.Model) -> tf.TensorSpec:
    return tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)


_TARGETS = tf.TensorSpec((None,), tf.int32)


def _pick(scores: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """scores[i, t_i] as float32 (mixed precision may emit float16); t_i < 0 means arg-max."""
    predicted = tf.argmax(scores, axis=1, output_type=tf.int32)
    return tf.cast(
        tf.gather(scores, tf.where(targets < 0, predicted, targets), batch_dims=1), tf.float32
    )


def _traced(function: Callable[..., Any], *specs: tf.TensorSpec) -> Callable[..., Any]:
    """``function`` traced once for ``specs``; called with arrays converted to their dtypes.
    The ``tf.function`` stays reachable as ``.function`` (its tracing count, for tests)."""
    traceable = tf.function(function, input_signature=list(specs))
    concrete = traceable.get_concrete_function()

    def call(*arrays: np.ndarray) -> Any:
        return concrete(
            *(tf.convert_to_tensor(a, s.dtype) for a, s in zip(arrays, specs, strict=True))
        )

    call.function = traceable  # type: ignore[attr-defined]
    return call


def compile_forward(model: keras.Model) -> Forward:
    forward: Forward = _traced(lambda x: model(x, training=False), _image_spec(model))
    return forward


def compile_target_gradients(scores_model: keras.Model) -> TargetGradients:
    def target_gradients(x: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = scores_model(x, training=False)
            picked = _pick(scores, targets)
        return tape.gradient(picked, x), scores

    traced: TargetGradients = _traced(target_gradients, _image_spec(scores_model), _TARGETS)
    return traced


def compile_layer_gradients(head: keras.Model, tail: keras.Model) -> LayerGradients:
    def layer_gradients(x: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, ...]:
        activations = head(x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(activations)
            scores = tail(activations, training=False)
            picked = _pick(scores, targets)
        return activations, tape.gradient(picked, activations), scores

    traced: LayerGradients = _traced(layer_gradients, _image_spec(head), _TARGETS)
    return traced


def to_litert(model: keras.Model) -> bytes:
    """``model``'s inference graph as a LiteRT flatbuffer (``clearsight.inference.litert``).

    ``from_keras_model`` exports the model to a temporary SavedModel first (Keras prints that
    export's signature, kept off stdout here). Converting a traced concrete function directly
    gave NaNs for a model loaded from a ``.keras`` file (its variables were not captured),
    which the caller's parity check caught."""
    with contextlib.redirect_stdout(io.StringIO()):
        flatbuffer: bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return flatbuffer
