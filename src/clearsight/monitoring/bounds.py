"""Per-image bounds: is one served image like the images the model was trained on?

The bounds are quantiles of the champion's training reference (0.5 % and 99.5 % by default),
one pair per input feature, widened by a small margin of the inter-quantile range so that a
clean digit on the edge of the range is not flagged for a rounding difference. An image
outside any pair fails that check: an ``OutOfBounds`` record, which the HTTP answer shows as
a sentence (``"ink_fraction 0.62 > 0.31"``) and the service's counter labels by ``feature``. Only input features are checked here: they cost microseconds
per image, while an attribution summary needs integrated gradients (done in the monitor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from clearsight.monitoring.features import INPUT_FEATURES

LOW_QUANTILE = 0.5  # percent
HIGH_QUANTILE = 99.5
MARGIN = 0.05  # of the inter-quantile range, on each side


@dataclass(frozen=True)
class OutOfBounds:
    """One failed check of one image: which feature, its value, and the limit it crossed."""

    feature: str
    value: float
    limit: float
    above: bool  # True: value > high limit; False: value < low limit

    def __str__(self) -> str:
        """What a person reads in the answer, e.g. ``ink_fraction 0.62 > 0.31``."""
        return f"{self.feature} {self.value:.3g} {'>' if self.above else '<'} {self.limit:.3g}"


@dataclass(frozen=True)
class Bounds:
    """``{feature: (low, high)}`` and where they came from (shown in logs and /metadata)."""

    limits: dict[str, tuple[float, float]]
    source: str

    @classmethod
    def from_features(cls, features: dict[str, np.ndarray], source: str) -> Bounds:
        limits = {}
        for name in INPUT_FEATURES:
            values = np.asarray(features[name], dtype=np.float64)
            low, high = np.percentile(values, [LOW_QUANTILE, HIGH_QUANTILE])
            pad = MARGIN * (high - low)
            limits[name] = (float(low - pad), float(high + pad))
        return cls(limits, source)

    def check(self, features: dict[str, np.ndarray]) -> list[list[OutOfBounds]]:
        """The failed checks of each image (empty: within every bound)."""
        n = len(next(iter(features.values()))) if features else 0
        failed: list[list[OutOfBounds]] = [[] for _ in range(n)]
        for name, (low, high) in self.limits.items():
            for i, value in enumerate(np.asarray(features[name], dtype=np.float64)):
                if value < low:
                    failed[i].append(OutOfBounds(name, float(value), low, above=False))
                elif value > high:
                    failed[i].append(OutOfBounds(name, float(value), high, above=True))
        return failed

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "limits": {k: list(v) for k, v in self.limits.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Bounds:
        limits = data["limits"]
        assert isinstance(limits, dict)
        return cls({k: (float(v[0]), float(v[1])) for k, v in limits.items()}, str(data["source"]))
