"""PyTorch: eager autograd (``torch.autograd.grad``) on leaf tensors on Keras' device.

Nothing to compile: the per-call cost is the model call itself. Tensors stay on the device
(GPU when there is one); callers convert with ``keras.ops.convert_to_numpy``.
"""

from __future__ import annotations

import keras
import numpy as np
import torch

from clearsight.explain.backends import Forward, LayerGradients, TargetGradients, Tensors


def _leaf(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return keras.ops.convert_to_tensor(x).detach().requires_grad_(True)


def _pick(scores: torch.Tensor, targets: np.ndarray) -> torch.Tensor:
    """scores[i, t_i] as float32; t_i < 0 means the arg-max class."""
    index = torch.as_tensor(targets, dtype=torch.long, device=scores.device)
    index = torch.where(index < 0, scores.argmax(dim=1), index)
    return scores.gather(1, index[:, None])[:, 0].float()


def compile_forward(model: keras.Model) -> Forward:
    def forward(x: np.ndarray) -> Tensors:
        with torch.no_grad():
            return model(keras.ops.convert_to_tensor(x), training=False)

    return forward


def compile_target_gradients(scores_model: keras.Model) -> TargetGradients:
    def target_gradients(x: np.ndarray, targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = _leaf(x)
        scores = scores_model(inputs, training=False)
        (grads,) = torch.autograd.grad(_pick(scores, targets).sum(), inputs)
        return grads, scores.detach()

    return target_gradients


def compile_layer_gradients(head: keras.Model, tail: keras.Model) -> LayerGradients:
    def layer_gradients(
        x: np.ndarray, targets: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            activations = head(keras.ops.convert_to_tensor(x), training=False)
        activations = _leaf(activations)
        scores = tail(activations, training=False)
        (grads,) = torch.autograd.grad(_pick(scores, targets).sum(), activations)
        return activations.detach(), grads, scores.detach()

    return layer_gradients
