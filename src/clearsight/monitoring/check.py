"""One monitoring check: the latest window of served traffic against the champion's reference.

``run_monitor`` is what ``clearsight monitor`` and the ``monitor`` Prefect flow call: read the
newest ``window`` records of the traffic log, fill in the integrated-gradients summaries the
service did not compute (with the champion model, in one batch), test for drift
(``clearsight.monitoring.drift``), log the report to MLflow, and write the latest scores to
``<traffic_dir>/drift.json`` for the service's ``/metrics``. What to do about drift (retrain
or alert) is the caller's decision; ``newer_labelled_data`` tells it whether a retrain could
help.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsight.config import Settings
from clearsight.errors import ClearsightError, MonitorError
from clearsight.monitoring.drift import MIN_WINDOW, DriftReport, compare
from clearsight.monitoring.features import (
    ATTRIBUTION_FEATURES,
    INPUT_FEATURES,
    integrated_gradients_features,
)
from clearsight.monitoring.reference import Reference
from clearsight.monitoring.traffic import TrafficWindow, read_window

SCORES_FILE = "drift.json"


@dataclass(frozen=True)
class MonitorOutcome:
    report: DriftReport
    version: str
    mlflow_run_id: str | None
    scores_path: Path
    newer_data: str | None  # why a retrain could help, None when no newer labelled data

    def to_dict(self) -> dict[str, object]:
        return self.report.to_dict() | {
            "model_version": self.version,
            "mlflow_run_id": self.mlflow_run_id,
            "scores_path": str(self.scores_path),
            "newer_data": self.newer_data,
        }


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


def write_scores(folder: Path, report: DriftReport, version: str, run_id: str | None) -> Path:
    """The latest scores as ``drift.json`` in the traffic folder, atomically (temporary file,
    then rename); the service reads it when ``/metrics`` is scraped."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / SCORES_FILE
    body = {
        "model_version": version,
        "mlflow_run_id": run_id,
        "verdict": report.verdict,
        "reasons": report.reasons,
        "scores": report.scores(),
    }
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".drift-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle, indent=2)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def newer_labelled_data(settings: Settings) -> str | None:
    """Why a retrain could help now (labelled data newer than the champion's), or None.

    Two kinds count: a newest data version other than the one the champion was trained on
    (``clearsight.tracking.data_lineage.data_freshness``: accepted batches, feedback
    included), and incoming batches not yet ingested (``clearsight.data.incoming.new_batches``),
    which a retrain ingests first. A champion that names no data version (trained before data
    versions existed) counts only the incoming batches: retraining it on the same data would
    not answer drift.
    """
    from clearsight.data.incoming import new_batches

    reasons = []
    try:
        from clearsight.tracking.data_lineage import data_freshness

        freshness = data_freshness(settings)
        if freshness.newest and freshness.champion and freshness.newest != freshness.champion:
            reasons.append(freshness.reason())
    except (ImportError, OSError, ValueError, ClearsightError):
        pass  # no readable version store (yet): incoming batches still count below
    assert settings.incoming_dir is not None
    batches = new_batches(settings.incoming_dir)
    if batches:
        reasons.append(f"{len(batches)} new incoming batch(es) in {settings.incoming_dir}")
    return "; ".join(reasons) or None


def run_monitor(
    settings: Settings,
    window: int | None = None,
    ref: str = "champion",
    *,
    log_to_mlflow: bool = True,
) -> MonitorOutcome:
    """Test the newest ``window`` records (settings' default when None) against ``ref``."""
    from clearsight.tracking.monitoring import champion_reference, log_report

    size = window or settings.monitoring.window
    assert settings.traffic_dir is not None
    traffic = read_window(settings.traffic_dir, size)
    if len(traffic) < MIN_WINDOW:
        raise MonitorError(
            f"{len(traffic)} served images logged in {settings.traffic_dir}; "
            f"at least {MIN_WINDOW} are needed to test for drift"
        )
    champion = champion_reference(settings, ref)
    attributions = (
        fill_attributions(traffic, champion.model) if settings.monitoring.attributions else None
    )
    report = compare(
        champion.reference,
        traffic.features,
        traffic.labels,
        traffic.confidences,
        attributions,
        alpha=settings.monitoring.alpha,
    )
    versions = sorted(set(map(str, traffic.model_versions)))
    if versions != [champion.version]:
        report.notes.append(
            f"window served by version(s) {', '.join(versions)}; compared with v{champion.version}"
        )
    if champion.reference.source.startswith("computed"):
        report.notes.append(champion.reference.source)
    run_id = None
    if log_to_mlflow:
        png = figure_png(champion.reference, traffic.features, attributions, report)
        run_id = log_report(settings, report, champion.version, png, {"model_ref": ref})
    scores = write_scores(settings.traffic_dir, report, champion.version, run_id)
    newer = newer_labelled_data(settings) if report.drifted else None
    return MonitorOutcome(report, champion.version, run_id, scores, newer)
