"""The MLflow side of drift monitoring: a run's logged reference, and the monitor's run.

``logged_reference`` downloads the reference a training run logged
(``monitoring/reference.npz``), read by the monitor (``clearsight.pipelines.monitor``) and by
the service's bounds. ``log_report`` records one monitor run in the ``clearsight-monitoring``
experiment.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from clearsight.config import Settings
from clearsight.monitoring.drift import DriftReport
from clearsight.monitoring.reference import ARTIFACT, Reference
from clearsight.tracking.registry import load_run_file
from clearsight.tracking.store import configure


def logged_reference(settings: Settings, run_id: str) -> Reference | None:
    """The training reference a run logged (``monitoring/reference.npz``); None for runs from
    before references were logged. Read by the monitor and by the service's bounds."""
    with tempfile.TemporaryDirectory(prefix="clearsight-reference-") as tmp:
        logged = load_run_file(settings, run_id, ARTIFACT, Path(tmp))
        return Reference.load(logged) if logged is not None else None


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
        run_id: str = run.info.run_id
        return run_id
