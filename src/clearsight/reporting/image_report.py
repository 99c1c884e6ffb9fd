"""Explain one image file: what ``clearsight explain IMAGE.png`` does, as a library call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from clearsight.data.sources import read_prepared
from clearsight.digits import to_model_input
from clearsight.explain import explain, get_method
from clearsight.explain.quality import attribution_curves
from clearsight.explain.render import overlay_png


@dataclass(frozen=True)
class MethodResult:
    method: str
    overlay: Path
    seconds: float
    completeness_gap: float | None


@dataclass(frozen=True)
class ImageExplanation:
    label: int
    confidence: float
    probabilities: np.ndarray
    rows: list[MethodResult]
    quality: dict[str, float] = field(default_factory=dict)
    preprocessing: tuple[str, ...] = ()  # steps taken on the file, e.g. "inverted: ..."

    @property
    def inverted(self) -> bool:
        """Whether the file was a dark digit on a light background, turned light on dark."""
        return any(step.startswith("inverted") for step in self.preprocessing)


def explain_file(
    model: keras.Model, image: Path, methods: list[str], out_dir: Path
) -> ImageExplanation:
    """Read, bring to training polarity, fit like MNIST, predict, explain, write overlays.

    A file is a single image someone made, not training data, so a dark digit on a light
    background is inverted (``read_prepared(..., normalise_polarity=True)``), as the service
    does, and ``preprocessing`` says so.
    """
    specs = [get_method(m) for m in methods]  # an unknown name fails before any work
    prepared = read_prepared(image, "fit", normalise_polarity=True)
    x = to_model_input(prepared.pixels[None])
    probabilities = keras.ops.convert_to_numpy(model(x, training=False))[0]
    label = int(np.argmax(probabilities))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, quality = [], {}
    for spec in specs:
        attribution = explain(model, x, spec.name)
        path = out_dir / f"{image.stem}_{spec.name}.png"
        overlay_png(x[0, ..., 0], attribution.maps[0], polarity=spec.ranking, path=path)
        gap = attribution.completeness_gap
        rows.append(
            MethodResult(
                spec.name, path, attribution.elapsed_s, None if gap is None else float(gap[0])
            )
        )
        curves = attribution_curves(model, x, attribution, spec.ranking, fill="zero")
        quality[f"{spec.name}_deletion_auc"] = float(curves.deletion_auc[0])
        quality[f"{spec.name}_insertion_auc"] = float(curves.insertion_auc[0])
    return ImageExplanation(
        label, float(probabilities[label]), probabilities, rows, quality, prepared.steps
    )
