"""The catalogue of explanation methods and the single entry point ``explain``.

A method has one name everywhere (``clearsight.choices.MethodName``): the CLI's ``-m``, the
HTTP API, the web page and the MLflow metric names (``explain_<method>_...``) all use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np

from clearsight.choices import (
    GRAD_CAM,
    INTEGRATED_GRADIENTS,
    OCCLUSION,
    SALIENCY,
    SHAP,
    SMOOTHGRAD,
)
from clearsight.errors import UnknownMethod
from clearsight.explain import methods
from clearsight.explain.attribution import Attribution
from clearsight.explain.shap_attribution import shap_attribution
from clearsight.explain.targets import TargetSpec

Polarity = Literal["positive", "negative", "absolute", "signed"]


@dataclass(frozen=True)
class Method:
    """A method and which pixels count as most important in its maps.

    ``ranking`` is the polarity that orders pixels for deletion/insertion and is the default
    for rendering: plain gradients carry importance in their magnitude whatever the sign,
    the others point towards evidence for the target.
    """

    name: str
    function: Callable[..., Attribution]
    ranking: Polarity


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(SALIENCY, methods.saliency, "absolute"),
        Method(INTEGRATED_GRADIENTS, methods.integrated_gradients, "positive"),
        Method(SMOOTHGRAD, methods.smoothgrad, "absolute"),
        Method(GRAD_CAM, methods.grad_cam, "positive"),
        Method(OCCLUSION, methods.occlusion, "positive"),
        Method(SHAP, shap_attribution, "positive"),
    )
}


def get_method(name: str) -> Method:
    """A method by its name; an unknown name is a one-line ``UnknownMethod`` error."""
    if name not in METHODS:
        raise UnknownMethod(
            f"unknown explanation method {name!r}; choose from {', '.join(METHODS)}"
        )
    return METHODS[name]


def explain(
    model: keras.Model,
    x: np.ndarray,
    method: str = INTEGRATED_GRADIENTS,
    targets: TargetSpec = "predicted",
    **params: Any,
) -> Attribution:
    """Explain ``x`` (N, H, W[, C]) with ``method``; ``params`` go to that method's function."""
    return get_method(method).function(model, x, targets, **params)
