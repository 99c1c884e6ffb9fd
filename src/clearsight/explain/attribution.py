"""The value every attribution method returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Attribution:
    """One map per (image, target): row m explains ``targets[m]`` on image ``image_index[m]``.

    ``maps`` are float32 (M, H, W), one value per pixel whatever the image's channels, in the
    units of the explained output (logits by default), signed unless the method says otherwise.
    Each method reduces channels as its literature does (saliency: the largest gradient
    magnitude over colour channels; integrated gradients, SmoothGrad, SHAP: the sum), so a
    grey image's map is the same as before colour existed. ``channel_maps`` (M, H, W, C) keeps
    the per-channel values before that reduction, for methods that have them (None for
    Grad-CAM and occlusion, whose maps are per pixel by construction). Integrated gradients also
    fills the completeness fields, per row: f(x), f(baseline), the attribution sum, and the
    relative gap |sum - (f(x) - f(baseline))| / |f(x) - f(baseline)|, and ``evaluations``:
    the gradient evaluations each row cost (fixed by ``steps``, or chosen by the adaptive rule).
    """

    method: str
    maps: np.ndarray = field(repr=False)
    targets: np.ndarray
    image_index: np.ndarray = field(repr=False)
    params: dict[str, Any]
    elapsed_s: float
    channel_maps: np.ndarray | None = field(default=None, repr=False)
    instance_output: np.ndarray | None = field(default=None, repr=False)
    baseline_output: np.ndarray | None = field(default=None, repr=False)
    attribution_sum: np.ndarray | None = field(default=None, repr=False)
    completeness_gap: np.ndarray | None = field(default=None, repr=False)
    evaluations: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def targets_per_image(self) -> np.ndarray:
        """Targets as (N, T), the form ``targets=`` accepts to explain the same classes again."""
        n = int(self.image_index.max()) + 1 if len(self.image_index) else 0
        return self.targets.reshape(n, -1)
