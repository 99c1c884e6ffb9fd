"""The catalogue of methods and the single entry point ``explain``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np

from clearsight.explain import methods
from clearsight.explain.attribution import Attribution
from clearsight.explain.shap_attribution import shap_attribution
from clearsight.explain.targets import TargetSpec

Polarity = Literal["positive", "negative", "absolute", "signed"]


@dataclass(frozen=True)
class Method:
    """A method, the short name its metrics use, and which pixels count as most important.

    ``ranking`` is the polarity that orders pixels for deletion/insertion and is the default
    for rendering: plain gradients carry importance in their magnitude whatever the sign,
    the others point towards evidence for the target.
    """

    name: str
    short: str
    function: Callable[..., Attribution]
    ranking: Polarity


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("saliency", "saliency", methods.saliency, "absolute"),
        Method("integrated_gradients", "ig", methods.integrated_gradients, "positive"),
        Method("smoothgrad", "smoothgrad", methods.smoothgrad, "absolute"),
        Method("gradcam", "gradcam", methods.gradcam, "positive"),
        Method("occlusion", "occlusion", methods.occlusion, "positive"),
        Method("shap", "shap", shap_attribution, "positive"),
    )
}
_ALIASES = {m.short: m.name for m in METHODS.values()} | {"grad_cam": "gradcam"}


def get_method(name: str) -> Method:
    """A method by full or short name ("integrated_gradients" or "ig")."""
    key = _ALIASES.get(name, name)
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[key]


def explain(
    model: keras.Model,
    x: np.ndarray,
    method: str = "integrated_gradients",
    targets: TargetSpec = "predicted",
    **params: Any,
) -> Attribution:
    """Explain ``x`` (N, H, W[, C]) with ``method``; ``params`` go to that method's function."""
    return get_method(method).function(model, x, targets, **params)
