"""The only backend-specific code: compiled forward passes and gradients per Keras backend.

Each module here exposes the same three builders, each taking Keras models and returning a
function of numpy inputs that yields backend tensors:

- ``compile_forward(model)``: ``x -> model(x)`` (any output structure);
- ``compile_target_gradients(scores_model)``: ``(x, targets) -> (d scores[i, t_i] / d x,
  scores)``;
- ``compile_layer_gradients(head, tail)``: ``(x, targets) -> (a = head(x), d tail(a)[i, t_i] /
  d a, tail(a))``, the Grad-CAM terms.

A negative target t_i means the row's arg-max class, resolved inside the same compiled call:
explaining the predicted class then costs one model call, not a forward pass plus a gradient.

They trace or compile once per model; ``clearsight.explain.gradients`` caches them per model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import keras
import numpy as np

# A backend tensor (tf.Tensor, jax.Array or torch.Tensor, or a structure of them): which one is
# decided at run time by Keras' backend, so the library sees it only as ``Any``.
type Tensors = Any
type Forward = Callable[[np.ndarray], Tensors]
type TargetGradients = Callable[[np.ndarray, np.ndarray], tuple[Tensors, Tensors]]
type LayerGradients = Callable[[np.ndarray, np.ndarray], tuple[Tensors, Tensors, Tensors]]


class BackendOps(Protocol):
    """What each backend module provides (the modules satisfy it structurally)."""

    def compile_forward(self, model: keras.Model, /) -> Forward: ...

    def compile_target_gradients(self, scores_model: keras.Model, /) -> TargetGradients: ...

    def compile_layer_gradients(
        self, head: keras.Model, tail: keras.Model, /
    ) -> LayerGradients: ...


def _tensorflow() -> BackendOps:
    from clearsight.explain.backends import tensorflow_ops

    return tensorflow_ops


def _jax() -> BackendOps:
    from clearsight.explain.backends import jax_ops

    return jax_ops


def _torch() -> BackendOps:
    from clearsight.explain.backends import torch_ops

    return torch_ops


# Imported on first use: each module imports its own framework, and a process has one backend.
LOADERS: dict[str, Callable[[], BackendOps]] = {
    "tensorflow": _tensorflow,
    "jax": _jax,
    "torch": _torch,
}
SUPPORTED = tuple(LOADERS)


def current() -> BackendOps:
    """The builder module for the process's Keras backend (fixed once Keras is imported)."""
    name = keras.backend.backend()
    if name not in LOADERS:
        raise NotImplementedError(
            f"explanations support the Keras backends {SUPPORTED}, not {name!r}"
        )
    return LOADERS[name]()
