"""PyTorch: eager autograd (``torch.autograd.grad``) on leaf tensors on Keras' device.

Nothing to compile: the per-call cost is the model call itself. Tensors stay on the device
(GPU when there is one); callers convert with ``keras.ops.convert_to_numpy``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import torch


def _leaf(x) -> torch.Tensor:
    return keras.ops.convert_to_tensor(x).detach().requires_grad_(True)


def _pick(scores: torch.Tensor, targets) -> torch.Tensor:
    """scores[i, t_i] as float32; t_i < 0 means the arg-max class."""
    index = torch.as_tensor(targets, dtype=torch.long, device=scores.device)
    index = torch.where(index < 0, scores.argmax(dim=1), index)
    return scores.gather(1, index[:, None])[:, 0].float()


def compile_forward(model: keras.Model) -> Callable:
    def forward(x):
        with torch.no_grad():
            return model(keras.ops.convert_to_tensor(x), training=False)

    return forward


def compile_target_gradients(scores_model: keras.Model) -> Callable:
    def target_gradients(x, targets):
        inputs = _leaf(x)
        scores = scores_model(inputs, training=False)
        (grads,) = torch.autograd.grad(_pick(scores, targets).sum(), inputs)
        return grads, scores.detach()

    return target_gradients


def compile_layer_gradients(head: keras.Model, tail: keras.Model) -> Callable:
    def layer_gradients(x, targets):
        with torch.no_grad():
            activations = head(keras.ops.convert_to_tensor(x), training=False)
        activations = _leaf(activations)
        scores = tail(activations, training=False)
        (grads,) = torch.autograd.grad(_pick(scores, targets).sum(), activations)
        return activations.detach(), grads, scores.detach()

    return layer_gradients
