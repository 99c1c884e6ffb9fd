"""One training run, end to end: train, evaluate on the holdout, explain, log, register.

Called by the CLI and the Prefect ``train-model`` task with data that already passed the gate.
The model side (``clearsight.model``) and the files a person reads (``clearsight.reporting``)
know nothing of MLflow; this module logs what they return. Returns plain values (ids,
numbers, paths), never framework handles.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from clearsight.config import Settings
from clearsight.data import Splits, holdout_panel
from clearsight.data.gate import GatedData
from clearsight.digits import INPUT_SHAPE, N_CLASSES, to_model_input
from clearsight.model.evaluation import evaluate
from clearsight.model.fitting import TrainResult, train
from clearsight.packages import MODEL_RUNTIME, for_backend, pinned
from clearsight.reporting.model_card import render_model_card
from clearsight.reporting.run_artifacts import (
    write_evaluation_artifacts,
    write_explanation_artifacts,
)
from clearsight.tracking.store import (
    configure,
    enable_fast_system_metrics,
    git_state,
    package_versions,
    tracking_uri,
)


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
    params["explain.panel_size"] = settings.explain.panel_size
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
    tags |= git_state(settings.home)
    tags |= package_versions()
    return tags


def log_split_inputs(splits: Splits) -> None:
    """``mlflow.log_input`` for train, validation and holdout, named by split, with digests."""
    contexts = {"train": "training", "validation": "validation", "holdout": "evaluation"}
    for name, ds in splits.items():
        dataset = mlflow.data.from_numpy(
            features=ds.pixels().reshape(len(ds), -1),
            targets=ds.labels,
            name=name,
            digest=ds.digest[:16],
        )
        tags = {"sha256": ds.digest, "origin": ds.origin}
        mlflow.log_input(dataset, context=contexts[name], tags=tags)


class EpochMetricsLogger(keras.callbacks.Callback):
    """Per-epoch loss and accuracy (train and validation) as MLflow metric steps."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs:
            mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1)


def model_signature() -> Any:
    """float32 (-1, 28, 28, 1) in, float32 (-1, 10) probabilities out."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *INPUT_SHAPE), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_CLASSES), "probabilities")]),
    )


def log_keras_model(model: keras.Model, registered_name: str | None) -> Any:
    """Log the model (signature, explicit pinned requirements: inferring them costs ~18 s)
    and register a new version."""
    import mlflow.keras

    backend = keras.backend.backend()
    return mlflow.keras.log_model(
        model,
        name="model",
        signature=model_signature(),
        pip_requirements=pinned(for_backend(MODEL_RUNTIME, backend)),
        registered_model_name=registered_name,
        metadata={"keras_backend": backend, "input_scale": "0-1"},
    )


def run_training(settings: Settings, gated: GatedData, verbose: int | str = "auto") -> TrainingRun:
    """Train on the gated splits and log a complete, comparable MLflow run."""
    experiment_id = configure(settings)
    uri = tracking_uri(settings)
    if settings.tracking.log_system_metrics:
        enable_fast_system_metrics()
    splits = gated.splits
    with (
        mlflow.start_run(
            experiment_id=experiment_id,
            log_system_metrics=settings.tracking.log_system_metrics,
        ) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        log_split_inputs(splits)
        (folder / "data").mkdir()
        report = gated.report.to_dict()
        (folder / "data" / "validation.json").write_text(json.dumps(report, indent=2))
        result = train(
            splits.train.pixels(),
            splits.train.labels,
            splits.validation.pixels(),
            splits.validation.labels,
            settings.train,
            callbacks=[EpochMetricsLogger()],
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
        write_evaluation_artifacts(result.model, evaluation, result.history, holdout_pixels, folder)
        explanation_metrics: dict[str, float] = {}
        if settings.tracking.log_explanations:
            panel = holdout_panel(splits.holdout, settings.explain.panel_size)
            explanation_metrics = write_explanation_artifacts(
                result.model, panel, splits.train, folder
            )
            metrics |= explanation_metrics
        mlflow.log_artifacts(str(folder))
        mlflow.log_metrics(metrics)
        info = log_keras_model(result.model, settings.tracking.registered_model)
        example = {"inputs": to_model_input(holdout_pixels[:1]).round(4).tolist()}
        mlflow.log_dict(example, "model_input_example.json")
        card = render_model_card(
            name=settings.tracking.registered_model,
            run_id=run.info.run_id,
            splits=splits,
            evaluation=evaluation,
            params=params,
            tags=tags,
            explanation_metrics=explanation_metrics,
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
