"""Monitor: the latest window of served traffic against the champion's training reference.

``run_monitor`` is what ``clearsight monitor`` and the ``monitor`` Prefect flow call: read the
newest ``window`` records of the traffic log, fetch the champion and its reference from the
registry, compute the window's integrated-gradients summaries with the fixed parameters
``MONITOR_IG`` and the model of the version that served each image
(``clearsight.pipelines.serving_models``), test for drift (``clearsight.monitoring.drift``),
log the report to MLflow, and write the latest scores
(``clearsight.monitoring.scores.DriftScores``) for the service's ``/metrics``. What to do about
drift (retrain or alert) is the caller's decision; ``newer_labelled_data`` tells it whether a
retrain could help.

A version trained before runs logged a reference gets one computed from the frozen holdout
instead, saying so in ``source`` (input features, predictions and attributions then all come
from holdout images, which the model never trained on, so the comparison stays fair, only the
sample is smaller).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsight.config import Settings
from clearsight.data.splits import HoldoutStore
from clearsight.errors import MonitorError, RegistryError
from clearsight.monitoring.check import figure_png, served_attributions
from clearsight.monitoring.drift import MIN_WINDOW, DriftReport, compare
from clearsight.monitoring.reference import ARTIFACT, Reference, compute_reference
from clearsight.monitoring.scores import DriftScores
from clearsight.monitoring.traffic import read_window
from clearsight.pipelines.serving_models import serving_models
from clearsight.promotion import holdout_of_other_task, task_summary
from clearsight.task import DIGITS, ImageTask


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


@dataclass
class VersionReference:
    """A registered version, its model, its reference and its run's tags."""

    version: str
    run_id: str | None
    run_tags: dict[str, str]
    reference: Reference
    model: object
    task: ImageTask = DIGITS  # what the model answers (its registry metadata)


def champion_reference(settings: Settings, ref: str = "champion") -> VersionReference:
    """The model and training reference of ``ref`` (an alias or a version number)."""
    from clearsight.tracking.monitoring import logged_reference
    from clearsight.tracking.registry import describe_version, load_model_ref, load_task

    info = describe_version(settings, ref)
    with tempfile.TemporaryDirectory(prefix="clearsight-monitor-") as tmp:
        model, version = load_model_ref(settings, info.version, Path(tmp) / "model")
    task = load_task(settings.tracking.registered_model, version)
    reference = logged_reference(settings, info.run_id) if info.run_id else None
    if reference is None:
        reference = holdout_reference(settings, model, version, task)
    return VersionReference(version, info.run_id, info.run_tags, reference, model, task)


def holdout_reference(
    settings: Settings, model: object, version: str, task: ImageTask
) -> Reference:
    """A reference from the frozen holdout, for versions whose run logged none.

    Only a holdout of the model's own task will do: another dataset's images would not fit the
    model, or would make every input look drifted.
    """
    assert settings.holdout_dir is not None
    store = HoldoutStore(settings.holdout_dir)
    if not store.exists():
        raise RegistryError(
            f"v{version} logged no {ARTIFACT} and there is no frozen holdout in "
            f"{settings.holdout_dir} to compute one from; retrain once"
        )
    holdout = store.load()
    if (held := holdout_of_other_task(task, holdout)) is not None:
        raise RegistryError(
            f"v{version} logged no {ARTIFACT} and the frozen holdout in {settings.holdout_dir} "
            f"is another task's ({task_summary(held)}; the model takes {task_summary(task)}): "
            "monitor it with the settings of the dataset it was trained on"
        )
    pixels = holdout.pixels().astype(np.float32) / 255.0
    half = len(pixels) // 2
    return compute_reference(
        model,
        pixels[:half],
        pixels[half:],
        f"computed by the monitor from the frozen holdout: v{version}'s run logged no {ARTIFACT}",
    )


def newer_labelled_data(settings: Settings) -> str | None:
    """Why a retrain could help now, or None: a newest data version that no finished training
    run has seen (accepted batches, feedback included; a lost challenger's data does not
    count), or incoming batches not yet ingested, which a retrain ingests first
    (``clearsight.pipelines.retrain_trigger.labelled_data``)."""
    from clearsight.pipelines.retrain_trigger import labelled_data

    return labelled_data(settings).why()


def run_monitor(
    settings: Settings,
    window: int | None = None,
    ref: str = "champion",
    *,
    log_to_mlflow: bool = True,
) -> MonitorOutcome:
    """Test the newest ``window`` records (settings' default when None) against ``ref``."""
    from clearsight.tracking.monitoring import log_report

    size = window or settings.monitoring.window
    assert settings.traffic_dir is not None
    traffic = read_window(settings.traffic_dir, size)
    if len(traffic) < MIN_WINDOW:
        raise MonitorError(
            f"{len(traffic)} served images logged in {settings.traffic_dir}; "
            f"at least {MIN_WINDOW} are needed to test for drift"
        )
    champion = champion_reference(settings, ref)
    served = (
        serving_models(settings, traffic, champion) if settings.monitoring.attributions else None
    )
    attributions = served_attributions(traffic, served.models) if served else None
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
    report.notes.extend(served.notes if served else [])
    if champion.reference.source.startswith("computed"):
        report.notes.append(champion.reference.source)
    run_id = None
    if log_to_mlflow:
        png = figure_png(champion.reference, traffic.features, attributions, report)
        run_id = log_report(settings, report, champion.version, png, {"model_ref": ref})
    scores = DriftScores.from_report(report, champion.version, run_id)
    path = scores.write(settings.traffic_dir)
    newer = newer_labelled_data(settings) if report.drifted else None
    return MonitorOutcome(report, champion.version, run_id, path, newer)
