"""Explanations of Keras image classifiers: attributions, activations, quality, rendering.

Backend-specific code (TensorFlow, JAX, PyTorch gradients) lives only in ``backends/`` behind
``gradients.ModelGradients``; everything else is numpy. ``quality`` and ``render`` are
imported on demand (``clearsight.explain.quality``, ``clearsight.explain.render``) so that
serving an explanation does not pay for matplotlib or scipy.
"""

from clearsight.explain.attribution import Attribution
from clearsight.explain.catalogue import METHODS, Method, explain, get_method
from clearsight.explain.encoding import decode_map, encode_map
from clearsight.explain.gradients import ModelGradients, model_gradients
from clearsight.explain.methods import (
    activations,
    grad_cam,
    integrated_gradients,
    occlusion,
    saliency,
    smoothgrad,
)
from clearsight.explain.shap_attribution import shap_attribution
from clearsight.explain.targets import resolve_targets

__all__ = [
    "METHODS",
    "Attribution",
    "Method",
    "ModelGradients",
    "activations",
    "decode_map",
    "encode_map",
    "explain",
    "get_method",
    "grad_cam",
    "integrated_gradients",
    "model_gradients",
    "occlusion",
    "resolve_targets",
    "saliency",
    "shap_attribution",
    "smoothgrad",
]
