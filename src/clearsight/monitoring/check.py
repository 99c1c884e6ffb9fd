"""The pure parts of one monitoring check, given a window of traffic and a loaded model.

``served_attributions`` computes the window's integrated-gradients summaries, each with the
model of the version that served the image and the fixed parameters ``features.MONITOR_IG``;
``figure_png`` draws reference against window per tested feature. The check itself (read the
window, load the serving versions and the champion's reference from MLflow, test, log, write
the scores) is the use case ``clearsight.pipelines.monitor``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

from clearsight.monitoring.drift import DriftReport
from clearsight.monitoring.features import ATTRIBUTION_FEATURES, integrated_gradients_features
from clearsight.monitoring.reference import Reference
from clearsight.monitoring.traffic import TrafficWindow

ServingKey = tuple[str, str]  # (model version, training run id; "" when not logged)


def serving_keys(window: TrafficWindow) -> dict[ServingKey, np.ndarray]:
    """The versions that served the window, each with a mask of its records."""
    pairs = list(zip(map(str, window.model_versions), map(str, window.run_ids), strict=True))
    return {key: np.array([pair == key for pair in pairs]) for key in dict.fromkeys(pairs)}


def served_attributions(
    window: TrafficWindow, models: Mapping[ServingKey, object | None]
) -> dict[str, np.ndarray]:
    """Attribution summaries of every record, each computed with the model of the version
    that served it (``models``, keyed as ``serving_keys``); NaN for records whose version has
    no model there, which the drift test then leaves out."""
    values = {k: np.full(len(window), np.nan) for k in ATTRIBUTION_FEATURES}
    for key, rows in serving_keys(window).items():
        model = models.get(key)
        if model is None:
            continue
        computed = integrated_gradients_features(model, window.pixels[rows])
        for name in ATTRIBUTION_FEATURES:
            values[name][rows] = computed[name]
    return values


def figure_png(
    reference: Reference,
    features: dict[str, np.ndarray],
    attributions: dict[str, np.ndarray] | None,
    report: DriftReport,
) -> bytes:
    """Histograms of reference vs window per tested feature (per channel for colour),
    titled with the test's score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, np.ndarray, np.ndarray | None]] = [
        (n, reference.features[n], features.get(n)) for n in reference.feature_names
    ]
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
            win = np.asarray(win, dtype=np.float64)
            win = win[np.isfinite(win)]  # records whose serving version could not be loaded
            if len(win):
                ax.hist(win, bins=30, density=True, alpha=0.5, label="window")
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
