"""Per-image bounds: is one served image like the images the model was trained on?

The bounds are quantiles of the champion's training reference (0.5 % and 99.5 % by default),
one pair per input feature, widened by a small margin of the inter-quantile range so that a
clean digit on the edge of the range is not flagged for a rounding difference. An image
outside any pair fails that check: an ``OutOfBounds`` record, which the HTTP answer shows as
a sentence (``"ink_fraction 0.62 > 0.31"``) and the service's counter labels by ``feature``. Only input features are checked here: they cost microseconds
per image, while an attribution summary needs integrated gradients (done in the monitor).

Bounds hold one pair per feature the reference computed: the grey names for grey images,
per-channel names for colour ones (``features.input_feature_names``). Bounds made for one
kind of image cannot judge another (``fits``): ``check`` refuses them with a one-line
``MonitorError`` rather than failing on a missing key or comparing the wrong numbers.
Empty bounds (no reference to learn them from) fit any image and flag none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from clearsight.errors import MonitorError

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
    def from_features(cls, features: Mapping[str, np.ndarray], source: str) -> Bounds:
        """One pair per feature of ``features`` (``image_features`` of the reference images)."""
        limits = {}
        for name in features:
            values = np.asarray(features[name], dtype=np.float64)
            low, high = np.percentile(values, [LOW_QUANTILE, HIGH_QUANTILE])
            pad = MARGIN * (high - low)
            limits[name] = (float(low - pad), float(high + pad))
        return cls(limits, source)

    @property
    def features(self) -> tuple[str, ...]:
        """The features these bounds judge."""
        return tuple(self.limits)

    def fits(self, features: Mapping[str, object] | Iterable[str]) -> bool:
        """Whether every bounded feature is among ``features`` (a features dict or names)."""
        return set(self.limits) <= set(features)

    def refusal(self, features: Mapping[str, object] | Iterable[str]) -> str | None:
        """Why these bounds cannot judge images with ``features``, or None when they can."""
        names = list(features)
        if self.fits(names):
            return None
        missing = [name for name in self.limits if name not in names]
        return (
            f"bounds from {self.source} are for features {', '.join(self.limits)}, but the "
            f"images give {', '.join(names) or 'none'} (missing {', '.join(missing)}): "
            "a reference built for another image shape; compute one for this model"
        )

    def check(self, features: dict[str, np.ndarray]) -> list[list[OutOfBounds]]:
        """The failed checks of each image (empty: within every bound); bounds that do not
        ``fit`` these features are a one-line ``MonitorError``."""
        reason = self.refusal(features)
        if reason is not None:
            raise MonitorError(reason)
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
