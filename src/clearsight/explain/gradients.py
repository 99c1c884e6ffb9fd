"""Compiled, cached forward passes and gradients of one Keras model, on any Keras backend.

Explanation methods ask this module for numbers (numpy in, numpy out) and never touch a
backend. The backend builders in ``backends/`` trace or jit once per model; the results are
kept in a ``WeakKeyDictionary`` keyed by the model, so repeated explanations reuse them and a
model that is dropped takes its compiled functions with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any, cast

import keras
import numpy as np

from clearsight.errors import ImageError
from clearsight.explain import backends
from clearsight.explain.backends import Forward, LayerGradients, TargetGradients
from clearsight.model.cnn import LAST_CONV_LAYER

DEFAULT_CHUNK = 1024  # rows per compiled call: bounds memory for big IG / occlusion batches
PROBABILITIES = "probabilities"

_CACHE: weakref.WeakKeyDictionary[keras.Model, ModelGradients] = weakref.WeakKeyDictionary()


def model_gradients(model: keras.Model) -> ModelGradients:
    """The cached ``ModelGradients`` of ``model`` (built on first use)."""
    cached = _CACHE.get(model)
    if cached is None:
        cached = _CACHE[model] = ModelGradients(model)
    return cached


def as_model_input(x: np.ndarray) -> np.ndarray:
    """float32 (N, H, W, C), adding the channel axis to (N, H, W) grayscale batches."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected images (N, H, W[, C]), got shape {x.shape}")
    return np.ascontiguousarray(x)


def image_shape(model: keras.Model) -> tuple[int | None, int | None, int | None] | None:
    """The (H, W, C) one image must have for ``model`` (None where the model accepts any
    size), read from the model itself; None for a model without one 4-D image input."""
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple) or len(shape) != 4:
        return None
    height, width, channels = shape[1:]
    return height, width, channels


def model_input(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """``as_model_input(x)``, checked against the model's own input shape: a grey batch for a
    colour model (or images of another size) is a one-line ``ImageError``, not a backend
    traceback from deep inside a compiled function."""
    images = as_model_input(x)
    expected = image_shape(model)
    if expected is not None and any(
        want is not None and want != got
        for want, got in zip(expected, images.shape[1:], strict=True)
    ):
        wanted = "x".join("?" if d is None else str(d) for d in expected)
        got = "x".join(str(d) for d in images.shape[1:])
        raise ImageError(f"images are {got} (HxWxC) but model {model.name} takes {wanted}")
    return images


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, max(n, 1), size):
        yield slice(start, start + size)


def _to_numpy(tree: Any) -> Any:
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), tree)


def _resolve(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Targets with negative entries replaced by the row's arg-max class (as in the backends)."""
    return np.where(targets < 0, scores.argmax(axis=1), targets).astype(np.int64)


def _picked(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.take_along_axis(scores, targets[:, None], axis=1)[:, 0].astype(np.float32)


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    return keras.tree.map_structure(lambda *xs: np.concatenate(xs), *parts)


class ModelGradients:
    """Forward passes and gradients of one model, compiled lazily per output or layer.

    Holds the model only weakly (a strong reference from a cache value would keep its key
    alive forever); the sub-models it builds share the model's variables, so later weight
    changes are seen without recompiling.
    """

    def __init__(self, model: keras.Model, chunk_size: int = DEFAULT_CHUNK) -> None:
        self._model = weakref.ref(model)
        self._ops = backends.current()
        self._compiled: dict[tuple[str, str], Forward | TargetGradients | LayerGradients] = {}
        self.chunk_size = chunk_size

    @property
    def model(self) -> keras.Model:
        model = self._model()
        if model is None:
            raise ReferenceError("the model these gradients belong to no longer exists")
        return model

    # -- layer lookup ---------------------------------------------------------------------
    def output_tensor(self, output: str) -> Any:
        """The symbolic output called ``output``: a layer name, or "probabilities" = model output."""
        model = self.model
        names = [layer.name for layer in model.layers]
        if output in names:
            return model.get_layer(output).output
        if output == PROBABILITIES:
            return model.output
        raise ValueError(f"no layer {output!r} to explain in {model.name}; layers: {names}")

    def conv_layer(self, layer: str | None = None) -> str:
        """``layer``, else the seed CNN's last conv layer, else the last layer with 4-D output."""
        model = self.model
        names = [lay.name for lay in model.layers]
        if layer is not None:
            if layer not in names:
                raise ValueError(f"no layer {layer!r} in {model.name}; layers: {names}")
            return layer
        if LAST_CONV_LAYER in names:
            return LAST_CONV_LAYER
        spatial: list[str] = [lay.name for lay in model.layers[1:] if len(lay.output.shape) == 4]
        if not spatial:
            raise ValueError(f"{model.name} has no layer with a spatial (N, H, W, C) output")
        return spatial[-1]

    def _get[F: (Forward, TargetGradients, LayerGradients)](
        self, kind: str, name: str, build: Callable[[], F]
    ) -> F:
        key = (kind, name)
        if key not in self._compiled:
            self._compiled[key] = build()
        # The kind in the key fixes which builder made it, so the cached function is an F.
        return cast(F, self._compiled[key])

    # -- numbers --------------------------------------------------------------------------
    def scores(self, x: np.ndarray, output: str = "logits") -> np.ndarray:
        """The model's ``output`` layer (N, classes) for a batch, by a compiled forward pass."""

        def build() -> Forward:
            sub = keras.Model(self.model.input, self.output_tensor(output))
            return self._ops.compile_forward(sub)

        fn = self._get("scores", output, build)
        x = as_model_input(x)
        scores: np.ndarray = _concat(
            [_to_numpy(fn(x[s])) for s in _chunks(len(x), self.chunk_size)]
        )
        return scores

    def target_gradients(
        self, x: np.ndarray, targets: np.ndarray, output: str = "logits"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """d output[i, t_i] / d x[i] (shape of x), output[i, t_i] (N,) and the targets t (N,).

        A negative target asks for the row's arg-max class, resolved in the same call.
        """

        def build() -> TargetGradients:
            sub = keras.Model(self.model.input, self.output_tensor(output))
            return self._ops.compile_target_gradients(sub)

        fn = self._get("target_gradients", output, build)
        x, targets = as_model_input(x), np.asarray(targets, dtype=np.int32)
        parts = [_to_numpy(fn(x[s], targets[s])) for s in _chunks(len(x), self.chunk_size)]
        grads, scores = _concat(parts)
        resolved = _resolve(scores, targets)
        return grads, _picked(scores, resolved), resolved

    def layer_gradients(
        self, x: np.ndarray, targets: np.ndarray, layer: str | None = None, output: str = "logits"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grad-CAM terms: ``layer``'s activations (N, h, w, c), d output[i, t_i] / d them, and
        the targets t (N,); a negative target asks for the row's arg-max class."""
        layer = self.conv_layer(layer)

        def build() -> LayerGradients:
            model = self.model
            activations = model.get_layer(layer).output
            head = keras.Model(model.input, activations)
            tail = keras.Model(activations, self.output_tensor(output))
            return self._ops.compile_layer_gradients(head, tail)

        fn = self._get("layer_gradients", f"{layer}->{output}", build)
        x, targets = as_model_input(x), np.asarray(targets, dtype=np.int32)
        parts = [_to_numpy(fn(x[s], targets[s])) for s in _chunks(len(x), self.chunk_size)]
        activations, grads, scores = _concat(parts)
        return activations, grads, _resolve(scores, targets)

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output (the input layer excepted), keyed by layer name."""

        def build() -> Forward:
            model = self.model
            outputs = {
                layer.name: layer.output
                for layer in model.layers
                if not isinstance(layer, keras.layers.InputLayer)
            }
            return self._ops.compile_forward(keras.Model(model.input, outputs))

        fn = self._get("layer_outputs", "*", build)
        x = as_model_input(x)
        outputs: dict[str, np.ndarray] = _concat(
            [_to_numpy(fn(x[s])) for s in _chunks(len(x), self.chunk_size)]
        )
        return outputs
