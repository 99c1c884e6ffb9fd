"""The pure parts of one monitoring check, given a window of traffic and a loaded model.

``fill_attributions`` computes the integrated-gradients summaries the service did not log
(with the champion model, in one batch); ``figure_png`` draws reference against window per
tested feature. The check itself (read the window, fetch the champion's reference from
MLflow, test, log, write the scores) is the use case ``clearsight.pipelines.monitor``.
"""

from __future__ import annotations

import io

import numpy as np

from clearsight.monitoring.drift import DriftReport
from clearsight.monitoring.features import (
    ATTRIBUTION_FEATURES,
    INPUT_FEATURES,
    integrated_gradients_features,
)
from clearsight.monitoring.reference import Reference
from clearsight.monitoring.traffic import TrafficWindow


def fill_attributions(window: TrafficWindow, model: object) -> dict[str, np.ndarray]:
    """The window's attribution summaries, computing those the service did not log."""
    values = {k: np.array(v, dtype=np.float64) for k, v in window.attributions.items()}
    missing = ~np.isfinite(values[ATTRIBUTION_FEATURES[0]])
    if missing.any():
        computed = integrated_gradients_features(model, window.pixels[missing])
        for name in ATTRIBUTION_FEATURES:
            values[name][missing] = computed[name]
    return values


def figure_png(
    reference: Reference,
    features: dict[str, np.ndarray],
    attributions: dict[str, np.ndarray] | None,
    report: DriftReport,
) -> bytes:
    """Histograms of reference vs window per tested feature, titled with the test's score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(n, reference.features[n], features[n]) for n in INPUT_FEATURES]
    if attributions is not None:
        panels += [(n, reference.attributions[n], attributions[n]) for n in ATTRIBUTION_FEATURES]
    panels.append(("confidence", reference.confidences, None))
    tests = {t.name: t for t in report.tests}
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, ref, win) in zip(axes.flat, panels, strict=False):
        ref = np.asarray(ref, dtype=np.float64)
        ax.hist(ref, bins=30, density=True, alpha=0.5, label="reference")
        if win is not None:
            ax.hist(
                np.asarray(win, dtype=np.float64), bins=30, density=True, alpha=0.5, label="window"
            )
        test = tests.get(name)
        flag = " DRIFT" if test and test.drifted else ""
        score = f" (-log10 p {test.score:.1f}{flag})" if test else ""
        ax.set_title(f"{name}{score}", fontsize=9, color="red" if flag else "black")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"{report.verdict}: {report.window} served images vs the training reference")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()
