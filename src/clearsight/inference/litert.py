"""The served model's forward pass through LiteRT: the same numbers, a fifth of the per-call cost.

Why: a lightly loaded service makes one forward pass per request, and for a small CNN such a
pass is mostly TensorFlow's fixed cost per call (the eager runtime dispatching a function),
not arithmetic. Measured on one core for the seed CNN (``benchmarks/forward_call.py``): 343 us
per one-image call through the traced concrete function, 59 us through LiteRT's interpreter
(XNNPACK kernels); 1,164 vs 880 us for 16 images. Batching hides that cost under load, so it is
paid exactly when requests come one at a time, which is what the predict tail at moderate load
is made of (docs/benchmarks.md). LiteRT (``ai-edge-litert``) is TensorFlow's own runtime for
deployed models; the model is converted in memory by TensorFlow's converter at warm-up.

The service's default (``CLEARSIGHT_SERVING__FORWARD_RUNTIME=keras`` turns it off). Only for
the TensorFlow backend (the converter is TensorFlow's); with JAX or PyTorch, without
``ai-edge-litert``, and for any model the converter or the parity check refuses, the caller
keeps the compiled Keras forward pass. The parity check compares both on probe images before LiteRT is used:
probabilities must agree within ``PARITY_ATOL``, or LiteRT is not used and the log says why.
Explanations always use the Keras model (they need its gradients).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import keras
import numpy as np

from clearsight.inference.follow import first_line

logger = logging.getLogger(__name__)

PARITY_ATOL = 1e-5  # probabilities; measured differences are ~4e-8 for the seed CNN
Forward = Callable[[np.ndarray], np.ndarray]


class LiteRTForward:
    """``forward(x)``: the converted model's output for float32 images (N, H, W, C).

    One interpreter, resized when the batch size changes (~15 us); a lock keeps it to one
    caller at a time (the batcher's thread in the service, which never contends for it)."""

    def __init__(self, flatbuffer: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            if x.shape != self._shape:
                self._interpreter.resize_tensor_input(self._input, list(x.shape))
                self._interpreter.allocate_tensors()
                self._shape = x.shape
            self._interpreter.set_tensor(self._input, x)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output))  # a copy: reused buffer


def convert(model: keras.Model) -> bytes:
    """The LiteRT flatbuffer of ``model``'s inference graph, by TensorFlow's converter
    (``clearsight.explain.backends.tensorflow_ops.to_litert``; TensorFlow backend only)."""
    from clearsight.explain.backends.tensorflow_ops import to_litert

    return to_litert(model)


def litert_forward(
    model: keras.Model, reference: Forward, probe: np.ndarray
) -> LiteRTForward | None:
    """``model`` through LiteRT, if its probabilities on ``probe`` (N, H, W, C) match
    ``reference``'s (the compiled Keras forward); else None, with the reason logged."""
    if keras.backend.backend() != "tensorflow":
        return None
    try:
        forward = LiteRTForward(convert(model))
        probe = np.ascontiguousarray(probe, dtype=np.float32)
        for batch in (probe[:1], probe):  # both a single image and a batch
            ours, theirs = forward(batch), np.asarray(reference(batch))
            gap = float(np.max(np.abs(ours - theirs))) if ours.shape == theirs.shape else np.inf
            if not gap <= PARITY_ATOL:
                logger.warning(
                    "LiteRT forward not used for %s: probabilities differ by %.3g (shape %s "
                    "vs %s), more than %g",
                    model.name,
                    gap,
                    ours.shape,
                    theirs.shape,
                    PARITY_ATOL,
                )
                return None
    except Exception as err:  # a layer the converter lacks, no wheel: fall back
        reason = f"{type(err).__name__}: {first_line(err)}"
        logger.warning("LiteRT forward not used for %s: %s", model.name, reason)
        return None
    return forward
