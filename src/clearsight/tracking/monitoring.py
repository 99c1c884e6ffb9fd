"""The MLflow side of drift monitoring: a model version's reference, and the monitor's run.

``champion_reference`` downloads the reference a training run logged
(``monitoring/reference.npz``); for a version trained before runs logged one, it loads the
model and computes the reference from the frozen holdout instead, saying so in ``source``
(then input features, predictions and attributions all come from holdout images, which the
model never trained on, so the comparison stays fair, only the sample is smaller).
``log_report`` records one monitor run in the ``clearsight-monitoring`` experiment.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from clearsight.config import Settings
from clearsight.data.splits import HoldoutStore
from clearsight.errors import RegistryError
from clearsight.monitoring.drift import DriftReport
from clearsight.monitoring.reference import ARTIFACT, Reference, compute_reference
from clearsight.tracking.registry import (
    describe_version,
    load_model_ref,
    load_run_file,
)
from clearsight.tracking.store import configure


@dataclass
class VersionReference:
    """A registered version, its model, its reference and its run's tags."""

    version: str
    run_id: str | None
    run_tags: dict[str, str]
    reference: Reference
    model: object


def champion_reference(settings: Settings, ref: str = "champion") -> VersionReference:
    """The model and training reference of ``ref`` (an alias or a version number)."""
    info = describe_version(settings, ref)
    with tempfile.TemporaryDirectory(prefix="clearsight-monitor-") as tmp:
        model, version = load_model_ref(settings, info.version, Path(tmp) / "model")
    reference = logged_reference(settings, info.run_id) if info.run_id else None
    if reference is None:
        reference = holdout_reference(settings, model, version)
    return VersionReference(version, info.run_id, info.run_tags, reference, model)


def logged_reference(settings: Settings, run_id: str) -> Reference | None:
    """The training reference a run logged (``monitoring/reference.npz``); None for runs from
    before references were logged. Read by the monitor and by the service's bounds."""
    with tempfile.TemporaryDirectory(prefix="clearsight-reference-") as tmp:
        logged = load_run_file(settings, run_id, ARTIFACT, Path(tmp))
        return Reference.load(logged) if logged is not None else None


def holdout_reference(settings: Settings, model: object, version: str) -> Reference:
    """A reference from the frozen holdout, for versions whose run logged none."""
    assert settings.holdout_dir is not None
    store = HoldoutStore(settings.holdout_dir)
    if not store.exists():
        raise RegistryError(
            f"v{version} logged no {ARTIFACT} and there is no frozen holdout in "
            f"{settings.holdout_dir} to compute one from; retrain once"
        )
    pixels = store.load().pixels().astype(np.float32) / 255.0
    half = len(pixels) // 2
    return compute_reference(
        model,
        pixels[:half],
        pixels[half:],
        f"computed by the monitor from the frozen holdout: v{version}'s run logged no {ARTIFACT}",
    )


def log_report(
    settings: Settings,
    report: DriftReport,
    version: str,
    figure_png: bytes,
    tags: dict[str, str],
) -> str:
    """One run in the monitoring experiment: scores as metrics, the figure, the report."""
    experiment_id = configure(
        settings.override("tracking", experiment=settings.monitoring.experiment)
    )
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"monitor-v{version}-{report.verdict.replace(' ', '-')}",
    ) as run:
        mlflow.log_params(
            {"model_version": version, "window": report.window, "alpha": report.alpha}
        )
        mlflow.log_metrics(report.scores())
        mlflow.set_tags(tags | {"verdict": report.verdict, "model_version": version})
        mlflow.log_dict(report.to_dict(), "monitoring/report.json")
        with tempfile.TemporaryDirectory() as tmp:
            figure = Path(tmp) / "drift.png"
            figure.write_bytes(figure_png)
            mlflow.log_artifact(str(figure), "monitoring")
        summary = "\n".join(
            [f"**{report.verdict}** on {report.window} records (alpha {report.alpha:g})"]
            + [f"- {r}" for r in report.reasons]
        )
        mlflow.set_tag("mlflow.note.content", summary)
        return run.info.run_id
