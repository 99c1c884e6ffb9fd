"""Drift of a window of served traffic against the champion's training reference.

Tests, all from SciPy (no hand-written statistics):

- each input feature and each attribution summary: two-sample Kolmogorov-Smirnov
  (``scipy.stats.ks_2samp``), window against reference;
- predicted-class prior: chi-square test of homogeneity (``scipy.stats.chi2_contingency``)
  of the window's predicted-class counts against the reference's: a 2 x classes table, so the
  reference's own sampling noise counts too (a goodness-of-fit test against the reference's
  shares as if exact raised false alarms on held-out digits);
- confidence drop: one-sided Mann-Whitney U (``scipy.stats.mannwhitneyu``,
  ``alternative="less"``): are the window's confidences stochastically lower?

That is up to 12 tests per window (6 input features per channel on colour images), so the p-values are adjusted together with
Benjamini-Hochberg (``scipy.stats.false_discovery_control``). Drift is declared when any
adjusted p-value is below ``alpha`` (default 0.01). When nothing has drifted (every null hypothesis
true), Benjamini-Hochberg keeps the chance of any false alarm in a window at or below
``alpha``, which is what an operator cares about: the false-alarm rate per window.

Scores for dashboards: ``-log10`` of each adjusted p-value (0: nothing; 2: at the default
threshold; larger: stronger evidence) and each KS statistic (an effect size, 0-1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from clearsight.errors import MonitorError
from clearsight.monitoring.features import ATTRIBUTION_FEATURES
from clearsight.monitoring.reference import Reference

DEFAULT_ALPHA = 0.01
MIN_WINDOW = 20  # fewer records cannot support the tests


@dataclass(frozen=True)
class Test:
    """One test of the window: its statistic, raw and adjusted p-value, and verdict."""

    name: str
    kind: str  # input, attribution, prior, confidence
    statistic: float
    p_value: float
    p_adjusted: float = math.nan
    drifted: bool = False

    @property
    def score(self) -> float:
        """-log10 of the adjusted p-value, capped at 300 (float64's floor)."""
        return float(min(300.0, -math.log10(max(self.p_adjusted, 1e-300))))


@dataclass(frozen=True)
class DriftReport:
    """The outcome for one window."""

    window: int
    alpha: float
    tests: list[Test]
    reference_source: str
    window_mean_confidence: float
    reference_mean_confidence: float
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return any(t.drifted for t in self.tests)

    @property
    def reasons(self) -> list[str]:
        return [
            f"{t.name} ({t.kind}): adjusted p = {t.p_adjusted:.2g} < {self.alpha:g}"
            for t in self.tests
            if t.drifted
        ]

    @property
    def verdict(self) -> str:
        return "drift" if self.drifted else "no drift"

    def scores(self) -> dict[str, float]:
        """Flat numbers for metrics: ``drift_score_<test>``, ``ks_<feature>``, the verdict."""
        out = {f"drift_score_{t.name}": t.score for t in self.tests}
        out |= {
            f"ks_{t.name}": t.statistic for t in self.tests if t.kind in ("input", "attribution")
        }
        out |= {
            "drift_detected": float(self.drifted),
            "window_records": float(self.window),
            "window_mean_confidence": self.window_mean_confidence,
            "reference_mean_confidence": self.reference_mean_confidence,
        }
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "drifted": self.drifted,
            "reasons": self.reasons,
            "window": self.window,
            "alpha": self.alpha,
            "reference_source": self.reference_source,
            "window_mean_confidence": self.window_mean_confidence,
            "reference_mean_confidence": self.reference_mean_confidence,
            "notes": self.notes,
            "tests": [asdict(t) | {"score": t.score} for t in self.tests],
        }


def compare(
    reference: Reference,
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    confidences: np.ndarray,
    attributions: dict[str, np.ndarray] | None = None,
    *,
    alpha: float = DEFAULT_ALPHA,
) -> DriftReport:
    """Test one window (input features, predicted labels, confidences, and attribution
    summaries unless None) against ``reference``; p-values adjusted together.

    The window must have the reference's input features and classes: traffic of another
    image shape (grey against a colour reference, say) is a one-line ``MonitorError``.
    """
    n = len(labels)
    if n < MIN_WINDOW:
        raise ValueError(f"a window needs at least {MIN_WINDOW} records, got {n}")
    missing = [name for name in reference.feature_names if name not in features]
    if missing:
        raise MonitorError(
            f"the reference ({reference.source}) has features {', '.join(reference.feature_names)}"
            f" but the window has {', '.join(features) or 'none'}: traffic of another image "
            "shape than the reference's model; compare it with its own model's reference"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) and int(labels.max()) >= reference.n_classes:
        raise MonitorError(
            f"the window has class {int(labels.max())} but the reference's model has "
            f"{reference.n_classes} classes: traffic of another model's task"
        )
    raw: list[Test] = []
    for name in reference.feature_names:
        result = stats.ks_2samp(features[name], reference.features[name])
        raw.append(Test(name, "input", float(result.statistic), float(result.pvalue)))
    notes = []
    if attributions is not None:
        for name in ATTRIBUTION_FEATURES:
            values = np.asarray(attributions[name], dtype=np.float64)
            values = values[np.isfinite(values)]
            if len(values) < MIN_WINDOW:
                notes.append(f"{name}: only {len(values)} summaries, not tested")
                continue
            result = stats.ks_2samp(values, reference.attributions[name])
            raw.append(Test(name, "attribution", float(result.statistic), float(result.pvalue)))
    observed = np.bincount(labels, minlength=reference.n_classes)
    expected = np.bincount(reference.predicted.astype(np.int64), minlength=reference.n_classes)
    table = np.stack([observed, expected])
    table = table[:, table.sum(axis=0) > 0]  # a class neither predicted: no information
    prior = stats.chi2_contingency(table, correction=False)
    raw.append(Test("class_prior", "prior", float(prior.statistic), float(prior.pvalue)))
    drop = stats.mannwhitneyu(confidences, reference.confidences, alternative="less")
    raw.append(Test("confidence", "confidence", float(drop.statistic), float(drop.pvalue)))
    adjusted = stats.false_discovery_control([t.p_value for t in raw], method="bh")
    tests = [
        Test(t.name, t.kind, t.statistic, t.p_value, float(p), bool(p < alpha))
        for t, p in zip(raw, adjusted, strict=True)
    ]
    return DriftReport(
        window=n,
        alpha=alpha,
        tests=tests,
        reference_source=reference.source,
        window_mean_confidence=float(np.mean(confidences)),
        reference_mean_confidence=float(np.mean(reference.confidences)),
        notes=notes,
    )
