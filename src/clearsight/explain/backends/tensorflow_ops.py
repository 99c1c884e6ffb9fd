"""TensorFlow: ``tf.function`` with a fixed input signature, so every batch size reuses one trace."""

from __future__ import annotations

import keras
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


def compile_forward(model: keras.Model) -> Forward:
    forward: Forward = tf.function(
        lambda x: model(x, training=False), input_signature=[_image_spec(model)]
    )
    return forward


def compile_target_gradients(scores_model: keras.Model) -> TargetGradients:
    def target_gradients(x: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = scores_model(x, training=False)
            picked = _pick(scores, targets)
        return tape.gradient(picked, x), scores

    # tf.function called, not used as a decorator: TensorFlow ships no types, and a decorator
    # typed as Any would erase the function's own signature.
    traced: TargetGradients = tf.function(
        target_gradients, input_signature=[_image_spec(scores_model), _TARGETS]
    )
    return traced


def compile_layer_gradients(head: keras.Model, tail: keras.Model) -> LayerGradients:
    def layer_gradients(x: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, ...]:
        activations = head(x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(activations)
            scores = tail(activations, training=False)
            picked = _pick(scores, targets)
        return activations, tape.gradient(picked, activations), scores

    traced: LayerGradients = tf.function(
        layer_gradients, input_signature=[_image_spec(head), _TARGETS]
    )
    return traced
