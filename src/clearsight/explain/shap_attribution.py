"""SHAP values through the ``shap`` library, on whichever Keras backend runs.

Under TensorFlow, ``shap.GradientExplainer`` (expected gradients over a background set)
differentiates the model directly. It fails under JAX (see the project notes), so other
backends use the model-agnostic ``shap.explainers.Partition`` with a blurring image masker,
which only needs forward passes (our compiled ``scores``). ``shap`` is imported on first use:
it costs seconds to import and most callers never need it.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import keras
import numpy as np

from clearsight.choices import SHAP
from clearsight.explain.attribution import Attribution
from clearsight.explain.methods import prepare_rows, summed_over_channels
from clearsight.explain.targets import TargetSpec

ShapAlgorithm = Literal["auto", "gradient", "partition"]


def shap_attribution(
    model: keras.Model,
    x: np.ndarray,
    targets: TargetSpec = "predicted",
    *,
    algorithm: ShapAlgorithm = "auto",
    background: np.ndarray | None = None,
    nsamples: int = 200,
    max_evals: int = 500,
    masker: str = "blur(7,7)",
    batch_size: int = 50,
    seed: int = 0,
    output: str = "logits",
    k: int | None = None,
) -> Attribution:
    """SHAP attributions per (image, target).

    ``algorithm="auto"`` picks ``gradient`` under TensorFlow and ``partition`` elsewhere.
    ``background`` (gradient only) are reference images, e.g. ~100 training digits; without
    one a single black image is used, which makes expected gradients a randomised IG from black.
    ``nsamples`` is GradientExplainer's sample count, ``max_evals`` Partition's model budget.
    """
    import shap

    start = time.perf_counter()
    rows = prepare_rows(model, x, targets, k)
    per_image = rows.targets.reshape(len(rows.images), -1)
    if algorithm == "auto":
        algorithm = "gradient" if keras.backend.backend() == "tensorflow" else "partition"
    scores_model = keras.Model(model.inputs, rows.gradients.output_tensor(output))

    if algorithm == "gradient":
        if background is None:
            background = np.zeros((1, *rows.images.shape[1:]), np.float32)
        explainer = shap.GradientExplainer(scores_model, np.asarray(background, np.float32))
        values, _ = explainer.shap_values(
            rows.images,
            nsamples=nsamples,
            ranked_outputs=per_image,
            output_rank_order="custom",
            rseed=seed,
        )
        per_row = np.moveaxis(np.asarray(values), -1, 1).reshape(len(rows.targets), -1)
        params: dict[str, Any] = {"nsamples": nsamples, "n_background": len(background)}
    elif algorithm == "partition":
        explainer = shap.explainers.Partition(
            lambda batch: rows.gradients.scores(batch, output),
            shap.maskers.Image(masker, rows.images.shape[1:]),
        )
        per_row = np.zeros((*per_image.shape, int(np.prod(rows.images.shape[1:]))), np.float32)
        for column in range(per_image.shape[1]):
            for cls in np.unique(per_image[:, column]):
                which = np.flatnonzero(per_image[:, column] == cls)
                explanation = explainer(
                    rows.images[which],
                    max_evals=max_evals,
                    batch_size=batch_size,
                    outputs=[int(cls)],
                    silent=True,
                )
                per_row[which, column] = explanation.values[..., 0].reshape(len(which), -1)
        params = {"max_evals": max_evals, "masker": masker}
    else:
        raise ValueError(f"algorithm must be 'auto', 'gradient' or 'partition', got {algorithm!r}")
    values = per_row.reshape(len(rows.targets), *rows.images.shape[1:])
    params |= {"algorithm": algorithm, "seed": seed, "output": output}
    return rows.attribution(SHAP, summed_over_channels(values), params, start, channel_maps=values)
