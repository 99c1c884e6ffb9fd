"""Before a model version takes traffic: is this loaded copy the model that was trained?

Every training run logs its explanation panel (fixed holdout images) with the model's own
probabilities on them (``ARTIFACT``). A service about to swap to that version recomputes them
on the copy it loaded and compares: a corrupted artifact, a wrong version, a broken backend or
a numerically different build all show up as disagreeing predictions, before any user sees
them. Integrated gradients must also stay complete on the panel (the policy's limit), so the
explanations the service hands out are as trustworthy as the ones promotion measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clearsight.task import to_model_input

if TYPE_CHECKING:
    import keras

ARTIFACT = "acceptance/panel.npz"  # relative path in a training run's artifacts
PROBABILITY_TOLERANCE = 1e-3  # float32 kernels may differ across hosts by ~1e-6


@dataclass(frozen=True)
class Panel:
    """Fixed holdout images, their labels, and the trained model's probabilities on them."""

    images: np.ndarray  # uint8 (N, H, W) grey or (N, H, W, 3) colour: the task's stored shape
    labels: np.ndarray  # int (N,)
    probabilities: np.ndarray  # float (N, classes)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path, images=self.images, labels=self.labels, probabilities=self.probabilities
        )
        return path

    @classmethod
    def load(cls, path: Path) -> Panel:
        with np.load(path, allow_pickle=False) as npz:
            return cls(npz["images"], npz["labels"], npz["probabilities"])


@dataclass(frozen=True)
class Acceptance:
    """The verdict on a loaded model, with every check's reason when it failed."""

    passed: bool
    failures: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)

    def reason(self) -> str:
        return "; ".join(self.failures) if self.failures else "all checks passed"


def check(
    probabilities: np.ndarray, panel: Panel, completeness_gaps: np.ndarray, max_gap: float
) -> Acceptance:
    """Compare a loaded model's ``probabilities`` on ``panel.images`` with the logged ones and
    its integrated-gradients ``completeness_gaps`` (one per panel image) with ``max_gap``."""
    failures = []
    numbers: dict[str, float] = {}
    if probabilities.shape != panel.probabilities.shape or not np.all(np.isfinite(probabilities)):
        failures.append(
            f"predictions have shape {probabilities.shape} or are not finite "
            f"(expected finite {panel.probabilities.shape})"
        )
    else:
        difference = float(np.abs(probabilities - panel.probabilities).max())
        same_labels = probabilities.argmax(1) == panel.probabilities.argmax(1)
        numbers |= {
            "max_probability_difference": difference,
            "panel_accuracy": float(np.mean(probabilities.argmax(1) == panel.labels)),
            "logged_panel_accuracy": float(np.mean(panel.probabilities.argmax(1) == panel.labels)),
        }
        if difference > PROBABILITY_TOLERANCE or not same_labels.all():
            failures.append(
                f"predictions on the {len(panel.labels)}-image panel differ from the logged ones "
                f"(max probability difference {difference:.3g}, {int((~same_labels).sum())} "
                "labels changed): not the model that was trained"
            )
    gap = float(np.median(completeness_gaps)) if len(completeness_gaps) else float("nan")
    numbers["completeness_gap_median"] = gap
    if not gap <= max_gap:  # NaN fails too
        failures.append(
            f"integrated-gradients completeness gap {gap:.3g} exceeds the limit {max_gap:.3g}"
        )
    return Acceptance(not failures, failures, numbers)


def model_input(panel: Panel) -> np.ndarray:
    """The panel as the model's float32 input."""
    return to_model_input(panel.images)


def verify(model: keras.Model, panel: Panel, max_gap: float) -> Acceptance:
    """Run the checks on a loaded Keras ``model``: panel predictions and IG completeness.

    A panel whose images do not fit the model's input (another task's panel) fails with that
    reason, not a Keras error."""
    from clearsight.choices import INTEGRATED_GRADIENTS
    from clearsight.explain import explain, model_gradients
    from clearsight.explain.gradients import PROBABILITIES

    x = model_input(panel)
    wanted = tuple(model.input_shape[1:])
    if x.shape[1:] != wanted:
        return Acceptance(
            False,
            [
                f"the panel's images are {x.shape[1:]}, the model takes {wanted}: not the "
                "model this panel was logged with"
            ],
        )
    probabilities = model_gradients(model).scores(x, PROBABILITIES)
    gaps = explain(model, x, INTEGRATED_GRADIENTS).completeness_gap
    return check(np.asarray(probabilities, np.float64), panel, np.asarray(gaps), max_gap)
