"""Train and assess: one complete, comparable training run from data that passed the gate.

Fit (``clearsight.model``), evaluate on the frozen holdout, draw the evaluation figures and
the acceptance panel, write the drift reference (``clearsight.monitoring.reference``), explain
the holdout panel and measure the explanations, render the model card, and hand each piece to
``clearsight.tracking.run`` to log. Called by ``clearsight retrain`` and the Prefect
``train-model`` task. Returns plain values (ids, numbers), never framework handles.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from clearsight.config import Settings
from clearsight.data import holdout_panel
from clearsight.data.gate import GatedData
from clearsight.model.evaluation import evaluate
from clearsight.model.fitting import train
from clearsight.monitoring.reference import write_reference
from clearsight.quality_metrics import QualityMetrics
from clearsight.reporting.model_card import render_model_card
from clearsight.reporting.run_artifacts import (
    write_acceptance_panel,
    write_evaluation_artifacts,
    write_explanation_artifacts,
)
from clearsight.task import ImageTask, to_model_input
from clearsight.tracking import run as tracking

Stage = Callable[[str], AbstractContextManager[object]]


def no_display(text: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class TrainingRun:
    """What a finished run produced, as plain values."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    model_uri: str
    registered_model: str | None
    version: str | None
    metrics: dict[str, float] = field(default_factory=dict)


def train_and_assess(
    settings: Settings,
    gated: GatedData,
    verbose: int | str = "auto",
    stage: Stage = no_display,
) -> TrainingRun:
    """Train on the gated splits and log a complete, comparable MLflow run.

    ``stage(text)`` wraps each step after training (a CLI passes a spinner; Keras shows its
    own progress bar while fitting).

    The model version is registered last, after every artifact and metric is logged, so a
    run that fails anywhere (and ends FAILED) leaves no registered version behind, and a retry
    registers exactly one. Should the registration itself or the run's end fail, the version
    of this run is deleted again (``tracking.run.training_run``).
    """
    splits = gated.splits
    task: ImageTask = gated.task  # the shape and class names the gate decided for this data
    with tracking.training_run(settings, gated) as run, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tracking.log_data(gated)
        (folder / "data").mkdir()
        report = gated.report.to_dict()
        (folder / "data" / "validation.json").write_text(json.dumps(report, indent=2))
        result = train(
            splits.train.pixels(),
            splits.train.labels,
            splits.validation.pixels(),
            splits.validation.labels,
            settings.train,
            callbacks=[tracking.EpochMetricsLogger()],
            verbose=verbose,
            task=task,
        )
        params = tracking.run_params(settings, gated, result.fit_params, task)
        tags = tracking.run_tags(settings, gated, result, task)
        tracking.log_setup(params, tags)
        holdout_pixels = splits.holdout.pixels()
        with stage("evaluating on the frozen holdout"):
            evaluation = evaluate(result.model, holdout_pixels, splits.holdout.labels)
        metrics = evaluation.metrics() | {
            "data_validation_success": 1.0,
            "epochs_run": float(result.epochs_run),
            "first_epoch_seconds": result.first_epoch_seconds,
            "steady_epoch_seconds": result.steady_epoch_seconds,
            "train_images_per_second": len(splits.train) / result.steady_epoch_seconds,
            "model_parameters": float(result.model.count_params()),
        }
        with stage("drawing the evaluation figures"):
            write_evaluation_artifacts(
                result.model, evaluation, result.history, holdout_pixels, folder, task
            )
            panel = holdout_panel(splits.holdout, settings.explain.panel_size)
            write_acceptance_panel(result.model, panel, folder)
            write_reference(result.model, splits.train.pixels(), splits.validation.pixels(), folder)
        quality: QualityMetrics | None = None
        if settings.tracking.log_explanations:
            with stage("explaining the holdout panel (SHAP, activations, quality)"):
                quality = write_explanation_artifacts(result.model, panel, splits.train, folder)
            metrics |= quality.flat()
        with stage("logging the run to MLflow"):
            description = tracking.run_description(gated, metrics, result.epochs_run)
            model_uri = tracking.log_outcome(folder, metrics, description, result.model, task)
        example = {"inputs": to_model_input(holdout_pixels[:1]).round(4).tolist()}
        tracking.log_json(example, "model_input_example.json")
        card = render_model_card(
            name=settings.tracking.registered_model,
            run_id=run.run_id,
            splits=splits,
            evaluation=evaluation,
            params=params,
            tags=tags,
            explanation_quality=quality,
            task=task,
        )
        tracking.log_text(card, "model_card.md")
        version = tracking.register_version(model_uri, run.registered_model, task)
    return TrainingRun(
        run_id=run.run_id,
        experiment_id=run.experiment_id,
        tracking_uri=run.tracking_uri,
        model_uri=model_uri,
        registered_model=run.registered_model,
        version=version,
        metrics=metrics,
    )
