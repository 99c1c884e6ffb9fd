"""One training run, end to end: train, evaluate on the holdout, explain, log, register.

Called by the CLI and the Prefect ``train_model`` task with data that already passed the gate.
Returns plain values (ids, numbers, paths), never framework handles.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow

from clearsight import figures, tracking
from clearsight.config import Settings
from clearsight.data_gate import GatedData
from clearsight.evaluation import Evaluation, evaluate
from clearsight.model_card import render_model_card
from clearsight.training import TrainResult, train


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

    def ui_hint(self) -> str:
        return f"clearsight ui  # then open experiment {self.experiment_id}, run {self.run_id}"


def run_params(settings: Settings, gated: GatedData, fit: dict[str, Any]) -> dict[str, Any]:
    """Every setting that shaped the model, flat, for ``mlflow.log_params``."""
    params = {f"train.{k}": v for k, v in settings.train.model_dump().items()}
    data = settings.data.model_dump(exclude={"path"})
    params |= {f"data.{k}": v for k, v in data.items()}
    params["data.path"] = str(settings.data.path) if settings.data.path else ""
    params |= {f"fit.{k}": v for k, v in fit.items()}
    params |= {f"n_{name}": len(ds) for name, ds in gated.splits.items()}
    return params


def run_tags(settings: Settings, gated: GatedData, result: TrainResult) -> dict[str, str]:
    assert settings.home is not None
    tags = {
        "keras_backend": result.device.backend,
        "device": result.device.name,
        "device_kind": result.device.kind,
        "data_source": gated.source.origin,
        "data_contract_hash": gated.report.contract_hash,
        "holdout_frozen": str(gated.splits.holdout_frozen).lower(),
    }
    tags |= {f"data_digest.{name}": digest for name, digest in gated.splits.digests().items()}
    tags |= tracking.git_state(settings.home)
    tags |= tracking.package_versions()
    return tags


def log_evaluation_artifacts(
    evaluation: Evaluation, result: TrainResult, holdout_pixels: Any, folder: Path
) -> None:
    """Confusion matrix, per-class table, learning curves, mistakes, filters: stable paths."""
    mlflow.log_figure(
        figures.confusion_matrix_figure(evaluation), "evaluation/confusion_matrix.png"
    )
    mlflow.log_figure(
        figures.misclassified_gallery(holdout_pixels, evaluation), "evaluation/misclassified.png"
    )
    mlflow.log_figure(
        figures.learning_curves_figure(result.history), "training/learning_curves.png"
    )
    for layer in ("conv1", "conv2"):
        mlflow.log_figure(figures.filter_grid(result.model, layer), f"model/filters_{layer}.png")
    table = folder / "per_class_metrics.csv"
    rows = ["class,precision,recall,support"]
    support = evaluation.confusion.sum(axis=1)
    for c, (p, r) in enumerate(
        zip(evaluation.per_class_precision, evaluation.per_class_recall, strict=True)
    ):
        rows.append(f"{c},{p:.4f},{r:.4f},{support[c]}")
    table.write_text("\n".join(rows) + "\n")
    mlflow.log_artifact(str(table), "evaluation")


def run_training(settings: Settings, gated: GatedData, verbose: int | str = "auto") -> TrainingRun:
    """Train on the gated splits and log a complete, comparable MLflow run."""
    experiment_id = tracking.configure(settings)
    uri = tracking.tracking_uri(settings)
    if settings.tracking.log_system_metrics:
        tracking.enable_fast_system_metrics()
    splits = gated.splits
    with (
        mlflow.start_run(
            experiment_id=experiment_id,
            log_system_metrics=settings.tracking.log_system_metrics,
        ) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        tracking.log_split_inputs(splits)
        (folder / "data").mkdir()
        report = gated.report.to_dict()
        (folder / "data" / "validation.json").write_text(json.dumps(report, indent=2))
        mlflow.log_artifact(str(folder / "data" / "validation.json"), "data")
        result = train(
            splits.train.pixels(),
            splits.train.labels,
            splits.validation.pixels(),
            splits.validation.labels,
            settings.train,
            callbacks=[tracking.EpochMetricsLogger()],
            verbose=verbose,
        )
        params = run_params(settings, gated, result.fit_params)
        mlflow.log_params(params)
        tags = run_tags(settings, gated, result)
        mlflow.set_tags(tags)
        holdout_pixels = splits.holdout.pixels()
        evaluation = evaluate(result.model, holdout_pixels, splits.holdout.labels)
        metrics = evaluation.metrics() | {
            "data_validation_success": 1.0,
            "epochs_run": float(result.epochs_run),
            "first_epoch_seconds": result.first_epoch_seconds,
            "steady_epoch_seconds": result.steady_epoch_seconds,
            "train_images_per_second": len(splits.train) / result.steady_epoch_seconds,
            "model_parameters": float(result.model.count_params()),
        }
        log_evaluation_artifacts(evaluation, result, holdout_pixels, folder)
        explanation_metrics: dict[str, float] = {}
        if settings.tracking.log_explanations:
            from clearsight.explanation_artifacts import write_explanation_artifacts

            explanation_metrics = write_explanation_artifacts(
                result.model, splits.holdout, splits.train, folder / "explain"
            )
            mlflow.log_artifacts(str(folder / "explain"))
            metrics |= explanation_metrics
        mlflow.log_metrics(metrics)
        info = tracking.log_keras_model(result.model, settings.tracking.registered_model)
        example = {"inputs": (holdout_pixels[:1, ..., None] / 255.0).round(4).tolist()}
        mlflow.log_dict(example, "model_input_example.json")
        card = render_model_card(
            name=settings.tracking.registered_model,
            run_id=run.info.run_id,
            splits=splits,
            evaluation=evaluation,
            params=params,
            tags=tags,
        )
        mlflow.log_text(card, "model_card.md")
    version = getattr(info, "registered_model_version", None)
    return TrainingRun(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        tracking_uri=uri,
        model_uri=info.model_uri,
        registered_model=settings.tracking.registered_model,
        version=str(version) if version is not None else None,
        metrics=metrics,
    )
