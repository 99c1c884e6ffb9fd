"""One training run, end to end: train, evaluate on the holdout, explain, log, register.

Called by the CLI and the Prefect ``train-model`` task with data that already passed the gate.
The model side (``clearsight.model``) and the files a person reads (``clearsight.reporting``)
know nothing of MLflow; this module logs what they return. Returns plain values (ids,
numbers, paths), never framework handles.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
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
from clearsight.monitoring.reference import write_reference
from clearsight.packages import MODEL_RUNTIME, for_backend, pinned
from clearsight.reporting.model_card import render_model_card
from clearsight.reporting.run_artifacts import (
    write_acceptance_panel,
    write_evaluation_artifacts,
    write_explanation_artifacts,
)
from clearsight.tracking.lifecycle import owner_tags, reap_orphaned_runs, terminate_gracefully
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


def log_data_version(gated: GatedData) -> None:
    """The exact data version trained on: an input with its sha256 and a ``data_version`` tag
    (what ``retrain --only-if-new-data`` compares with the newest version)."""
    version, data = gated.data_version, gated.source
    if version is None:
        return
    dataset = mlflow.data.from_numpy(
        features=data.pixels().reshape(len(data), -1),
        targets=data.labels,
        name=version.id,
        digest=version.digest[:16],
    )
    tags = {"sha256": version.digest, "data_version": version.id, "parent": version.parent or ""}
    mlflow.log_input(dataset, context="data-version", tags=tags)
    mlflow.set_tag("data_version", version.id)


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


def log_keras_model(model: keras.Model, registered_name: str | None = None) -> Any:
    """Log the model (signature, explicit pinned requirements: inferring them costs ~18 s),
    and register a new version only when ``registered_name`` is given: ``run_training`` logs
    without it and registers with ``register_version`` as the run's very last step."""
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


def register_version(model_uri: str, registered_name: str | None) -> str | None:
    """Register the logged model as a new version (the run is taken from the logged model)."""
    if registered_name is None:
        return None
    return str(mlflow.register_model(model_uri, registered_name).version)


@dataclass
class _Guard:
    run_id: str | None = None


@contextlib.contextmanager
def discarded_on_failure(registered_name: str | None) -> Iterator[_Guard]:
    """Around a whole run (its end included): on any failure, delete every version registered
    from ``guard.run_id`` and make sure the run is not left RUNNING. Best effort (the store
    may be what failed); the original error propagates."""
    guard = _Guard()
    try:
        yield guard
    except BaseException as err:
        if guard.run_id is not None:
            # A signal (SIGTERM, Ctrl-C, Prefect's termination) killed it; anything else failed.
            status = "FAILED" if isinstance(err, Exception) else "KILLED"
            discard_run(guard.run_id, registered_name, status)
        raise


def discard_run(run_id: str, registered_name: str | None, status: str = "FAILED") -> None:
    """No version of this run stays registered, and the run ends with ``status`` (FAILED or
    KILLED) if still RUNNING; KILLED also replaces the FAILED that MLflow's ``with`` block
    sets on its way out, so a signal is told apart from an error in the run list."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    with contextlib.suppress(Exception):
        if registered_name is not None:
            for mv in client.search_model_versions(f"run_id = '{run_id}'"):
                if mv.name == registered_name:
                    client.delete_model_version(mv.name, mv.version)
    with contextlib.suppress(Exception):
        current = client.get_run(run_id).info.status
        if current == "RUNNING" or (status == "KILLED" and current == "FAILED"):
            client.set_terminated(run_id, status)


Stage = Callable[[str], AbstractContextManager[object]]


def no_display(text: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


def run_name(settings: Settings, gated: GatedData) -> str:
    """What the run is, readable in the MLflow run list: backend, data, seed.

    ``tensorflow-embedded-3f2a9c1e-seed42``: the Keras backend, the data source and the first
    characters of the training split's sha256 (same data, same name part), and the seed.
    """
    digest = gated.splits.train.digest[:8]
    return f"{keras.backend.backend()}-{settings.data.source}-{digest}-seed{settings.train.seed}"


def describe(run_id: str, markdown: str) -> None:
    """The run's description in the MLflow UI (the ``mlflow.note.content`` tag)."""
    from mlflow.tracking import MlflowClient

    MlflowClient().set_tag(run_id, "mlflow.note.content", markdown)


def run_description(gated: GatedData, metrics: dict[str, float], epochs: int) -> str:
    """Until a retrain summary replaces it: what was trained on what, and how well."""
    splits = gated.splits
    return (
        f"Trained {epochs} epochs on {len(splits.train)} images of {gated.source.origin}"
        f"{f' (data version {gated.data_version.id})' if gated.data_version else ''}; "
        f"holdout accuracy {metrics['holdout_accuracy']:.4f} on {len(splits.holdout)} frozen "
        f"holdout images (macro F1 {metrics['holdout_macro_f1']:.4f}). See model_card.md."
    )


def run_training(
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
    of this run is deleted again (``discard_run``).
    """
    experiment_id = configure(settings)
    uri = tracking_uri(settings)
    registered_name = settings.tracking.registered_model
    if settings.tracking.log_system_metrics:
        enable_fast_system_metrics()
    splits = gated.splits
    reap_orphaned_runs(experiment_id, registered_name)  # runs of killed processes end KILLED
    with (
        terminate_gracefully(),  # SIGTERM: an exception the cleanup below sees
        discarded_on_failure(registered_name) as guard,
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name(settings, gated),
            log_system_metrics=settings.tracking.log_system_metrics,
            tags=owner_tags(),
        ) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        guard.run_id = run.info.run_id
        folder = Path(tmp)
        log_split_inputs(splits)
        log_data_version(gated)
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
                result.model, evaluation, result.history, holdout_pixels, folder
            )
            panel = holdout_panel(splits.holdout, settings.explain.panel_size)
            write_acceptance_panel(result.model, panel, folder)
            write_reference(result.model, splits.train.pixels(), splits.validation.pixels(), folder)
        explanation_metrics: dict[str, float] = {}
        if settings.tracking.log_explanations:
            with stage("explaining the holdout panel (SHAP, activations, quality)"):
                explanation_metrics = write_explanation_artifacts(
                    result.model, panel, splits.train, folder
                )
            metrics |= explanation_metrics
        with stage("logging the run to MLflow"):
            mlflow.log_artifacts(str(folder))
            mlflow.log_metrics(metrics)
            mlflow.set_tag(
                "mlflow.note.content", run_description(gated, metrics, result.epochs_run)
            )
            info = log_keras_model(result.model)  # registered last, below
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
        version = register_version(info.model_uri, registered_name)
    return TrainingRun(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        tracking_uri=uri,
        model_uri=info.model_uri,
        registered_model=settings.tracking.registered_model,
        version=version,
        metrics=metrics,
    )
