"""The MLflow side of one training run: open it, log what the steps produced, register.

The steps themselves (fit, evaluate, draw, reference, card) are sequenced by
``clearsight.pipelines.train``; the model side and the files a person reads know nothing of
MLflow, and this module knows nothing of how they are made: it writes what it is handed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.data.numpy_dataset import from_numpy  # what mlflow.data exposes, by its typed path

from clearsight.config import Settings
from clearsight.data import Splits
from clearsight.data.gate import GatedData
from clearsight.model.fitting import TrainResult
from clearsight.packages import MODEL_RUNTIME, for_backend, pinned
from clearsight.task import DIGITS, METADATA_KEY, ImageTask
from clearsight.tracking.lifecycle import owner_tags, reap_orphaned_runs, terminate_gracefully
from clearsight.tracking.registry import task_line
from clearsight.tracking.store import (
    configure,
    enable_fast_system_metrics,
    git_state,
    package_versions,
    tracking_uri,
)


def run_params(
    settings: Settings, gated: GatedData, fit: dict[str, Any], task: ImageTask = DIGITS
) -> dict[str, Any]:
    """Every setting that shaped the model, flat, for ``mlflow.log_params``; the image shape
    and class count make runs on different datasets tell apart in the MLflow run table."""
    params: dict[str, Any] = {
        "image_shape": "x".join(str(d) for d in task.input_shape),
        "n_classes": task.n_classes,
    }
    params |= {f"train.{k}": v for k, v in settings.train.model_dump().items()}
    data = settings.data.model_dump(exclude={"path"})
    params |= {f"data.{k}": v for k, v in data.items()}
    params["data.path"] = str(settings.data.path) if settings.data.path else ""
    params["explain.panel_size"] = settings.explain.panel_size
    params |= {f"fit.{k}": v for k, v in fit.items()}
    params |= {f"n_{name}": len(ds) for name, ds in gated.splits.items()}
    return params


def run_tags(
    settings: Settings, gated: GatedData, result: TrainResult, task: ImageTask = DIGITS
) -> dict[str, str]:
    assert settings.home is not None
    tags = {
        "task": task.describe(),
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
        dataset = from_numpy(
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
    dataset = from_numpy(
        features=data.pixels().reshape(len(data), -1),
        targets=data.labels,
        name=version.id,
        digest=version.digest[:16],
    )
    tags = {"sha256": version.digest, "data_version": version.id, "parent": version.parent or ""}
    mlflow.log_input(dataset, context="data-version", tags=tags)
    mlflow.set_tag("data_version", version.id)


class EpochMetricsLogger(keras.callbacks.Callback):  # type: ignore[misc]  # Keras ships no types
    """Per-epoch loss and accuracy (train and validation) as MLflow metric steps."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs:
            mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1)


def model_signature(task: ImageTask = DIGITS) -> Any:
    """float32 (-1, H, W, C) in, float32 (-1, n_classes) probabilities out."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *task.input_shape), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, task.n_classes), "probabilities")]),
    )


def log_keras_model(
    model: keras.Model, registered_name: str | None = None, task: ImageTask = DIGITS
) -> Any:
    """Log the model (signature, explicit pinned requirements: inferring them costs ~18 s),
    and register a new version only when ``registered_name`` is given: a training run logs
    without it and registers with ``register_version`` as its very last step."""
    import mlflow.keras

    backend = keras.backend.backend()
    return mlflow.keras.log_model(
        model,
        name="model",
        signature=model_signature(task),
        pip_requirements=pinned(for_backend(MODEL_RUNTIME, backend)),
        registered_model_name=registered_name,
        metadata={
            "keras_backend": backend,
            "input_scale": "0-1",
            METADATA_KEY: task.to_metadata(),
        },
    )


def register_version(
    model_uri: str, registered_name: str | None, task: ImageTask | None = None
) -> str | None:
    """Register the logged model as a new version (the run is taken from the logged model);
    with ``task``, the version's description starts as its task line (shape and classes),
    which the promotion decision later keeps at its top."""
    if registered_name is None:
        return None
    version = str(mlflow.register_model(model_uri, registered_name).version)
    if task is not None:
        from mlflow.tracking import MlflowClient

        MlflowClient().update_model_version(registered_name, version, task_line(task))
    return version


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


@dataclass(frozen=True)
class OpenRun:
    """The MLflow run a training writes to, as plain values."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    registered_model: str | None


@contextlib.contextmanager
def training_run(settings: Settings, gated: GatedData) -> Iterator[OpenRun]:
    """An MLflow run for one training, with what keeps the store clean around it.

    Runs left RUNNING by killed processes are ended KILLED first; SIGTERM becomes an exception
    the cleanup sees; on any failure (the run's end included) every version registered from
    this run is deleted again and the run ends FAILED or KILLED (``discarded_on_failure``).
    """
    experiment_id = configure(settings)
    registered_name = settings.tracking.registered_model
    if settings.tracking.log_system_metrics:
        enable_fast_system_metrics()
    reap_orphaned_runs(experiment_id, registered_name)
    with (
        terminate_gracefully(),
        discarded_on_failure(registered_name) as guard,
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name(settings, gated),
            log_system_metrics=settings.tracking.log_system_metrics,
            tags=owner_tags(),
        ) as run,
    ):
        guard.run_id = run.info.run_id
        yield OpenRun(run.info.run_id, experiment_id, tracking_uri(settings), registered_name)


def log_data(gated: GatedData) -> None:
    """The splits and the data version trained on, as MLflow inputs with their digests."""
    log_split_inputs(gated.splits)
    log_data_version(gated)


def log_setup(params: dict[str, Any], tags: dict[str, str]) -> None:
    mlflow.log_params(params)
    mlflow.set_tags(tags)


def log_outcome(
    folder: Path,
    metrics: dict[str, float],
    description: str,
    model: keras.Model,
    task: ImageTask = DIGITS,
) -> str:
    """The run's files, metrics and description, then the model with its task (not registered
    yet: that is the run's last step, ``register_version``); returns the logged model's URI."""
    mlflow.log_artifacts(str(folder))
    mlflow.log_metrics(metrics)
    mlflow.set_tag("mlflow.note.content", description)
    return str(log_keras_model(model, task=task).model_uri)


def log_json(body: dict[str, Any], artifact: str) -> None:
    mlflow.log_dict(body, artifact)


def log_text(text: str, artifact: str) -> None:
    mlflow.log_text(text, artifact)
