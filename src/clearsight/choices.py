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

# Registry aliases: the newest version, the one served, and the one a rollback returns to.
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
