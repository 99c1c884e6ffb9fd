"""Which class(es) each image is explained for."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

TargetSpec = str | int | Sequence[int] | Sequence[Sequence[int]] | np.ndarray

_TOP = re.compile(r"top-(\d+|k)")


def resolve_targets(
    probabilities: np.ndarray, targets: TargetSpec = "predicted", *, k: int | None = None
) -> np.ndarray:
    """Target classes as an int array (N, T): T maps per image, one per (image, target).

    - ``"predicted"``: the arg-max class (T = 1);
    - ``"top-k"`` with ``k=...``, or ``"top-3"``: the k most probable classes, best first;
    - an int: that class for every image;
    - a 1-D sequence of ints: those classes, for every image (T = its length);
    - a 2-D array (N, T): per-image targets, e.g. true labels as ``labels[:, None]``.
    """
    probabilities = np.asarray(probabilities)
    n, n_classes = probabilities.shape
    if isinstance(targets, str):
        if targets == "predicted":
            return probabilities.argmax(axis=1)[:, None].astype(np.int64)
        match = _TOP.fullmatch(targets)
        if not match:
            raise ValueError(f"targets {targets!r}: use 'predicted', 'top-k' (with k=) or 'top-3'")
        top = k if match[1] == "k" else int(match[1])
        if top is None or not 1 <= top <= n_classes:
            raise ValueError(f"targets {targets!r}: k must be in 1..{n_classes}, got {top}")
        return np.argsort(-probabilities, axis=1, kind="stable")[:, :top].astype(np.int64)
    return explicit_targets(targets, n, n_classes)


def explicit_targets(targets: TargetSpec, n: int, n_classes: int) -> np.ndarray:
    """Given classes (an int, a 1-D or a 2-D array) as (N, T), checked; needs no model output,
    so a caller that already knows the classes saves a forward pass."""
    array = np.asarray(targets)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"targets must be integer classes, got dtype {array.dtype}")
    if array.ndim == 0:
        array = np.full((n, 1), int(array))
    elif array.ndim == 1:
        array = np.broadcast_to(array, (n, len(array)))
    elif array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"per-image targets must have shape ({n}, T), got {array.shape}")
    if array.size == 0 or array.min() < 0 or array.max() >= n_classes:
        raise ValueError(f"target classes must lie in 0..{n_classes - 1}, got {array.tolist()}")
    return np.array(array, dtype=np.int64)
