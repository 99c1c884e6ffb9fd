"""JAX: ``jax.jit`` over ``model.stateless_call``.

The variables' current values are passed as arguments on every call, so a jitted function
never bakes in stale weights (fine-tuning or randomising a model is seen at once) and the
trace is reused for every call with the same batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import keras

from clearsight.explain.backends import Forward, LayerGradients, TargetGradients, Tensors

# The model's variables as arguments: a pytree of arrays.
type State = tuple[list[jax.Array], list[jax.Array]]
type PickedSum = Callable[
    [jax.Array, jax.Array, list[jax.Array], list[jax.Array]], tuple[jax.Array, jax.Array]
]


def _state(model: keras.Model) -> State:
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )


def _picked_sum(model: keras.Model) -> PickedSum:
    """(inputs, targets, trainable, non_trainable) -> (sum of scores[i, t_i], scores);
    t_i < 0 means the arg-max class."""

    def picked_sum(
        inputs: jax.Array,
        targets: jax.Array,
        trainable: list[jax.Array],
        non_trainable: list[jax.Array],
    ) -> tuple[jax.Array, jax.Array]:
        scores, _ = model.stateless_call(trainable, non_trainable, inputs, training=False)
        targets = jnp.where(targets < 0, jnp.argmax(scores, axis=1), targets)
        picked = jnp.take_along_axis(scores, targets[:, None], axis=1)[:, 0]
        return picked.astype(jnp.float32).sum(), scores

    return picked_sum


def compile_forward(model: keras.Model) -> Forward:
    @jax.jit
    def forward(
        x: jax.Array, trainable: list[jax.Array], non_trainable: list[jax.Array]
    ) -> Tensors:
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    return lambda x: forward(x, *_state(model))


def compile_target_gradients(scores_model: keras.Model) -> TargetGradients:
    gradients = jax.jit(jax.grad(_picked_sum(scores_model), has_aux=True))
    return lambda x, targets: gradients(x, targets, *_state(scores_model))


def compile_layer_gradients(head: keras.Model, tail: keras.Model) -> LayerGradients:
    tail_gradients = jax.grad(_picked_sum(tail), has_aux=True)

    @jax.jit
    def layer_gradients(
        x: jax.Array, targets: jax.Array, head_state: State, tail_state: State
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        activations = head.stateless_call(*head_state, x, training=False)[0]
        grads, scores = tail_gradients(activations, targets, *tail_state)
        return activations, grads, scores

    return lambda x, targets: layer_gradients(x, targets, _state(head), _state(tail))
