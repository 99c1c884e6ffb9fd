"""Explanation-quality numbers as a typed record, and their MLflow metric names in one place.

``clearsight.explain.quality`` measures (it builds ``QualityMetrics``); the training run logs
``flat()``, the model card and the promotion policy read ``value(ordering, measure)``. Before
this record, each of them spelled ``f"explain_{method}_{measure}"`` by itself, and a renamed
measure silently dropped a promotion check. No heavy imports: the flows' summary reads the
names without loading Keras.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PREFIX = "explain"
N_IMAGES = f"{PREFIX}_n_images"
# Orderings that are not methods: every method's ranking is compared with these.
RANDOM = "random"
SOBEL = "sobel"
BASELINES = (RANDOM, SOBEL)
# Measures the policy, the card and the summaries read (``quality.md`` has every other one).
COMPLETENESS_GAP_MEDIAN = "completeness_gap_median"
STABILITY_SPEARMAN_MEDIAN = "stability_spearman_median"


def deletion_auc(fill: str) -> str:
    return f"deletion_auc_{fill}"


def insertion_auc(fill: str) -> str:
    return f"insertion_auc_{fill}"


def randomization_spearman(layer: str) -> str:
    return f"randomization_spearman_{layer}"


def metric_name(ordering: str, measure: str) -> str:
    """The MLflow metric name of one number: ``explain_<ordering>_<measure>``."""
    return f"{PREFIX}_{ordering}_{measure}"


@dataclass(frozen=True)
class QualityMetrics:
    """Aggregate quality numbers per ordering (a method's name, ``random`` or ``sobel``)."""

    sections: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    n_images: int = 0

    def value(self, ordering: str, measure: str) -> float | None:
        """One number, None when it was not measured (a method or fill not run)."""
        number = self.sections.get(ordering, {}).get(measure)
        return None if number is None else float(number)

    def flat(self) -> dict[str, float]:
        """Every number under its MLflow metric name (``mlflow.log_metrics``)."""
        flat = {
            metric_name(ordering, measure): float(number)
            for ordering, numbers in self.sections.items()
            for measure, number in numbers.items()
        }
        return flat | {N_IMAGES: float(self.n_images)}
