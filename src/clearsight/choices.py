"""Closed sets of names shared by the settings, the CLI, the library and the HTTP API.

Kept apart from ``config`` (and free of imports) so the CLI can declare its options and
choices without importing pydantic or Keras, which keeps ``clearsight --help`` instant.
"""

from typing import Literal, get_args

SourceName = Literal["embedded", "idx", "npz", "folder", "keras"]
ResizePolicy = Literal["fit", "stretch", "reject"]
Backend = Literal["tensorflow", "jax", "torch"]

# One name per explanation method everywhere: CLI, HTTP, MLflow metric names, the web page.
MethodName = Literal[
    "integrated_gradients", "grad_cam", "saliency", "smoothgrad", "occlusion", "shap"
]
METHOD_NAMES: tuple[MethodName, ...] = get_args(MethodName)
# Each name once, for the code: a typo is then a NameError, not a silently missing metric.
INTEGRATED_GRADIENTS: MethodName = "integrated_gradients"
GRAD_CAM: MethodName = "grad_cam"
SALIENCY: MethodName = "saliency"
SMOOTHGRAD: MethodName = "smoothgrad"
OCCLUSION: MethodName = "occlusion"
SHAP: MethodName = "shap"
# The completeness gap integrated gradients' adaptive rule reaches unless asked (library, HTTP).
IG_TARGET_GAP = 1e-3  # relative: 0.1 %
# What a request explains when it names no method (HTTP API, CLI).
DEFAULT_METHODS: tuple[MethodName, ...] = (INTEGRATED_GRADIENTS, GRAD_CAM)
# What a training run measures the quality of on its holdout panel (SHAP costs too much).
QUALITY_METHODS: tuple[MethodName, ...] = (
    SALIENCY,
    INTEGRATED_GRADIENTS,
    SMOOTHGRAD,
    GRAD_CAM,
    OCCLUSION,
)

# Registry aliases: the newest version, the one served, and the one a rollback returns to.
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
